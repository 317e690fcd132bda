package proxy_test

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/provider"
	"github.com/sluice-gateway/sluice/proxy"
)

// memLedger keeps committed records.
type memLedger struct {
	mu   sync.Mutex
	recs []sluice.UsageRecord
}

func (l *memLedger) Commit(_ context.Context, r sluice.UsageRecord) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
	return nil
}

func (l *memLedger) last(t *testing.T) sluice.UsageRecord {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.recs) == 0 {
		t.Fatal("no record")
	}
	return l.recs[len(l.recs)-1]
}

type oneKey struct{}

func (oneKey) Authenticate(_ context.Context, s string) (*sluice.Key, error) {
	if s != "sk-test" {
		return nil, sluice.ErrNotFound
	}
	return &sluice.Key{ID: "k1", Team: "t1"}, nil
}

// upstream is a test model server; fail decides per call whether it
// answers with a status of its own instead.
type upstream struct {
	srv   *httptest.Server
	calls atomic.Int64
	last  atomic.Value // last body
}

func newUpstream(t *testing.T, name string, h func(w http.ResponseWriter, r *http.Request) bool) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		u.last.Store(string(b))
		if h != nil && h(w, r) {
			return
		}
		var req struct {
			Stream bool `json:"stream"`
		}
		json.Unmarshal(b, &req)
		if req.Stream {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, `data: {"model":"`+name+`","choices":[{"delta":{"content":"hi"}}]}`+"\n\n")
			io.WriteString(w, `data: {"model":"`+name+`","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`+"\n\n")
			io.WriteString(w, "data: [DONE]\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"model":"`+name+`","choices":[{"message":{"content":"hi from `+name+`"}}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func target(t *testing.T, name string, u *upstream) *proxy.Target {
	a, err := provider.NewOpenAI(u.srv.URL+"/v1", "up-key", nil)
	if err != nil {
		t.Fatal(err)
	}
	return &proxy.Target{Name: name, Model: name, Upstream: &proxy.Upstream{Name: "up-" + name, Adapter: a, Transport: http.DefaultTransport, Timeout: 2 * time.Second}}
}

func gateway(t *testing.T, o proxy.Options, eps ...*proxy.Endpoint) (*httptest.Server, *memLedger) {
	l := &memLedger{}
	o.Auth, o.Ledger = oneKey{}, l
	p := proxy.New(o, eps)
	mux := http.NewServeMux()
	mux.Handle("POST /v1/chat/completions", p.Handler(sluice.APIChat))
	mux.Handle("POST /serving-endpoints/{name}/invocations", p.Route(proxy.Route{EndpointParam: "name", Dialect: proxy.DialectDatabricks}))
	mux.Handle("POST /serving-endpoints/chat/completions", p.Route(proxy.Route{API: sluice.APIChat, Dialect: proxy.DialectDatabricks}))
	mux.Handle("POST /openai/deployments/{name}/chat/completions", p.Route(proxy.Route{API: sluice.APIChat, EndpointParam: "name", RequireQuery: "api-version"}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, l
}

func post(t *testing.T, url, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer sk-test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func status(code int) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(code)
		io.WriteString(w, `{"error":{"message":"nope"}}`)
		return true
	}
}

const chat = `{"model":"ep","messages":[{"role":"user","content":"hello"}]}`

func TestFallbackOrder(t *testing.T) {
	a := newUpstream(t, "a", status(503))
	b := newUpstream(t, "b", status(429))
	c := newUpstream(t, "c", nil)
	ep := &proxy.Endpoint{Name: "ep", APIs: []sluice.API{sluice.APIChat}, Ordered: true, Fallback: true,
		Targets: []*proxy.Target{target(t, "a", a), target(t, "b", b), target(t, "c", c)}}
	srv, l := gateway(t, proxy.Options{}, ep)
	resp, body := post(t, srv.URL+"/v1/chat/completions", chat)
	if resp.StatusCode != 200 || !strings.Contains(body, "hi from c") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("served-model-name"); got != "c" {
		t.Fatalf("served-model-name %q", got)
	}
	rec := l.last(t)
	if rec.ServedEntity != "c" || rec.Attempts != 3 || rec.Upstream != "up-c" {
		t.Fatalf("record %+v", rec)
	}
	if want := "a:502:upstream_status;b:429:upstream_rate_limited;c:200"; rec.AttemptLog != want {
		t.Fatalf("attempt log %q, want %q", rec.AttemptLog, want)
	}
	if rec.TotalTokens != 5 || rec.Status != 200 {
		t.Fatalf("usage %+v", rec)
	}

	// A verdict on the request itself (400) is not retried elsewhere.
	bad := newUpstream(t, "bad", status(400))
	ep2 := &proxy.Endpoint{Name: "ep", APIs: []sluice.API{sluice.APIChat}, Ordered: true, Fallback: true,
		Targets: []*proxy.Target{target(t, "bad", bad), target(t, "c", c)}}
	srv2, l2 := gateway(t, proxy.Options{}, ep2)
	before := c.calls.Load()
	resp, _ = post(t, srv2.URL+"/v1/chat/completions", chat)
	if resp.StatusCode != 400 || c.calls.Load() != before {
		t.Fatalf("400 was retried: status %d", resp.StatusCode)
	}
	if rec := l2.last(t); rec.Attempts != 1 || rec.AttemptLog != "bad:400:invalid_request" && rec.AttemptLog != "bad:400:upstream_status" {
		t.Fatalf("record %+v", rec)
	}

	// With fallback off, the first failure is the answer.
	ep3 := &proxy.Endpoint{Name: "ep", APIs: []sluice.API{sluice.APIChat}, Ordered: true,
		Targets: []*proxy.Target{target(t, "a", a), target(t, "c", c)}}
	srv3, _ := gateway(t, proxy.Options{}, ep3)
	before = c.calls.Load()
	if resp, _ := post(t, srv3.URL+"/v1/chat/completions", chat); resp.StatusCode != 502 || c.calls.Load() != before {
		t.Fatalf("fallback without Fallback: %d", resp.StatusCode)
	}
}

func TestNoFallbackAfterFirstStreamedByte(t *testing.T) {
	// a sends one event, then breaks the connection.
	a := newUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"choices":[{"delta":{"content":"par"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	// early breaks before any event.
	early := newUpstream(t, "early", func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	b := newUpstream(t, "b", nil)
	stream := `{"model":"ep","stream":true,"messages":[{"role":"user","content":"hello"}]}`

	ep := &proxy.Endpoint{Name: "ep", APIs: []sluice.API{sluice.APIChat}, Ordered: true, Fallback: true,
		Targets: []*proxy.Target{target(t, "a", a), target(t, "b", b)}}
	srv, l := gateway(t, proxy.Options{}, ep)
	req, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions", strings.NewReader(stream))
	req.Header.Set("Authorization", "Bearer sk-test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(got), "par") || strings.Contains(string(got), "[DONE]") {
		t.Fatalf("stream %q", got)
	}
	if b.calls.Load() != 0 {
		t.Fatal("fell back after bytes reached the client")
	}
	if rec := l.last(t); rec.Attempts != 1 || rec.ServedEntity != "a" || rec.ErrorClass != sluice.ErrClassUpstreamReset {
		t.Fatalf("record %+v", rec)
	}

	// Broken before the first event: nothing was sent, so b answers.
	ep2 := &proxy.Endpoint{Name: "ep", APIs: []sluice.API{sluice.APIChat}, Ordered: true, Fallback: true,
		Targets: []*proxy.Target{target(t, "early", early), target(t, "b", b)}}
	srv2, l2 := gateway(t, proxy.Options{}, ep2)
	resp, body := post(t, srv2.URL+"/v1/chat/completions", stream)
	if resp.StatusCode != 200 || !strings.Contains(body, "[DONE]") || b.calls.Load() != 1 {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	rec := l2.last(t)
	if rec.Attempts != 2 || rec.ServedEntity != "b" || rec.TotalTokens != 4 || !strings.HasPrefix(rec.AttemptLog, "early:502:upstream_reset;b:200") {
		t.Fatalf("record %+v", rec)
	}
}

func TestTrafficSplitSeeded(t *testing.T) {
	a, b, c := newUpstream(t, "a", nil), newUpstream(t, "b", nil), newUpstream(t, "c", nil)
	ep := &proxy.Endpoint{Name: "ep", APIs: []sluice.API{sluice.APIChat}, Ordered: true, Fallback: true,
		Split:   []int{70, 20, 10},
		Targets: []*proxy.Target{target(t, "a", a), target(t, "b", b), target(t, "c", c)}}
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	srv, _ := gateway(t, proxy.Options{Random: func() float64 { mu.Lock(); defer mu.Unlock(); return rng.Float64() }}, ep)
	const n = 2000
	for range n {
		if resp, body := post(t, srv.URL+"/v1/chat/completions", chat); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	for _, x := range []struct {
		u    *upstream
		want float64
	}{{a, 0.7}, {b, 0.2}, {c, 0.1}} {
		got := float64(x.u.calls.Load()) / n
		// 4 standard deviations of a binomial share.
		tol := 4 * math.Sqrt(x.want*(1-x.want)/n)
		if math.Abs(got-x.want) > tol {
			t.Errorf("share %.3f, want %.2f ± %.3f", got, x.want, tol)
		}
	}
}

// fakeGuard is a breaker the test opens and closes.
type fakeGuard struct {
	open    atomic.Bool
	reports []bool
	mu      sync.Mutex
}

func (g *fakeGuard) Allow() bool { return !g.open.Load() }
func (g *fakeGuard) Report(ok bool) {
	g.mu.Lock()
	g.reports = append(g.reports, ok)
	g.mu.Unlock()
}
func (g *fakeGuard) RetryAfter() time.Duration {
	if g.open.Load() {
		return 5 * time.Second
	}
	return 0
}

func TestGuardsSkipAndLearn(t *testing.T) {
	a := newUpstream(t, "a", status(500))
	b := newUpstream(t, "b", nil)
	ga, gb := &fakeGuard{}, &fakeGuard{}
	ta, tb := target(t, "a", a), target(t, "b", b)
	ta.Guard, tb.Guard = ga, gb
	ep := &proxy.Endpoint{Name: "ep", APIs: []sluice.API{sluice.APIChat}, Ordered: true, Fallback: true, Targets: []*proxy.Target{ta, tb}}
	srv, l := gateway(t, proxy.Options{}, ep)
	post(t, srv.URL+"/v1/chat/completions", chat)
	if len(ga.reports) != 1 || ga.reports[0] || len(gb.reports) != 1 || !gb.reports[0] {
		t.Fatalf("reports a=%v b=%v", ga.reports, gb.reports)
	}
	ga.open.Store(true)
	before := a.calls.Load()
	resp, _ := post(t, srv.URL+"/v1/chat/completions", chat)
	if resp.StatusCode != 200 || a.calls.Load() != before {
		t.Fatal("an open guard's upstream was called")
	}
	if rec := l.last(t); rec.AttemptLog != "a:open;b:200" || rec.Attempts != 1 {
		t.Fatalf("record %+v", rec)
	}
	gb.open.Store(true)
	resp, body := post(t, srv.URL+"/v1/chat/completions", chat)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "5" {
		t.Fatalf("all open: %d %s %v", resp.StatusCode, body, resp.Header)
	}
}

func TestDatabricksPaths(t *testing.T) {
	up := newUpstream(t, "m", nil)
	mlflow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/invocations" || strings.Contains(string(b), "client_request_id") {
			w.WriteHeader(400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"predictions":[0.25],"echo":`+string(b)+`}`)
	}))
	t.Cleanup(mlflow.Close)
	ma, _ := provider.NewMLflow(mlflow.URL, "", nil)
	custom := &proxy.Endpoint{Name: "fraud", APIs: []sluice.API{sluice.APIInvocations, sluice.APIChat}, Targets: []*proxy.Target{{
		Name: "fraud-3", Upstream: &proxy.Upstream{Name: "mlflow", Passthrough: true, Adapter: ma, Transport: http.DefaultTransport}}}}
	ep := &proxy.Endpoint{Name: "ep", APIs: []sluice.API{sluice.APIChat}, Targets: []*proxy.Target{target(t, "m", up)}}
	srv, l := gateway(t, proxy.Options{}, ep, custom)

	// Chat through invocations, with tracking fields kept on the record
	// and not sent on.
	resp, body := post(t, srv.URL+"/serving-endpoints/ep/invocations",
		`{"messages":[{"role":"user","content":"hi"}],"client_request_id":"abc-1","usage_context":{"project": "x"},"extra_params":{"top_k":2}}`)
	if resp.StatusCode != 200 || resp.Header.Get("served-model-name") != "m" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	sent := up.last.Load().(string)
	if strings.Contains(sent, "client_request_id") || strings.Contains(sent, "usage_context") || !strings.Contains(sent, `"top_k":2`) || !strings.Contains(sent, `"model":"m"`) {
		t.Fatalf("upstream got %s", sent)
	}
	rec := l.last(t)
	if rec.ClientRequestID != "abc-1" || rec.UsageContext != `{"project":"x"}` || rec.Endpoint != "ep" || rec.API != sluice.APIChat {
		t.Fatalf("record %+v", rec)
	}

	// A custom model's payload passes through and answers predictions.
	resp, body = post(t, srv.URL+"/serving-endpoints/fraud/invocations", `{"dataframe_split":{"columns":["amount"],"data":[[12.5]]},"client_request_id":"z"}`)
	if resp.StatusCode != 200 || !strings.Contains(body, `"predictions":[0.25]`) || !strings.Contains(body, `"echo":{"dataframe_split"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if rec := l.last(t); rec.API != sluice.APIInvocations || rec.ServedEntity != "fraud-3" || rec.ClientRequestID != "z" ||
		rec.TotalTokens != 0 || rec.UsageSource != sluice.UsageNone || rec.Status != 200 {
		t.Fatalf("record %+v", rec)
	}

	// Databricks error shapes.
	for _, c := range []struct {
		path, body, code string
		status           int
	}{
		{"/serving-endpoints/nope/invocations", `{"messages":[]}`, "RESOURCE_DOES_NOT_EXIST", 404},
		{"/serving-endpoints/ep/invocations", `{"foo":1}`, "BAD_REQUEST", 400},
		{"/serving-endpoints/ep/invocations", `{"inputs":[1]}`, "INVALID_PARAMETER_VALUE", 400},
		{"/serving-endpoints/chat/completions", `{"model":"nope","messages":[]}`, "RESOURCE_DOES_NOT_EXIST", 404},
	} {
		resp, body := post(t, srv.URL+c.path, c.body)
		var e struct {
			Code string `json:"error_code"`
			Msg  string `json:"message"`
		}
		json.Unmarshal([]byte(body), &e)
		if resp.StatusCode != c.status || e.Code != c.code || e.Msg == "" {
			t.Errorf("%s %s: %d %s", c.path, c.body, resp.StatusCode, body)
		}
	}

	// Azure deployments path: the deployment names the endpoint.
	resp, body = post(t, srv.URL+"/openai/deployments/ep/chat/completions?api-version=2024-10-21", `{"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("azure %d %s", resp.StatusCode, body)
	}
	resp, body = post(t, srv.URL+"/openai/deployments/ep/chat/completions", `{"messages":[]}`)
	if resp.StatusCode != 400 || !strings.Contains(body, "api-version") || !strings.Contains(body, `"error":{`) {
		t.Fatalf("azure without api-version: %d %s", resp.StatusCode, body)
	}
}
