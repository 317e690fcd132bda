// Package serving is Sluice's Databricks Model Serving control plane: the
// /api/2.0/serving-endpoints API that creates, updates and deletes serving
// endpoints at run time, with Databricks' JSON, states, permissions and
// error codes, so that the Databricks SDKs and Terraform provider can
// manage Sluice.
//
// Endpoints created through the API are kept in a sluice.ServingStore,
// compiled into proxy.Endpoints and installed without a restart; every
// replica picks up the others' changes by polling the store. Endpoints of
// the configuration file are listed and readable here, never changed.
//
//	m := serving.New(serving.Options{Store: st, Config: cfg, Catalog: cat, Hooks: hooks})
//	if err := m.Load(ctx); err != nil { ... }
//	go m.Run(ctx)
//	m.Register(mux, authenticate)
package serving

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/pricing"
	"github.com/sluice-gateway/sluice/proxy"
)

// Hooks connect the control plane to the rest of the gateway.
type Hooks struct {
	// Upstream returns the configured upstream of that name, or nil.
	// Registered served entities (entity_name) name one. Required.
	Upstream func(name string) *proxy.Upstream
	// NewUpstream builds the upstream of an external model (transport,
	// egress policy). Required.
	NewUpstream func(config.Upstream) (*proxy.Upstream, error)
	// Guard returns the circuit breaker and health state of an upstream;
	// nil leaves targets unguarded.
	Guard func(*proxy.Upstream) proxy.Guard
	// Gate returns the capacity gate of a served entity with declared
	// capacity (capacity, workload_size, provisioned concurrency or
	// throughput); nil leaves capacity unenforced.
	Gate func(endpoint, entity string, c config.Capacity) proxy.Gate
	// Ready reports whether a new served entity's upstream may take
	// traffic; a pending config is applied once all of its are ready.
	// nil: always ready.
	Ready func(*proxy.Upstream) bool
	// Apply installs the complete set of API-created endpoints that serve
	// (those with a ready config), replacing the previous set. It is
	// called by Load and whenever that set changes, never concurrently.
	Apply func([]*proxy.Endpoint)
}

// Options configure a Manager.
type Options struct {
	Store sluice.ServingStore
	// Config holds the configuration file's endpoints and upstreams (shown
	// read-only) and where secrets are read (Secrets). nil: none.
	Config  *config.Config
	Catalog *pricing.Catalog
	Hooks   Hooks
	Now     func() time.Time // nil: time.Now
	Logger  *slog.Logger     // nil: discard
	// ReadyTimeout bounds how long a pending config waits for its served
	// entities before the update fails. Default Config.Serving.ReadyTimeout,
	// else 10m.
	ReadyTimeout time.Duration
	// Refresh is how often Run picks up other replicas' changes and
	// advances pending configs. Default Config.Serving.Refresh, else 2s.
	Refresh time.Duration
	// LookupEnv reads environment variables for secret references.
	// nil: os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

// Manager serves the control plane and keeps the compiled endpoints.
type Manager struct {
	o    Options
	sec  secrets
	yaml map[string]*config.Endpoint

	mu      sync.Mutex // serializes Sync and guards the fields below
	entries map[string]*entry
	fresh   map[compiledKey]*compiled // compiled by a handler, taken by the next sync

	access atomic.Pointer[map[string]*entry] // serving API endpoints, for the admitter
}

// entry is an API-created endpoint as last read from the store.
type entry struct {
	rec     sluice.ServingEndpointRecord
	sp      *spec
	active  *compiled // sp.Config compiled; nil if none or it failed
	pending *compiled // sp.Pending compiled
	ep      *proxy.Endpoint
	// failedAt is when a config last failed to compile; zero if none did.
	failedAt time.Time
}

// RetryFailed is how often a stored config that does not compile on this
// replica is compiled again (it may need a secret that has not arrived).
const RetryFailed = time.Minute

type compiledKey struct {
	id      string
	version int64
}

// New returns a Manager. Call Load before serving.
func New(o Options) *Manager {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	m := &Manager{o: o, yaml: map[string]*config.Endpoint{}, entries: map[string]*entry{}, fresh: map[compiledKey]*compiled{}}
	m.sec = secrets{envPrefix: "SLUICE_SECRET_", lookupEnv: o.LookupEnv}
	if c := o.Config; c != nil {
		if c.Secrets.EnvPrefix != "" {
			m.sec.envPrefix = c.Secrets.EnvPrefix
		}
		m.sec.dir = c.Secrets.Dir
		for i := range c.Endpoints {
			m.yaml[c.Endpoints[i].Name] = &c.Endpoints[i]
		}
		if m.o.ReadyTimeout == 0 {
			m.o.ReadyTimeout = c.Serving.ReadyTimeout.D()
		}
		if m.o.Refresh == 0 {
			m.o.Refresh = c.Serving.Refresh.D()
		}
	}
	if m.o.ReadyTimeout <= 0 {
		m.o.ReadyTimeout = 10 * time.Minute
	}
	if m.o.Refresh <= 0 {
		m.o.Refresh = 2 * time.Second
	}
	empty := map[string]*entry{}
	m.access.Store(&empty)
	return m
}

// Load compiles every stored endpoint and installs them (Hooks.Apply),
// even when there are none.
func (m *Manager) Load(ctx context.Context) error {
	return m.sync(ctx, true)
}

// Run picks up changes made by other replicas and advances pending
// configs every Refresh, until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(m.o.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.Sync(ctx); err != nil && ctx.Err() == nil {
				m.o.Logger.Warn("serving endpoints: refresh failed", "err", err)
			}
		}
	}
}

// Sync reads the store once: it recompiles endpoints that changed, drops
// deleted ones, applies pending configs whose served entities are all
// ready (or fails those past ReadyTimeout), and calls Hooks.Apply if
// anything that serves changed.
func (m *Manager) Sync(ctx context.Context) error {
	return m.sync(ctx, false)
}

func (m *Manager) sync(ctx context.Context, force bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	recs, err := m.o.Store.ServingEndpoints(ctx)
	if err != nil {
		return fmt.Errorf("serving: list endpoints: %w", err)
	}
	served, touched := force, force
	seen := make(map[string]bool, len(recs))
	for _, rec := range recs {
		if m.yaml[rec.Name] != nil {
			if force {
				m.o.Logger.Warn("serving endpoints: an endpoint of the configuration file has the name of one created through the API; the configuration file's is served",
					"endpoint", rec.Name, "id", rec.ID)
			}
			continue
		}
		seen[rec.Name] = true
		t, s := m.refresh(rec)
		touched, served = touched || t, served || s
	}
	for name, e := range m.entries {
		if !seen[name] {
			delete(m.entries, name)
			touched, served = true, served || e.ep != nil
		}
	}
	for _, e := range m.sortedEntries() {
		if e.sp.Pending == nil {
			continue
		}
		t, s, err := m.advance(ctx, e)
		if err != nil {
			m.o.Logger.Warn("serving endpoints: advancing a pending config failed", "endpoint", e.rec.Name, "err", err)
		}
		touched, served = touched || t, served || s
	}
	if touched {
		m.apply(served)
	}
	return nil
}

// refresh installs rec as the entry of its name, recompiling what
// changed. It reports whether the entry changed and whether the endpoint
// it serves did.
func (m *Manager) refresh(rec sluice.ServingEndpointRecord) (touched, served bool) {
	old := m.entries[rec.Name]
	quiet := old != nil && old.rec.ID == rec.ID && old.rec.Version == rec.Version
	// An entry whose config did not compile (a secret missing on this
	// replica, say) is retried every RetryFailed, and logged once.
	if quiet && (old.failedAt.IsZero() || m.o.Now().Sub(old.failedAt) < RetryFailed) {
		return false, false
	}
	sp, err := decodeSpec(rec.Spec)
	if err != nil {
		m.o.Logger.Error("serving endpoints: stored spec does not decode", "endpoint", rec.Name, "err", err)
		return false, false
	}
	e := &entry{rec: rec, sp: sp}
	failed := false
	if sp.Config != nil {
		e.active = m.compiledFor(rec, old, sp.Config, quiet)
		if e.active == nil {
			failed = true
			if old != nil && old.rec.ID == rec.ID {
				e.active = old.active // keep serving the last config that compiled
			}
		}
	}
	if sp.Pending != nil {
		if e.pending = m.compiledFor(rec, old, sp.Pending, quiet); e.pending == nil {
			failed = true
		}
	}
	if failed {
		e.failedAt = m.o.Now()
	} else if quiet {
		m.o.Logger.Info("serving endpoints: config compiles now", "endpoint", rec.Name)
	}
	switch {
	case e.active == nil:
	case old != nil && old.ep != nil && old.active == e.active && reflect.DeepEqual(old.sp.AIGateway, sp.AIGateway):
		e.ep = old.ep // tags, permissions or a pending config changed: what serves did not
	default:
		e.ep = endpointFor(rec.Name, e.active, sp.AIGateway)
	}
	m.entries[rec.Name] = e
	return true, old == nil && e.ep != nil || old != nil && old.ep != e.ep
}

// compiledFor returns c compiled, reusing an earlier compilation of the
// same endpoint id and config version.
func (m *Manager) compiledFor(rec sluice.ServingEndpointRecord, old *entry, c *Config, quiet bool) *compiled {
	k := compiledKey{rec.ID, c.ConfigVersion}
	if old != nil {
		for _, oc := range []*compiled{old.active, old.pending} {
			if oc != nil && oc.id == k.id && oc.version == k.version {
				return oc
			}
		}
	}
	if oc := m.fresh[k]; oc != nil {
		delete(m.fresh, k)
		return oc
	}
	cc, err := m.compile(rec.Name, rec.ID, c)
	if err != nil && !quiet {
		m.o.Logger.Warn("serving endpoints: config does not compile on this replica", "endpoint", rec.Name,
			"config_version", c.ConfigVersion, "err", err)
	}
	if err != nil {
		return nil
	}
	return cc
}

// advance applies e's pending config if its served entities are ready,
// or fails it past ReadyTimeout. It reports what refresh reports.
func (m *Manager) advance(ctx context.Context, e *entry) (touched, served bool, err error) {
	pv := e.sp.Pending.ConfigVersion
	ready := e.pending != nil && m.ready(e.pending)
	started := time.UnixMilli(e.sp.Pending.StartTime)
	if !ready && m.o.Now().Sub(started) < m.o.ReadyTimeout {
		return false, false, nil
	}
	rec, _, err := m.modify(ctx, e.rec.Name, func(rec *sluice.ServingEndpointRecord, sp *spec) error {
		if rec.ID != e.rec.ID || sp.Pending == nil || sp.Pending.ConfigVersion != pv {
			return errSkip // another replica got there first
		}
		if ready {
			sp.Config, sp.Pending = sp.Pending, nil
			sp.Config.StartTime = 0
			sp.State = State{Ready: StateReady, ConfigUpdate: ConfigNotUpdating}
			return nil
		}
		sp.Pending = nil
		sp.State.ConfigUpdate = ConfigUpdateFailed
		if sp.Config == nil {
			sp.State.Ready = StateNotReady
		}
		return nil
	})
	if errors.Is(err, errSkip) || errors.Is(err, sluice.ErrNotFound) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	if ready {
		m.o.Logger.Info("serving endpoints: config ready and applied", "endpoint", rec.Name, "config_version", pv)
	} else {
		m.o.Logger.Warn("serving endpoints: config update failed: served entities not ready in time",
			"endpoint", rec.Name, "config_version", pv, "ready_timeout", m.o.ReadyTimeout)
	}
	touched, served = m.refresh(rec)
	return touched, served, nil
}

func (m *Manager) ready(c *compiled) bool {
	if m.o.Hooks.Ready == nil {
		return true
	}
	for _, t := range c.targets {
		if !m.o.Hooks.Ready(t.Upstream) {
			return false
		}
	}
	return true
}

func (m *Manager) sortedEntries() []*entry {
	out := make([]*entry, 0, len(m.entries))
	for _, e := range m.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rec.Name < out[j].rec.Name })
	return out
}

// apply publishes the entries to the admitter and, if served, installs
// the serving endpoints. m.mu is held.
func (m *Manager) apply(served bool) {
	var eps []*proxy.Endpoint
	serving := map[string]*entry{}
	for _, e := range m.sortedEntries() {
		if e.ep != nil {
			eps = append(eps, e.ep)
			serving[e.rec.Name] = e
		}
	}
	m.access.Store(&serving)
	if served && m.o.Hooks.Apply != nil {
		m.o.Hooks.Apply(eps)
	}
}

var errSkip = errors.New("nothing to change")

// maxAttempts bounds retries of an update that loses a race.
const maxAttempts = 5

// modify reads the named endpoint, lets fn change it, and writes it back
// with the store's optimistic version, retrying when another update got
// in between. fn may run more than once. An error from fn is returned as
// it is.
func (m *Manager) modify(ctx context.Context, name string, fn func(rec *sluice.ServingEndpointRecord, sp *spec) error) (sluice.ServingEndpointRecord, *spec, error) {
	for range maxAttempts {
		rec, err := m.o.Store.ServingEndpoint(ctx, name)
		if err != nil {
			return rec, nil, err
		}
		sp, err := decodeSpec(rec.Spec)
		if err != nil {
			return rec, nil, err
		}
		if err := fn(&rec, sp); err != nil {
			return rec, nil, err
		}
		if rec.Spec, err = json.Marshal(sp); err != nil {
			return rec, nil, err
		}
		rec.UpdatedAt = m.o.Now()
		err = m.o.Store.UpdateServingEndpoint(ctx, rec)
		if errors.Is(err, sluice.ErrConflict) {
			continue
		}
		if err != nil {
			return rec, nil, err
		}
		rec.Version++
		return rec, sp, nil
	}
	return sluice.ServingEndpointRecord{}, nil, &apierr.Error{Status: 409, Code: apierr.DBAborted,
		Msg: "Endpoint '" + name + "' is being changed concurrently; retry.", Class: sluice.ErrClassInvalidRequest}
}

func decodeSpec(b []byte) (*spec, error) {
	sp := &spec{}
	if err := json.Unmarshal(b, sp); err != nil {
		return nil, fmt.Errorf("serving: decode spec: %w", err)
	}
	return sp, nil
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
