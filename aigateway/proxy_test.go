package aigateway_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/aigateway"
	"github.com/sluice-gateway/sluice/provider"
	"github.com/sluice-gateway/sluice/proxy"
)

// proxyEnv is a real proxy with the Guardrails admitter in front of a
// real upstream that records what it receives.
type proxyEnv struct {
	gw *httptest.Server

	mu   sync.Mutex
	last string
}

type nopLedger struct{}

func (nopLedger) Commit(context.Context, sluice.UsageRecord) error { return nil }

type oneKey struct{}

func (oneKey) Authenticate(_ context.Context, s string) (*sluice.Key, error) {
	if s != "sk-test" {
		return nil, sluice.ErrNotFound
	}
	return &sluice.Key{ID: "k1", Team: "t1"}, nil
}

func newProxyEnv(t *testing.T, gw *sluice.AIGateway) *proxyEnv {
	t.Helper()
	env := &proxyEnv{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		env.mu.Lock()
		env.last = string(b)
		env.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"model":"m","choices":[{"message":{"role":"assistant","content":"ok"}}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`)
	}))
	t.Cleanup(up.Close)
	a, err := provider.NewOpenAI(up.URL+"/v1", "up-key", nil)
	if err != nil {
		t.Fatal(err)
	}
	ep := &proxy.Endpoint{Name: "chat", APIs: []sluice.API{sluice.APIChat}, Gateway: gw, Targets: []*proxy.Target{{
		Model: "m", Upstream: &proxy.Upstream{Name: "up", Adapter: a, Transport: http.DefaultTransport, Timeout: 5 * time.Second}}}}
	p := proxy.New(proxy.Options{Auth: oneKey{}, Ledger: nopLedger{}, Admitters: []proxy.Admitter{aigateway.NewGuardrails(nil)}}, []*proxy.Endpoint{ep})
	mux := http.NewServeMux()
	mux.Handle("POST /v1/chat/completions", p.Handler(sluice.APIChat))
	env.gw = httptest.NewServer(mux)
	t.Cleanup(env.gw.Close)
	return env
}

func (env *proxyEnv) post(t *testing.T, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", env.gw.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer sk-test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func (env *proxyEnv) upstreamBody() string {
	env.mu.Lock()
	defer env.mu.Unlock()
	return env.last
}
