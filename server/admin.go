package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/auth"
	"github.com/sluice-gateway/sluice/report"
)

// adminHandler is an admin API handler: it returns a value to encode as
// JSON or an error to render.
type adminHandler func(r *http.Request, k *sluice.Key) (status int, body any, err error)

// adminKey authenticates an admin call, answering it itself (401, 403)
// when the key is missing, unknown or not an admin's.
func (s *Server) adminKey(w http.ResponseWriter, r *http.Request) (*sluice.Key, bool) {
	secret := auth.FromRequest(r)
	k, err := s.auth.Authenticate(r.Context(), secret)
	if secret == "" || err != nil {
		apierr.WriteOpenAI(w, apierr.Unauthorized())
		return nil, false
	}
	if !k.Admin {
		apierr.WriteOpenAI(w, apierr.Forbidden("admin_required", "The admin API needs an admin key."))
		return nil, false
	}
	return k, true
}

// adminHTTP guards a plain handler with admin-key authentication.
func (s *Server) adminHTTP(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := s.adminKey(w, r); ok {
			h.ServeHTTP(w, r)
		}
	})
}

// admin wraps h with admin-key authentication and JSON rendering.
func (s *Server) admin(h adminHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, ok := s.adminKey(w, r)
		if !ok {
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		status, body, err := h(r, k)
		if err != nil {
			e := apierr.As(err)
			if e.Status >= 500 {
				s.log.Error("admin API error", "path", r.URL.Path, "err", err)
			}
			apierr.WriteOpenAI(w, e)
			return
		}
		if raw, ok := body.([]byte); ok {
			w.WriteHeader(status)
			w.Write(raw)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(body)
	})
}

func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apierr.BadRequest("", "invalid_json", "Invalid JSON body: %v", err)
	}
	return nil
}

// KeyView is a key as the admin API shows it: never the secret or digest.
type KeyView struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Team        string     `json:"team"`
	Admin       bool       `json:"admin"`
	Endpoints   []string   `json:"endpoints"`
	SourceCIDRs []string   `json:"source_cidrs"`
	ClassFloor  string     `json:"class_floor,omitempty"`
	Status      string     `json:"status"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at"`
	RevokedAt   *time.Time `json:"revoked_at"`
	// Secret is set only in the answer to a create.
	Secret string `json:"secret,omitempty"`
}

func keyView(k *sluice.Key, now time.Time) KeyView {
	v := KeyView{ID: k.ID, Name: k.Name, Team: k.Team, Admin: k.Admin, Endpoints: k.Endpoints,
		ClassFloor: k.ClassFloor, CreatedAt: k.CreatedAt, SourceCIDRs: []string{}}
	if v.Endpoints == nil {
		v.Endpoints = []string{}
	}
	for _, p := range k.SourceCIDRs {
		v.SourceCIDRs = append(v.SourceCIDRs, p.String())
	}
	v.Status = "active"
	if !k.ExpiresAt.IsZero() {
		v.ExpiresAt = &k.ExpiresAt
		if !now.Before(k.ExpiresAt) {
			v.Status = "expired"
		}
	}
	if !k.RevokedAt.IsZero() {
		v.RevokedAt, v.Status = &k.RevokedAt, "revoked"
	}
	return v
}

func (s *Server) adminListKeys(r *http.Request, _ *sluice.Key) (int, any, error) {
	ks, err := s.store.Keys(r.Context())
	if err != nil {
		return 0, nil, err
	}
	team := r.URL.Query().Get("team")
	out := []KeyView{}
	now := time.Now()
	for i := range ks {
		if team == "" || ks[i].Team == team {
			out = append(out, keyView(&ks[i], now))
		}
	}
	return 200, map[string]any{"keys": out}, nil
}

func (s *Server) adminCreateKey(r *http.Request, _ *sluice.Key) (int, any, error) {
	var in struct {
		Team       string     `json:"team"`
		Name       string     `json:"name"`
		Admin      bool       `json:"admin"`
		Endpoints  []string   `json:"endpoints"`
		ExpiresAt  *time.Time `json:"expires_at"`
		ClassFloor string     `json:"class_floor"`
	}
	if err := decodeJSON(r, &in); err != nil {
		return 0, nil, err
	}
	if strings.TrimSpace(in.Team) == "" {
		return 0, nil, apierr.BadRequest("team", "missing_required_parameter", "A key needs a team.")
	}
	now := time.Now()
	var exp time.Time
	if in.ExpiresAt != nil {
		if !in.ExpiresAt.After(now) {
			return 0, nil, apierr.BadRequest("expires_at", "invalid_value", "expires_at must be in the future.")
		}
		exp = *in.ExpiresAt
	}
	for _, e := range in.Endpoints {
		if s.proxy.Endpoint(e) == nil {
			return 0, nil, apierr.BadRequest("endpoints", "invalid_value", "No endpoint named %q.", e)
		}
	}
	secret, k, err := auth.NewKey(in.Team, in.Name, in.Admin, in.Endpoints, exp, now)
	if err != nil {
		return 0, nil, err
	}
	k.ClassFloor = in.ClassFloor
	if err := s.store.CreateKey(r.Context(), k); err != nil {
		return 0, nil, err
	}
	v := keyView(&k, now)
	v.Secret = secret
	return 201, v, nil
}

func (s *Server) adminRevokeKey(r *http.Request, _ *sluice.Key) (int, any, error) {
	id := r.PathValue("id")
	if err := s.store.RevokeKey(r.Context(), id, time.Now()); err != nil {
		if errors.Is(err, sluice.ErrNotFound) {
			return 0, nil, apierr.NotFound("id", "key_not_found", "No key with id %q.", id)
		}
		return 0, nil, err
	}
	// Take effect on this replica at once; others within a refresh.
	s.auth.Refresh(r.Context())
	k, err := s.store.Key(r.Context(), id)
	if err != nil {
		return 0, nil, err
	}
	return 200, keyView(&k, time.Now()), nil
}

// adminUsage serves GET /admin/v1/usage?by=team,endpoint&from=&to=&format=json|csv.
func (s *Server) adminUsage(r *http.Request, _ *sluice.Key) (int, any, error) {
	q := r.URL.Query()
	var uq sluice.UsageQuery
	by := q.Get("by")
	if by == "" {
		by = "team"
	}
	for _, g := range strings.Split(by, ",") {
		ug, err := report.ParseGroup(strings.TrimSpace(g))
		if err != nil {
			return 0, nil, apierr.BadRequest("by", "invalid_value", "%v", err)
		}
		uq.GroupBy = append(uq.GroupBy, ug)
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &uq.From}, {"to", &uq.To}} {
		if v := q.Get(p.name); v != "" {
			t, err := report.ParseTime(v)
			if err != nil {
				return 0, nil, apierr.BadRequest(p.name, "invalid_value", "%v", err)
			}
			*p.dst = t
		}
	}
	rows, err := s.store.UsageReport(r.Context(), uq)
	if err != nil {
		return 0, nil, err
	}
	switch f := q.Get("format"); f {
	case "", "json":
		return 200, report.ToJSON(uq.GroupBy, rows), nil
	case "csv":
		var b strings.Builder
		report.Write(&b, "csv", uq.GroupBy, rows)
		return 200, []byte(b.String()), nil
	default:
		return 0, nil, apierr.BadRequest("format", "invalid_value", "format must be json or csv")
	}
}
