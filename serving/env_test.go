package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/pricing"
	"github.com/sluice-gateway/sluice/proxy"
	"github.com/sluice-gateway/sluice/store/sqlite"
)

// Keys the test server knows, by bearer token.
var testKeys = map[string]*sluice.Key{
	"admin-token": {ID: "k-admin", Name: "admin", Team: "platform", Admin: true},
	"alice-token": {ID: "k-alice", Name: "alice", Team: "ml"},
	"bob-token":   {ID: "k-bob", Name: "bob", Team: "web"},
	"yaml-token":  {ID: "k-yaml", Name: "yaml only", Team: "web", Endpoints: []string{"config-chat"}},
}

// env is a control plane behind a real HTTP server, with hooks the test
// controls: which upstreams are ready, the clock, and what was applied.
type env struct {
	t       *testing.T
	m       *Manager
	srv     *httptest.Server
	store   sluice.ServingStore
	secrets string // secrets.dir
	logs    *bytes.Buffer

	mu       sync.Mutex
	now      time.Time
	notReady map[string]bool            // upstream names
	applied  map[string]*proxy.Endpoint // the last Apply
	applies  int
	built    []config.Upstream // NewUpstream calls
	gates    []gateCall
	env      map[string]string
}

type gateCall struct {
	endpoint, entity string
	c                config.Capacity
}

type testGate struct{ gateCall }

func (testGate) Acquire(context.Context, int64) (func(int64), error) { return func(int64) {}, nil }

type testGuard struct{ up *proxy.Upstream }

func (testGuard) Allow() bool               { return true }
func (testGuard) Report(bool)               {}
func (testGuard) RetryAfter() time.Duration { return 0 }

func testConfig(secretsDir string) *config.Config {
	fallback := false
	return &config.Config{
		Upstreams: []config.Upstream{
			{Name: "vllm", Type: config.TypeOpenAI, Provider: "self-hosted", BaseURL: "http://127.0.0.1:9/v1"},
			{Name: "scorer", Type: config.TypeMLflow, Provider: "self-hosted", BaseURL: "http://127.0.0.1:9"},
			{Name: "openai", Type: config.TypeOpenAI, Provider: "openai", BaseURL: "http://127.0.0.1:9/v1"},
		},
		Endpoints: []config.Endpoint{
			{Name: "config-chat", Upstream: "openai", Model: "gpt-4o", APIs: []string{"chat"},
				EndpointServing: config.EndpointServing{Kind: config.KindPayPerToken, Fallback: &fallback}},
		},
		Secrets: config.Secrets{Dir: secretsDir, EnvPrefix: "SLUICE_SECRET_"},
		Serving: config.Serving{ReadyTimeout: config.Duration(10 * time.Minute), Refresh: config.Duration(2 * time.Second)},
	}
}

// sqliteStore is a real SQLite store in a temporary directory.
func sqliteStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "sluice.db"), sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// newEnv starts a control plane on store; nil is a new SQLite store.
func newEnv(t *testing.T, store sluice.ServingStore) *env {
	t.Helper()
	if store == nil {
		store = sqliteStore(t)
	}
	e := &env{t: t, store: store, secrets: t.TempDir(), logs: &bytes.Buffer{},
		now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), notReady: map[string]bool{}, env: map[string]string{}}
	cfg := testConfig(e.secrets)
	ups := map[string]*proxy.Upstream{
		"vllm":   {Name: "vllm", Provider: "self-hosted"},
		"scorer": {Name: "scorer", Provider: "self-hosted", Passthrough: true},
		"openai": {Name: "openai", Provider: "openai"},
	}
	e.m = New(Options{
		Store:   store,
		Config:  cfg,
		Catalog: pricing.Default(),
		Logger:  slog.New(slog.NewTextHandler(lockedWriter{&e.mu, e.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now: func() time.Time {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.now
		},
		LookupEnv: func(k string) (string, bool) {
			e.mu.Lock()
			defer e.mu.Unlock()
			v, ok := e.env[k]
			return v, ok
		},
		Hooks: Hooks{
			Upstream: func(name string) *proxy.Upstream { return ups[name] },
			NewUpstream: func(u config.Upstream) (*proxy.Upstream, error) {
				e.mu.Lock()
				defer e.mu.Unlock()
				e.built = append(e.built, u)
				if strings.Contains(u.BaseURL, "refuse") {
					return nil, errors.New("egress: host " + u.BaseURL + " is not allowed")
				}
				return &proxy.Upstream{Name: u.Name, Provider: u.Provider}, nil
			},
			Guard: func(u *proxy.Upstream) proxy.Guard { return testGuard{u} },
			Gate: func(endpoint, entity string, c config.Capacity) proxy.Gate {
				e.mu.Lock()
				defer e.mu.Unlock()
				g := gateCall{endpoint, entity, c}
				e.gates = append(e.gates, g)
				return testGate{g}
			},
			Ready: func(u *proxy.Upstream) bool {
				e.mu.Lock()
				defer e.mu.Unlock()
				return !e.notReady[u.Name]
			},
			Apply: func(eps []*proxy.Endpoint) {
				e.mu.Lock()
				defer e.mu.Unlock()
				e.applies++
				e.applied = map[string]*proxy.Endpoint{}
				for _, ep := range eps {
					e.applied[ep.Name] = ep
				}
			},
		},
	})
	if err := e.m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	e.m.Register(mux, func(r *http.Request) (*sluice.Key, error) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if k := testKeys[tok]; ok && k != nil {
			return k, nil
		}
		return nil, apierr.Unauthorized()
	})
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

func (e *env) setReady(upstream string, ready bool) {
	e.mu.Lock()
	e.notReady[upstream] = !ready
	e.mu.Unlock()
}

func (e *env) endpoint(name string) *proxy.Endpoint {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.applied[name]
}

func (e *env) lastBuilt() config.Upstream {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.built) == 0 {
		e.t.Fatal("no upstream was built")
	}
	return e.built[len(e.built)-1]
}

func (e *env) writeSecret(scope, key, value string) {
	e.t.Helper()
	dir := filepath.Join(e.secrets, scope)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, key), []byte(value), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) sync() {
	e.t.Helper()
	if err := e.m.Sync(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// response is one answer from the server.
type response struct {
	status int
	body   []byte
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// dbErr is the answer's Databricks error.
func (r response) dbErr(t *testing.T) (code, msg string) {
	t.Helper()
	var b struct {
		ErrorCode string `json:"error_code"`
		Message   string `json:"message"`
	}
	r.decode(t, &b)
	return b.ErrorCode, b.Message
}

// wantErr checks an error answer's status and error_code and returns its
// message.
func (r response) wantErr(t *testing.T, status int, code string) string {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	got, msg := r.dbErr(t)
	if got != code {
		t.Fatalf("error_code %q, want %q: %s", got, code, r.body)
	}
	return msg
}

func (r response) wantOK(t *testing.T) response {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	return r
}

func (e *env) do(token, method, path string, body any) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{resp.StatusCode, b}
}

// admit runs the manager's admitter for key on the named endpoint.
func (e *env) admit(token, endpoint string) error {
	ep := e.endpoint(endpoint)
	if ep == nil {
		ep = &proxy.Endpoint{Name: endpoint}
	}
	_, err := e.m.Admitter().Admit(context.Background(), &proxy.Admission{Key: testKeys[token], Endpoint: ep})
	return err
}

// externalOpenAI is a served entity on an OpenAI-compatible loopback
// server, keyed by a secret reference.
func externalOpenAI(name, model, keyRef string) map[string]any {
	e := map[string]any{
		"external_model": map[string]any{
			"name": model, "provider": "openai", "task": "llm/v1/chat",
			"openai_config": map[string]any{"openai_api_key": keyRef, "openai_api_base": "http://127.0.0.1:9/v1"},
		},
	}
	if name != "" {
		e["name"] = name
	}
	return e
}

func createBody(name string, entities ...map[string]any) map[string]any {
	return map[string]any{"name": name, "config": map[string]any{"served_entities": entities}}
}

// fresh zeroes *v for decoding into it again (json.Unmarshal leaves
// fields the answer lacks as they were).
func fresh[T any](v *T) *T {
	var zero T
	*v = zero
	return v
}
