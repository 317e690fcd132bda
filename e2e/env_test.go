package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/auth"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/server"
	"github.com/sluice-gateway/sluice/simulator"
)

// Endpoints of the gateway every env runs. The test upstream serves the
// first four; the fault endpoints reach paths of the same server that
// misbehave on purpose; epBuiltin is Sluice's in-process simulator.
const (
	epChat        = "chat"        // chat and completions, priced
	epEmbed       = "embed"       // embeddings, priced
	epRestricted  = "restricted"  // exists, but the env's key may not use it
	epBuiltin     = "sim-chat"    // the in-process simulator (type: simulator)
	epSlow        = "slow"        // the upstream never answers in time
	epRateLimited = "ratelimited" // the upstream answers 429 with Retry-After
	epBroken      = "broken"      // the upstream answers 500

	chatModel  = "gpt-4o-mini"            // the upstream's model behind epChat
	embedModel = "text-embedding-3-small" // the upstream's model behind epEmbed

	// Prices of the priced endpoints: USD 10 and 30 per 1M tokens, that is
	// 10 and 30 micro-dollars a token, so that every cost is exact.
	inputMicros  = 10
	outputMicros = 30

	team            = "e2e"
	slowTimeout     = 300 * time.Millisecond // the slow upstream's header timeout
	retryAfter      = "7"                    // what the rate-limited upstream asks for
	upstreamName    = "sim"                  // the configured name of the test upstream
	builtinUpstream = "builtin"
)

// envConfig is what an envOption may change.
type envConfig struct {
	sim          simulator.Options
	maxBodyBytes int64
	grace        time.Duration
}

type envOption func(*envConfig)

// withSimulator sets the options of the simulator behind the test upstream.
func withSimulator(o simulator.Options) envOption {
	return func(c *envConfig) { c.sim = o }
}

// withMaxBodyBytes sets server.max_body_bytes.
func withMaxBodyBytes(n int64) envOption {
	return func(c *envConfig) { c.maxBodyBytes = n }
}

// withShutdownGrace sets server.shutdown_grace.
func withShutdownGrace(d time.Duration) envOption {
	return func(c *envConfig) { c.grace = d }
}

// env is a running gateway in front of a recording upstream.
type env struct {
	URL    string        // the gateway's root: http://127.0.0.1:PORT
	Key    string        // the secret of a key of team "e2e" for every endpoint but epRestricted
	KeyID  string        // its id
	Up     *upstream     // the test upstream
	Client openai.Client // the official SDK with Key, no retries
	HTTP   *http.Client  // a plain client for raw requests
	DSN    string        // the SQLite ledger file

	srv       *server.Server
	cancel    context.CancelFunc // starts the graceful shutdown
	stopped   chan struct{}      // closed when Serve has returned
	serveErr  error              // Serve's result, once stopped is closed
	closeOnce sync.Once
	closeErr  error
	logs      *logBuffer
}

// newEnv starts a test upstream (the simulator behind a recorder) and a
// Sluice server on a loopback listener with a fresh SQLite ledger, and
// creates a key. Everything is stopped when the test ends.
func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	c := envConfig{sim: simulator.Options{OutputTokens: 16}, maxBodyBytes: 1 << 20, grace: 10 * time.Second}
	for _, o := range opts {
		o(&c)
	}
	up := newUpstream(t, simulator.New(c.sim))
	dir := t.TempDir()
	e := &env{Up: up, DSN: filepath.Join(dir, "ledger.db"), logs: &logBuffer{}, stopped: make(chan struct{}),
		HTTP: &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true}, Timeout: 30 * time.Second}}

	cfg, err := config.Parse(strings.NewReader(gatewayYAML(e.DSN, up.URL, c)), nil)
	if err != nil {
		t.Fatalf("test config: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.srv, err = server.New(ctx, cfg, server.Options{Logger: log})
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		e.srv.Close()
		t.Fatal(err)
	}
	e.URL = "http://" + ln.Addr().String()
	go func() {
		e.serveErr = e.srv.Serve(ctx, ln)
		close(e.stopped)
	}()
	t.Cleanup(func() {
		e.cancel()
		if err := e.waitServed(15 * time.Second); err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := e.close(); err != nil {
			t.Errorf("server Close: %v", err)
		}
		e.HTTP.CloseIdleConnections()
		if t.Failed() {
			t.Logf("gateway log (tail):\n%s", e.logs.tail(16<<10))
		}
	})

	allowed := []string{epChat, epEmbed, epBuiltin, epSlow, epRateLimited, epBroken}
	e.Key, e.KeyID = e.newKey(t, allowed...)
	e.Client = e.client(e.Key)
	return e
}

// gatewayYAML is the test configuration: the env's upstream under several
// paths, each an endpoint, and the in-process simulator.
func gatewayYAML(dsn, upURL string, c envConfig) string {
	return fmt.Sprintf(`listen: 127.0.0.1:0
ledger:
  dsn: %q
  synchronous: normal
server:
  max_body_bytes: %d
  shutdown_grace: %s
log:
  level: debug
upstreams:
  - name: %s
    type: openai
    base_url: %s/v1
    timeout: 30s
  - name: slow
    type: openai
    base_url: %s/slow/v1
    timeout: %s
  - name: ratelimited
    type: openai
    base_url: %s/ratelimited/v1
  - name: broken
    type: openai
    base_url: %s/broken/v1
  - name: %s
    type: simulator
    simulator:
      output_tokens: 8
endpoints:
  - name: %s
    upstream: %s
    model: %s
    apis: [chat, completions]
    price: {input_per_1m: "10", output_per_1m: "30"}
  - name: %s
    upstream: %s
    model: %s
    apis: [embeddings]
    price: {input_per_1m: "10", output_per_1m: "30"}
  - name: %s
    upstream: %s
    model: gpt-4o
    apis: [chat]
  - name: %s
    upstream: %s
    apis: [chat]
  - {name: %s, upstream: slow, apis: [chat]}
  - {name: %s, upstream: ratelimited, apis: [chat]}
  - {name: %s, upstream: broken, apis: [chat]}
`, dsn, c.maxBodyBytes, c.grace, upstreamName, upURL, upURL, slowTimeout, upURL, upURL, builtinUpstream,
		epChat, upstreamName, chatModel, epEmbed, upstreamName, embedModel, epRestricted, upstreamName,
		epBuiltin, builtinUpstream, epSlow, epRateLimited, epBroken)
}

// newKey stores a new key of team "e2e" limited to endpoints (all if none)
// and returns its secret and id.
func (e *env) newKey(t *testing.T, endpoints ...string) (secret, id string) {
	t.Helper()
	secret, k, err := auth.NewKey(team, t.Name(), false, endpoints, time.Time{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Store().CreateKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	return secret, k.ID
}

// revoke revokes the key with the given id in the store.
func (e *env) revoke(t *testing.T, id string) {
	t.Helper()
	if err := e.srv.Store().RevokeKey(context.Background(), id, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// client returns an SDK client for the gateway with the given key. Retries
// are off: every call is exactly one request and one record.
func (e *env) client(key string, opts ...option.RequestOption) openai.Client {
	base := []option.RequestOption{
		option.WithBaseURL(e.URL + "/v1"),
		option.WithAPIKey(key),
		option.WithMaxRetries(0),
		option.WithHTTPClient(e.HTTP),
	}
	return openai.NewClient(append(base, opts...)...)
}

// shutdown starts the server's graceful shutdown, as a signal would.
func (e *env) shutdown() { e.cancel() }

// waitServed waits up to d for Serve to return and returns its error.
func (e *env) waitServed(d time.Duration) error {
	select {
	case <-e.stopped:
		return e.serveErr
	case <-time.After(d):
		return fmt.Errorf("Serve has not returned %v after the shutdown began", d)
	}
}

// close flushes the ledger and closes the store, as `sluice serve` does
// after Serve returns. Later calls return the first call's result.
func (e *env) close() error {
	e.closeOnce.Do(func() { e.closeErr = e.srv.Close() })
	return e.closeErr
}

// record returns the ledger record of a request that the client has seen
// the end of: it must be committed already.
func (e *env) record(t *testing.T, requestID string) sluice.UsageRecord {
	t.Helper()
	if requestID == "" {
		t.Fatal("the response carried no x-request-id")
	}
	rec, err := e.srv.Store().Usage(context.Background(), requestID)
	if err != nil {
		t.Fatalf("ledger record of %s, whose response has ended: %v", requestID, err)
	}
	return rec
}

// awaitRecord returns the ledger record of a request whose end the client
// did not see (it went away), waiting up to 10s for the gateway to write it.
func (e *env) awaitRecord(t *testing.T, requestID string) sluice.UsageRecord {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec, err := e.srv.Store().Usage(context.Background(), requestID)
		if err == nil {
			return rec
		}
		if !errors.Is(err, sluice.ErrNotFound) || time.Now().After(deadline) {
			t.Fatalf("ledger record of %s: %v", requestID, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recordCount is the number of records in the ledger.
func (e *env) recordCount(t *testing.T) int64 {
	t.Helper()
	rows, err := e.srv.Store().UsageReport(context.Background(), sluice.UsageQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, r := range rows {
		n += r.Requests
	}
	return n
}

// post sends a raw request to the gateway and returns the response with
// its body read.
func (e *env) post(t *testing.T, path, key string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.HTTP.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading the answer: %v", path, err)
	}
	return resp, b
}

// requestID returns the x-request-id of a response.
func requestID(t *testing.T, resp *http.Response) string {
	t.Helper()
	if resp == nil {
		t.Fatal("no HTTP response captured")
	}
	id := resp.Header.Get("X-Request-Id")
	if id == "" {
		t.Fatalf("response %s has no x-request-id", resp.Status)
	}
	return id
}

// tokens is a usage block as an upstream reports it.
type tokens struct {
	Prompt     int64 `json:"prompt_tokens"`
	Completion int64 `json:"completion_tokens"`
	Total      int64 `json:"total_tokens"`
}

// upstream is the test's model provider: a loopback httptest server that
// records every request it gets and every byte it answers. Paths under
// /slow/, /ratelimited/ and /broken/ misbehave; the rest go to the
// simulator.
type upstream struct {
	URL string
	sim http.Handler
	srv *httptest.Server

	mu    sync.Mutex
	calls []*upstreamCall
}

// upstreamCall is one request the upstream received.
type upstreamCall struct {
	Path   string
	Header http.Header
	Body   []byte
	done   chan struct{} // closed when the handler has returned

	mu        sync.Mutex
	resp      []byte
	cancelled bool // the request's context was done when the handler returned
}

func newUpstream(t *testing.T, sim http.Handler) *upstream {
	u := &upstream{sim: sim}
	u.srv = httptest.NewServer(u)
	u.URL = u.srv.URL
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	c := &upstreamCall{Path: r.URL.Path, Header: r.Header.Clone(), Body: body, done: make(chan struct{})}
	u.mu.Lock()
	u.calls = append(u.calls, c)
	u.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.cancelled = r.Context().Err() != nil
		c.mu.Unlock()
		close(c.done)
	}()
	tw := &teeWriter{ResponseWriter: w, call: c}
	switch {
	case strings.HasPrefix(r.URL.Path, "/slow/"):
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
			http.Error(w, "too late", http.StatusServiceUnavailable)
		}
	case strings.HasPrefix(r.URL.Path, "/ratelimited/"):
		w.Header().Set("Retry-After", retryAfter)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(tw, `{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}`)
	case strings.HasPrefix(r.URL.Path, "/broken/"):
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(tw, `{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}`)
	default:
		u.sim.ServeHTTP(tw, r)
	}
}

// Calls returns the requests received so far.
func (u *upstream) Calls() []*upstreamCall {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*upstreamCall(nil), u.calls...)
}

// Count is the number of requests received so far.
func (u *upstream) Count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.calls)
}

// only returns the single request the upstream has received.
func (u *upstream) only(t *testing.T) *upstreamCall {
	t.Helper()
	calls := u.Calls()
	if len(calls) != 1 {
		t.Fatalf("the upstream got %d requests, want 1", len(calls))
	}
	return calls[0]
}

// wait waits up to 10s for the handler of c to return.
func (c *upstreamCall) wait(t *testing.T) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the upstream's handler for %s is still running after 10s", c.Path)
	}
}

// Response returns the bytes the upstream has written so far.
func (c *upstreamCall) Response() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.resp)
}

// Cancelled reports whether the request's context was done when the
// handler returned: the gateway went away before the answer was complete.
func (c *upstreamCall) Cancelled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cancelled
}

// JSON decodes the request body.
func (c *upstreamCall) JSON(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(c.Body, &m); err != nil {
		t.Fatalf("the upstream got a body that is not JSON: %v: %q", err, c.Body)
	}
	return m
}

// Reported returns the usage and model the upstream reported in its answer
// (a JSON body or an SSE stream).
func (c *upstreamCall) Reported(t *testing.T) (u tokens, model string) {
	t.Helper()
	type answer struct {
		Model string  `json:"model"`
		Usage *tokens `json:"usage"`
	}
	resp := c.Response()
	if !bytes.HasPrefix(bytes.TrimSpace(resp), []byte("data:")) {
		var a answer
		if err := json.Unmarshal(resp, &a); err != nil {
			t.Fatalf("the upstream's answer is not JSON: %v", err)
		}
		if a.Usage == nil {
			t.Fatalf("the upstream reported no usage: %s", resp)
		}
		return *a.Usage, a.Model
	}
	found := false
	for _, d := range sseData(resp) {
		var a answer
		if string(d) == "[DONE]" || json.Unmarshal(d, &a) != nil {
			continue
		}
		if model == "" {
			model = a.Model
		}
		if a.Usage != nil {
			u, found = *a.Usage, true
		}
	}
	if !found {
		t.Fatalf("the upstream's stream reported no usage")
	}
	return u, model
}

// teeWriter keeps a copy of what a handler writes.
type teeWriter struct {
	http.ResponseWriter
	call *upstreamCall
}

func (w *teeWriter) Write(p []byte) (int, error) {
	w.call.mu.Lock()
	w.call.resp = append(w.call.resp, p...)
	w.call.mu.Unlock()
	return w.ResponseWriter.Write(p)
}

func (w *teeWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *teeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *teeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// sseData returns the data of every event of an SSE stream.
func sseData(stream []byte) [][]byte {
	var out [][]byte
	for _, ev := range bytes.Split(bytes.ReplaceAll(stream, []byte("\r\n"), []byte("\n")), []byte("\n\n")) {
		var data [][]byte
		for _, line := range bytes.Split(ev, []byte("\n")) {
			if d, ok := bytes.CutPrefix(line, []byte("data:")); ok {
				data = append(data, bytes.TrimPrefix(d, []byte(" ")))
			}
		}
		if data != nil {
			out = append(out, bytes.Join(data, []byte("\n")))
		}
	}
	return out
}

// readSSE reads a gateway stream event by event until it ends and reports
// the data of its events and whether [DONE] arrived; err is the read error
// that ended it, if any.
func readSSE(r io.Reader) (data [][]byte, done bool, err error) {
	br := bufio.NewReader(r)
	var cur [][]byte
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return data, done, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if cur != nil {
				d := bytes.Join(cur, []byte("\n"))
				if string(d) == "[DONE]" {
					done = true
				}
				data = append(data, d)
				cur = nil
			}
			continue
		}
		if d, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			cur = append(cur, bytes.TrimPrefix(d, []byte(" ")))
		}
	}
}

// checkSuccess checks the record of a request that succeeded against the
// usage the upstream reported.
func checkSuccess(t *testing.T, e *env, rec sluice.UsageRecord, endpoint string, api sluice.API, stream bool, want tokens, model string) {
	t.Helper()
	if want.Total == 0 {
		want.Total = want.Prompt + want.Completion
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"key", rec.KeyID, e.KeyID},
		{"team", rec.Team, team},
		{"endpoint", rec.Endpoint, endpoint},
		{"api", rec.API, api},
		{"upstream", rec.Upstream, upstreamName},
		{"upstream model", rec.UpstreamModel, model},
		{"status", rec.Status, http.StatusOK},
		{"error class", rec.ErrorClass, ""},
		{"stream", rec.Stream, stream},
		{"usage source", rec.UsageSource, sluice.UsageUpstream},
		{"prompt tokens", rec.PromptTokens, want.Prompt},
		{"completion tokens", rec.CompletionTokens, want.Completion},
		{"total tokens", rec.TotalTokens, want.Total},
		{"cost", rec.CostMicros, inputMicros*want.Prompt + outputMicros*want.Completion},
		{"client address", rec.ClientAddr, "127.0.0.1"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("record %s: %s = %v, want %v", rec.RequestID, c.name, c.got, c.want)
		}
	}
	if rec.CostMicros <= 0 {
		t.Errorf("record %s: cost %d µ$ for a priced endpoint, want > 0", rec.RequestID, rec.CostMicros)
	}
	if rec.PriceVersion == "" || rec.PriceVersion == "unpriced" {
		t.Errorf("record %s: price version %q for a priced endpoint", rec.RequestID, rec.PriceVersion)
	}
	if rec.Latency <= 0 || rec.TTFT <= 0 || rec.TTFT > rec.Latency {
		t.Errorf("record %s: latency %v, time to first byte %v: want 0 < ttft <= latency", rec.RequestID, rec.Latency, rec.TTFT)
	}
	if age := time.Since(rec.Time); age < 0 || age > time.Minute {
		t.Errorf("record %s: time %v is not the request's", rec.RequestID, rec.Time)
	}
}

// checkRefused checks the record of a request refused with an error.
func checkRefused(t *testing.T, rec sluice.UsageRecord, status int, class string) {
	t.Helper()
	if rec.Status != status || rec.ErrorClass != class {
		t.Errorf("record %s: status %d, error class %q; want %d, %q", rec.RequestID, rec.Status, rec.ErrorClass, status, class)
	}
	if rec.PromptTokens != 0 || rec.CompletionTokens != 0 || rec.CostMicros != 0 {
		t.Errorf("record %s: %d+%d tokens, %d µ$ for a refused request, want none", rec.RequestID,
			rec.PromptTokens, rec.CompletionTokens, rec.CostMicros)
	}
}

// logBuffer collects the gateway's log for failing tests.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 {
		b.buf.Next(b.buf.Len() / 2)
	}
	return b.buf.Write(p)
}

func (b *logBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.Bytes()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return string(s)
}
