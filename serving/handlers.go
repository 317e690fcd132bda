package serving

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
)

// maxBodyBytes bounds a control-plane request body.
const maxBodyBytes = 1 << 20

type handlerFunc func(w http.ResponseWriter, r *http.Request, k *sluice.Key) error

// Register adds the control-plane routes to mux. authn resolves the
// caller's key; when it fails the answer is its *apierr.Error (rendered
// in Databricks' shape), else 401 UNAUTHENTICATED. Every failure answers
// {"error_code","message"}.
func (m *Manager) Register(mux *http.ServeMux, authn func(*http.Request) (*sluice.Key, error)) {
	h := func(f handlerFunc) http.Handler { return m.handler(authn, f) }
	mux.Handle("POST /api/2.0/serving-endpoints", h(m.create))
	mux.Handle("GET /api/2.0/serving-endpoints", h(m.list))
	mux.Handle("GET /api/2.0/serving-endpoints/{name}", h(m.get))
	mux.Handle("DELETE /api/2.0/serving-endpoints/{name}", h(m.delete))
	mux.Handle("PUT /api/2.0/serving-endpoints/{name}/config", h(m.updateConfig))
	mux.Handle("PUT /api/2.0/serving-endpoints/{name}/ai-gateway", h(m.putAIGateway))
	mux.Handle("PATCH /api/2.0/serving-endpoints/{name}/tags", h(m.patchTags))
	mux.Handle("GET /api/2.0/permissions/serving-endpoints/{id}", h(m.getPermissions))
	mux.Handle("PUT /api/2.0/permissions/serving-endpoints/{id}", h(m.setPermissions(false)))
	mux.Handle("PATCH /api/2.0/permissions/serving-endpoints/{id}", h(m.setPermissions(true)))
	mux.Handle("GET /api/2.0/permissions/serving-endpoints/{id}/permissionLevels", h(m.permissionLevels))
	for _, p := range []string{"/api/2.0/serving-endpoints", "/api/2.0/serving-endpoints/", "/api/2.0/permissions/serving-endpoints/"} {
		mux.Handle(p, h(noRoute))
	}
}

func (m *Manager) handler(authn func(*http.Request) (*sluice.Key, error), f handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, err := authn(r)
		if err != nil || k == nil {
			var e *apierr.Error
			if !errors.As(err, &e) || e.Status >= 500 {
				e = apierr.Unauthorized()
			}
			apierr.WriteDatabricks(w, e)
			return
		}
		if err := f(w, r, k); err != nil {
			e := apierr.As(err)
			if e.Status >= 500 {
				m.o.Logger.Error("serving endpoints: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			} else if e.Err != nil {
				m.o.Logger.Warn("serving endpoints: request refused", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			apierr.WriteDatabricks(w, e)
		}
	})
}

func noRoute(w http.ResponseWriter, r *http.Request, _ *sluice.Key) error {
	return &apierr.Error{Status: 404, Code: "ENDPOINT_NOT_FOUND", Class: sluice.ErrClassNotFound,
		Msg: "No API found for '" + r.Method + " " + r.URL.Path + "'."}
}

// decode reads a JSON body strictly: unknown fields and trailing data are
// refused.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("unexpected data after the JSON object")
	}
	if err == nil {
		return nil
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return &apierr.Error{Status: 413, Code: apierr.DBBadRequest, Class: sluice.ErrClassTooLarge,
			Msg: "The request body is larger than " + strconv.Itoa(maxBodyBytes) + " bytes."}
	case errors.Is(err, io.EOF):
		return &apierr.Error{Status: 400, Code: "MALFORMED_REQUEST", Class: sluice.ErrClassInvalidRequest,
			Msg: "The request needs a JSON body."}
	}
	return &apierr.Error{Status: 400, Code: "MALFORMED_REQUEST", Class: sluice.ErrClassInvalidRequest,
		Msg: "Invalid JSON given in the body of the request: " + strings.TrimPrefix(err.Error(), "json: ")}
}

func writeJSON(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
	return nil
}

func notFound(name string) *apierr.Error {
	return apierr.NotFound("name", apierr.DBResourceDoesNotExist, "Endpoint with name '%s' does not exist.", name)
}

func inConfigFile(name string) *apierr.Error {
	return invalid("name", "Endpoint '%s' is defined in the configuration file; change it there.", name)
}

// storeErr maps a store error for the named endpoint.
func storeErr(err error, name string) error {
	if errors.Is(err, sluice.ErrNotFound) {
		return notFound(name)
	}
	return err
}

func (m *Manager) hasUpstream(name string) bool {
	return m.o.Hooks.Upstream != nil && m.o.Hooks.Upstream(name) != nil
}

// synced brings this replica up to date after a change; a failure is
// logged (the change is stored, and Run retries).
func (m *Manager) synced(ctx context.Context) {
	if err := m.Sync(ctx); err != nil {
		m.o.Logger.Warn("serving endpoints: sync after a change failed", "err", err)
	}
}

func (m *Manager) putFresh(c *compiled) {
	m.mu.Lock()
	m.fresh[compiledKey{c.id, c.version}] = c
	m.mu.Unlock()
}

func (m *Manager) dropFresh(c *compiled) {
	m.mu.Lock()
	delete(m.fresh, compiledKey{c.id, c.version})
	m.mu.Unlock()
}

// writeEndpoint answers with the named endpoint as stored now.
func (m *Manager) writeEndpoint(w http.ResponseWriter, ctx context.Context, k *sluice.Key, name string) error {
	rec, err := m.o.Store.ServingEndpoint(ctx, name)
	if err != nil {
		return storeErr(err, name)
	}
	sp, err := decodeSpec(rec.Spec)
	if err != nil {
		return err
	}
	return writeJSON(w, render(rec, sp, level(k, rec.Creator, sp.ACL)))
}

func (m *Manager) create(w http.ResponseWriter, r *http.Request, k *sluice.Key) error {
	if !k.Admin {
		return apierr.Forbidden(apierr.DBPermissionDenied, "Only admin keys may create serving endpoints.")
	}
	var req createRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := checkEndpointName(req.Name); err != nil {
		return err
	}
	if m.yaml[req.Name] != nil {
		return &apierr.Error{Status: 409, Code: apierr.DBResourceAlreadyExists, Class: sluice.ErrClassInvalidRequest,
			Msg: "Endpoint with name '" + req.Name + "' already exists (in the configuration file)."}
	}
	if len(req.RateLimits) > 0 && string(req.RateLimits) != "null" {
		return invalid("rate_limits", "rate_limits: the legacy endpoint rate limits are not supported; use ai_gateway.rate_limits")
	}
	if err := checkConfig(req.Config, m.hasUpstream); err != nil {
		return err
	}
	if err := checkGateway(req.AIGateway, "ai_gateway."); err != nil {
		return err
	}
	if err := checkTags(req.Tags, "tags"); err != nil {
		return err
	}
	if _, err := m.o.Store.ServingEndpoint(r.Context(), req.Name); err == nil {
		return &apierr.Error{Status: 409, Code: apierr.DBResourceAlreadyExists, Class: sluice.ErrClassInvalidRequest,
			Msg: "Endpoint with name '" + req.Name + "' already exists."}
	} else if !errors.Is(err, sluice.ErrNotFound) {
		return err
	}
	now := m.o.Now()
	id := newID()
	req.Config.ConfigVersion, req.Config.StartTime = 1, now.UnixMilli()
	c, err := m.compile(req.Name, id, req.Config)
	if err != nil {
		return err
	}
	sp := &spec{Pending: req.Config, State: State{Ready: StateNotReady, ConfigUpdate: ConfigInProgress},
		AIGateway: normGateway(req.AIGateway), Tags: req.Tags, Description: req.Description, LastVersion: 1}
	b, err := json.Marshal(sp)
	if err != nil {
		return err
	}
	m.putFresh(c)
	err = m.o.Store.CreateServingEndpoint(r.Context(), sluice.ServingEndpointRecord{
		Name: req.Name, ID: id, Creator: k.ID, Spec: b, CreatedAt: now, UpdatedAt: now})
	if err != nil {
		m.dropFresh(c)
		if errors.Is(err, sluice.ErrConflict) {
			return &apierr.Error{Status: 409, Code: apierr.DBResourceAlreadyExists, Class: sluice.ErrClassInvalidRequest,
				Msg: "Endpoint with name '" + req.Name + "' already exists."}
		}
		return err
	}
	m.o.Logger.Info("serving endpoints: created", "endpoint", req.Name, "id", id, "key", k.ID)
	m.synced(r.Context())
	return m.writeEndpoint(w, r.Context(), k, req.Name)
}

func (m *Manager) get(w http.ResponseWriter, r *http.Request, k *sluice.Key) error {
	name := r.PathValue("name")
	if e := m.yaml[name]; e != nil {
		lvl := yamlLevel(k, name)
		if err := need(k, lvl, CanView, name); err != nil {
			return err
		}
		return writeJSON(w, renderYAML(e, lvl))
	}
	rec, err := m.o.Store.ServingEndpoint(r.Context(), name)
	if err != nil {
		return storeErr(err, name)
	}
	sp, err := decodeSpec(rec.Spec)
	if err != nil {
		return err
	}
	lvl := level(k, rec.Creator, sp.ACL)
	if err := need(k, lvl, CanView, name); err != nil {
		return err
	}
	return writeJSON(w, render(rec, sp, lvl))
}

func (m *Manager) list(w http.ResponseWriter, r *http.Request, k *sluice.Key) error {
	out := listResponse{Endpoints: []summary{}}
	if c := m.o.Config; c != nil {
		for i := range c.Endpoints {
			e := &c.Endpoints[i]
			if lvl := yamlLevel(k, e.Name); lvl != "" {
				ep := renderYAML(e, lvl)
				out.Endpoints = append(out.Endpoints, ep.summary())
			}
		}
	}
	recs, err := m.o.Store.ServingEndpoints(r.Context())
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if m.yaml[rec.Name] != nil {
			continue
		}
		sp, err := decodeSpec(rec.Spec)
		if err != nil {
			m.o.Logger.Error("serving endpoints: stored spec does not decode", "endpoint", rec.Name, "err", err)
			continue
		}
		if lvl := level(k, rec.Creator, sp.ACL); rank(lvl) >= rank(CanView) {
			ep := render(rec, sp, lvl)
			out.Endpoints = append(out.Endpoints, ep.summary())
		}
	}
	sort.Slice(out.Endpoints, func(i, j int) bool { return out.Endpoints[i].Name < out.Endpoints[j].Name })
	return writeJSON(w, out)
}

func (m *Manager) delete(w http.ResponseWriter, r *http.Request, k *sluice.Key) error {
	name := r.PathValue("name")
	if m.yaml[name] != nil {
		return inConfigFile(name)
	}
	rec, err := m.o.Store.ServingEndpoint(r.Context(), name)
	if err != nil {
		return storeErr(err, name)
	}
	sp, err := decodeSpec(rec.Spec)
	if err != nil {
		return err
	}
	if err := need(k, level(k, rec.Creator, sp.ACL), CanManage, name); err != nil {
		return err
	}
	if err := m.o.Store.DeleteServingEndpoint(r.Context(), name); err != nil {
		return storeErr(err, name)
	}
	m.o.Logger.Info("serving endpoints: deleted", "endpoint", name, "id", rec.ID, "key", k.ID)
	m.synced(r.Context())
	return writeJSON(w, struct{}{})
}

func (m *Manager) updateConfig(w http.ResponseWriter, r *http.Request, k *sluice.Key) error {
	name := r.PathValue("name")
	if m.yaml[name] != nil {
		return inConfigFile(name)
	}
	var cfg Config
	if err := decode(w, r, &cfg); err != nil {
		return err
	}
	rec, err := m.o.Store.ServingEndpoint(r.Context(), name)
	if err != nil {
		return storeErr(err, name)
	}
	sp, err := decodeSpec(rec.Spec)
	if err != nil {
		return err
	}
	if err := need(k, level(k, rec.Creator, sp.ACL), CanManage, name); err != nil {
		return err
	}
	if err := checkConfig(&cfg, m.hasUpstream); err != nil {
		return err
	}
	if ref := secretRefIn(&cfg); ref != "" && !k.Admin {
		// Sluice's secrets have no access lists of their own: a manager
		// could send any of them to a server of their choosing.
		return apierr.Forbidden(apierr.DBPermissionDenied,
			"Only admin keys may submit configs that reference secrets (%s); give the key in a *_plaintext field or ask an admin.", ref)
	}
	c, err := m.compile(name, rec.ID, &cfg)
	if err != nil {
		return err
	}
	_, _, err = m.modify(r.Context(), name, func(cur *sluice.ServingEndpointRecord, sp *spec) error {
		if cur.ID != rec.ID {
			return notFound(name) // deleted and created again meanwhile
		}
		if err := need(k, level(k, cur.Creator, sp.ACL), CanManage, name); err != nil {
			return err
		}
		if sp.Pending != nil {
			return &apierr.Error{Status: 409, Code: "RESOURCE_CONFLICT", Class: sluice.ErrClassInvalidRequest,
				Msg: "Endpoint '" + name + "' has a config update in progress (config_version " +
					strconv.FormatInt(sp.Pending.ConfigVersion, 10) + "); wait for it to finish."}
		}
		v := sp.nextVersion()
		cfg.ConfigVersion, cfg.StartTime = v, m.o.Now().UnixMilli()
		c.version = v
		pending := cfg
		sp.Pending, sp.LastVersion = &pending, v
		sp.State.ConfigUpdate = ConfigInProgress
		if sp.Config == nil {
			sp.State.Ready = StateNotReady
		}
		return nil
	})
	if err != nil {
		return storeErr(err, name)
	}
	m.putFresh(c)
	m.o.Logger.Info("serving endpoints: config update submitted", "endpoint", name, "config_version", c.version, "key", k.ID)
	m.synced(r.Context())
	return m.writeEndpoint(w, r.Context(), k, name)
}

// normGateway is nil for settings with nothing set.
func normGateway(g *sluice.AIGateway) *sluice.AIGateway {
	if g == nil || (g.UsageTrackingConfig == nil && g.InferenceTableConfig == nil && len(g.RateLimits) == 0 &&
		g.Guardrails == nil && g.FallbackConfig == nil) {
		return nil
	}
	return g
}

func (m *Manager) putAIGateway(w http.ResponseWriter, r *http.Request, k *sluice.Key) error {
	name := r.PathValue("name")
	if m.yaml[name] != nil {
		return inConfigFile(name)
	}
	var g sluice.AIGateway
	if err := decode(w, r, &g); err != nil {
		return err
	}
	if err := checkGateway(&g, ""); err != nil {
		return err
	}
	_, sp, err := m.modify(r.Context(), name, func(rec *sluice.ServingEndpointRecord, sp *spec) error {
		if err := need(k, level(k, rec.Creator, sp.ACL), CanManage, name); err != nil {
			return err
		}
		sp.AIGateway = normGateway(&g)
		return nil
	})
	if err != nil {
		return storeErr(err, name)
	}
	m.o.Logger.Info("serving endpoints: AI Gateway settings changed", "endpoint", name, "key", k.ID)
	m.synced(r.Context())
	if sp.AIGateway == nil {
		return writeJSON(w, struct{}{})
	}
	return writeJSON(w, sp.AIGateway)
}

func (m *Manager) patchTags(w http.ResponseWriter, r *http.Request, k *sluice.Key) error {
	name := r.PathValue("name")
	if m.yaml[name] != nil {
		return inConfigFile(name)
	}
	var req tagsPatch
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := checkTags(req.AddTags, "add_tags"); err != nil {
		return err
	}
	_, sp, err := m.modify(r.Context(), name, func(rec *sluice.ServingEndpointRecord, sp *spec) error {
		if err := need(k, level(k, rec.Creator, sp.ACL), CanManage, name); err != nil {
			return err
		}
		drop := map[string]bool{}
		for _, d := range req.DeleteTags {
			drop[d] = true
		}
		for _, t := range req.AddTags {
			drop[t.Key] = true
		}
		tags := []Tag{}
		for _, t := range sp.Tags {
			if !drop[t.Key] {
				tags = append(tags, t)
			}
		}
		sp.Tags = append(tags, req.AddTags...)
		return nil
	})
	if err != nil {
		return storeErr(err, name)
	}
	m.synced(r.Context())
	return writeJSON(w, struct {
		Tags []Tag `json:"tags"`
	}{sp.Tags})
}

// byID finds an API-created endpoint by id: the cached name first, else a
// scan of the store.
func (m *Manager) byID(ctx context.Context, id string) (sluice.ServingEndpointRecord, *spec, error) {
	m.mu.Lock()
	name := ""
	for _, e := range m.entries {
		if e.rec.ID == id {
			name = e.rec.Name
		}
	}
	m.mu.Unlock()
	if name != "" {
		rec, err := m.o.Store.ServingEndpoint(ctx, name)
		if err == nil && rec.ID == id {
			sp, err := decodeSpec(rec.Spec)
			return rec, sp, err
		}
	}
	recs, err := m.o.Store.ServingEndpoints(ctx)
	if err != nil {
		return sluice.ServingEndpointRecord{}, nil, err
	}
	for _, rec := range recs {
		if rec.ID == id && m.yaml[rec.Name] == nil {
			sp, err := decodeSpec(rec.Spec)
			return rec, sp, err
		}
	}
	return sluice.ServingEndpointRecord{}, nil, apierr.NotFound("id", apierr.DBResourceDoesNotExist,
		"Serving endpoint with id '%s' does not exist.", id)
}

// yamlByID returns the configuration-file endpoint with that id, or nil.
func (m *Manager) yamlByID(id string) string {
	name, ok := strings.CutPrefix(id, YAMLIDPrefix)
	if ok && m.yaml[name] != nil {
		return name
	}
	return ""
}

func (m *Manager) getPermissions(w http.ResponseWriter, r *http.Request, k *sluice.Key) error {
	id := r.PathValue("id")
	if name := m.yamlByID(id); name != "" {
		if err := need(k, yamlLevel(k, name), CanManage, name); err != nil {
			return err
		}
		return writeJSON(w, renderPermissions(id, "", nil))
	}
	rec, sp, err := m.byID(r.Context(), id)
	if err != nil {
		return err
	}
	if err := need(k, level(k, rec.Creator, sp.ACL), CanManage, rec.Name); err != nil {
		return err
	}
	return writeJSON(w, renderPermissions(id, rec.Creator, sp.ACL))
}

func (m *Manager) setPermissions(merge bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, k *sluice.Key) error {
		id := r.PathValue("id")
		if name := m.yamlByID(id); name != "" {
			return inConfigFile(name)
		}
		var req permissionsRequest
		if err := decode(w, r, &req); err != nil {
			return err
		}
		if err := checkACL(req.AccessControlList); err != nil {
			return err
		}
		rec, _, err := m.byID(r.Context(), id)
		if err != nil {
			return err
		}
		rec, sp, err := m.modify(r.Context(), rec.Name, func(cur *sluice.ServingEndpointRecord, sp *spec) error {
			if cur.ID != id {
				return apierr.NotFound("id", apierr.DBResourceDoesNotExist, "Serving endpoint with id '%s' does not exist.", id)
			}
			if err := need(k, level(k, cur.Creator, sp.ACL), CanManage, cur.Name); err != nil {
				return err
			}
			if merge {
				sp.ACL = mergeACL(sp.ACL, req.AccessControlList)
			} else {
				sp.ACL = append([]AccessControl(nil), req.AccessControlList...)
			}
			return nil
		})
		if err != nil {
			return storeErr(err, rec.Name)
		}
		m.o.Logger.Info("serving endpoints: permissions changed", "endpoint", rec.Name, "key", k.ID)
		m.synced(r.Context())
		return writeJSON(w, renderPermissions(id, rec.Creator, sp.ACL))
	}
}

func (m *Manager) permissionLevels(w http.ResponseWriter, r *http.Request, k *sluice.Key) error {
	id := r.PathValue("id")
	if name := m.yamlByID(id); name != "" {
		if err := need(k, yamlLevel(k, name), CanView, name); err != nil {
			return err
		}
		return writeJSON(w, levelDescriptions)
	}
	rec, sp, err := m.byID(r.Context(), id)
	if err != nil {
		return err
	}
	if err := need(k, level(k, rec.Creator, sp.ACL), CanView, rec.Name); err != nil {
		return err
	}
	return writeJSON(w, levelDescriptions)
}
