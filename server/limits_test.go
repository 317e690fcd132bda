package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/auth"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/server"
)

// startGateway runs a real Sluice on a loopback listener with the given
// YAML config (the ledger is a fresh SQLite file) and returns its base URL
// and a key for team "t".
func startGateway(t *testing.T, yaml string) (string, string, *server.Server) {
	t.Helper()
	dir := t.TempDir()
	yaml = strings.ReplaceAll(yaml, "LEDGER", filepath.Join(dir, "sluice.db"))
	cfg, err := config.Parse(strings.NewReader(yaml), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	secret, k, err := auth.NewKey("t", "test", false, nil, time.Time{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Store().CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	return "http://" + ln.Addr().String(), secret, srv
}

func post(t *testing.T, url, key, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestRateLimitRequestsPerMinute(t *testing.T) {
	base, key, _ := startGateway(t, `
ledger: {dsn: LEDGER}
upstreams: [{name: sim, type: simulator}]
endpoints: [{name: sim-chat, upstream: sim}]
rate_limits:
  rules:
    - {key: user_group, rpm: 3}
`)
	body := `{"model":"sim-chat","messages":[{"role":"user","content":"hi"}]}`
	for i := 0; i < 3; i++ {
		resp, b := post(t, base+"/v1/chat/completions", key, body)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, b)
		}
		if got := resp.Header.Get("X-Ratelimit-Limit-Requests"); got != "3" {
			t.Fatalf("limit header = %q", got)
		}
		if got := resp.Header.Get("X-Ratelimit-Remaining-Requests"); got != strconv.Itoa(2-i) {
			t.Fatalf("remaining header = %q after %d", got, i+1)
		}
	}
	resp, b := post(t, base+"/v1/chat/completions", key, body)
	if resp.StatusCode != 429 || !strings.Contains(b, `"code":"rate_limit_exceeded"`) || !strings.Contains(b, "team") {
		t.Fatalf("4th request: %d %s", resp.StatusCode, b)
	}
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra < 1 || ra > 20 {
		t.Fatalf("Retry-After = %q", resp.Header.Get("Retry-After"))
	}
}

func TestRateLimitTokensPerMinute(t *testing.T) {
	base, key, _ := startGateway(t, `
ledger: {dsn: LEDGER}
upstreams: [{name: sim, type: simulator, simulator: {output_tokens: 10}}]
endpoints: [{name: sim-chat, upstream: sim, max_output_tokens: 100}]
rate_limits:
  rules:
    - {key: key, tpm: 250}
`)
	// Without max_tokens each request reserves prompt + 100 tokens; the
	// real usage (~18) is refunded after each call, so many fit.
	body := `{"model":"sim-chat","messages":[{"role":"user","content":"hi"}]}`
	for i := 0; i < 6; i++ {
		resp, b := post(t, base+"/v1/chat/completions", key, body)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s (corrections not applied?)", i, resp.StatusCode, b)
		}
	}
	// A request asking for more than the whole limit can never fit.
	resp, b := post(t, base+"/v1/chat/completions", key, `{"model":"sim-chat","max_tokens":1000,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 429 || !strings.Contains(b, "lower max_tokens") {
		t.Fatalf("oversized request: %d %s", resp.StatusCode, b)
	}
}
