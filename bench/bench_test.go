package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/config"
)

// TestSmoke builds the sluice binary and runs the whole harness with tiny
// counts: simulator and gateway subprocesses, key, load, ledger check.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the sluice binary and starts subprocesses")
	}
	bin := filepath.Join(t.TempDir(), "sluice")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "github.com/sluice-gateway/sluice/cmd/sluice")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	o := Options{
		Sluice:            bin,
		Concurrency:       []int{1, 4},
		StreamConcurrency: []int{1, 4},
		Requests:          50,
		Warmup:            10,
		Rounds:            2,
		MaxDuration:       20 * time.Second,
		TempDir:           t.TempDir(),
	}
	if _, err := exec.LookPath("taskset"); err != nil || runtime.NumCPU() < 2 {
		o.NoPin = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := Measure(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
	if n := r.TotalErrors(); n != 0 {
		t.Fatalf("%d errors", n)
	}
	if len(r.Points) != 4 {
		t.Fatalf("%d points, want 4", len(r.Points))
	}
	for _, p := range r.Points {
		for _, s := range []Side{p.Direct, p.Sluice} {
			if s.Requests != 50 || s.Throughput <= 0 || s.P50Ms <= 0 || s.P99Ms < s.P50Ms {
				t.Errorf("%s %d: implausible side %+v", p.Kind, p.Concurrency, s)
			}
			if p.Kind == KindStream && (s.TTFBP50Ms <= 0 || s.TTFBP50Ms > s.P50Ms) {
				t.Errorf("%s %d: implausible time to first byte %+v", p.Kind, p.Concurrency, s)
			}
		}
		if p.GatewayPeakRSSMiB < 1 || p.GatewayPeakRSSMiB > 1024 {
			t.Errorf("%s %d: peak RSS %.1f MiB", p.Kind, p.Concurrency, p.GatewayPeakRSSMiB)
		}
		if p.GatewayCPUPerReqUs < 0 || p.GatewayCPUPerReqUs > 100000 {
			t.Errorf("%s %d: CPU per request %.0f µs", p.Kind, p.Concurrency, p.GatewayCPUPerReqUs)
		}
		if p.CommitWaits != int64(p.Sluice.Requests) {
			t.Errorf("%s %d: %d commit waits observed for %d requests", p.Kind, p.Concurrency, p.CommitWaits, p.Sluice.Requests)
		}
	}
	// 2 probes, then per point 10 warm-up and 50 measured requests.
	if want := int64(2 + 4*(10+50)); r.Ledger.Sent != want || r.Ledger.Records != want || r.Ledger.ErrorRecords != 0 {
		t.Errorf("ledger %+v, want %d records", r.Ledger, want)
	}
	if !strings.Contains(r.Command, "--conc 1,4 --stream-conc 1,4 --requests 50") {
		t.Errorf("command %q does not reproduce the options", r.Command)
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil || !json.Valid(js.Bytes()) {
		t.Fatalf("JSON report: %v\n%s", err, js.String())
	}
	entries, _ := os.ReadDir(o.TempDir)
	if len(entries) != 0 {
		t.Errorf("run directory left behind: %v", entries)
	}
}

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := []byte("4242 (sl uice) (x)) S 1 4242 4242 0 -1 4194560 2000 0 0 0 150 75 0 0 20 0 9 0 100 0 0")
	got, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := 225 * clockTick; got != want {
		t.Errorf("cpu = %v, want %v", got, want)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1")); err == nil {
		t.Error("short stat accepted")
	}
	self, err := procCPU(os.Getpid())
	if err != nil || self < 0 {
		t.Errorf("own cpu = %v, %v", self, err)
	}
	if wait, err := procRunQueueWait(os.Getpid()); err != nil || wait < 0 {
		t.Errorf("own run-queue wait = %v, %v", wait, err)
	}
	if rss, err := peakRSS(os.Getpid()); err != nil || rss < 1<<20 {
		t.Errorf("own peak RSS = %d, %v", rss, err)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{.5, 50 * time.Millisecond}, {.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {.001, time.Millisecond}} {
		if got := percentile(ds, c.q); got != c.want {
			t.Errorf("percentile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := percentile(nil, .5); got != 0 {
		t.Errorf("percentile of nothing = %v", got)
	}
}

const exposition = `# HELP sluice_ledger_commit_wait_seconds Time a response waited.
# TYPE sluice_ledger_commit_wait_seconds histogram
sluice_ledger_commit_wait_seconds_bucket{le="0.0001"} %d
sluice_ledger_commit_wait_seconds_bucket{le="0.001"} %d
sluice_ledger_commit_wait_seconds_bucket{le="0.01"} %d
sluice_ledger_commit_wait_seconds_bucket{le="+Inf"} %d
sluice_ledger_commit_wait_seconds_sum 0.5
sluice_ledger_commit_wait_seconds_count %d
sluice_ledger_commit_timeouts_total %d
sluice_requests_total{endpoint="a b",error_class="",status="200",team="x"} 7 1700000000000
`

func scrapeOf(t *testing.T, b1, b2, b3, inf, timeouts int) metrics {
	t.Helper()
	m, err := parseMetrics([]byte(fmt.Sprintf(exposition, b1, b2, b3, inf, inf, timeouts)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestHistogramDeltaQuantile(t *testing.T) {
	before := scrapeOf(t, 10, 10, 10, 10, 1)
	// 100 new observations: 50 below 0.1 ms, 40 in (0.1, 1] ms, 9 in
	// (1, 10] ms, 1 above.
	after := scrapeOf(t, 60, 100, 109, 110, 3)
	if v := after[`sluice_requests_total{endpoint="a b",error_class="",status="200",team="x"}`]; v != 7 {
		t.Errorf("labelled sample with timestamp = %v, want 7", v)
	}
	var p Point
	p.ledgerFigures(before, after)
	if p.CommitWaits != 100 || p.CommitTimeouts != 2 {
		t.Errorf("waits %d timeouts %d, want 100 and 2", p.CommitWaits, p.CommitTimeouts)
	}
	if !near(p.CommitWaitP50Ms, 0.1) {
		t.Errorf("p50 = %v ms, want 0.1", p.CommitWaitP50Ms)
	}
	// Rank 99 is the 9th of the 9 in (1, 10] ms: the bucket's top.
	if !near(p.CommitWaitP99Ms, 10) {
		t.Errorf("p99 = %v ms, want 10", p.CommitWaitP99Ms)
	}
	h := histogramDelta(before.histogram(commitWaitMetric), after.histogram(commitWaitMetric))
	if v, _ := histogramQuantile(.75, h); !near(v*1000, 0.1+0.9*25.0/40) {
		t.Errorf("p75 = %v ms, want interpolated %v", v*1000, 0.1+0.9*25.0/40)
	}
	if v, _ := histogramQuantile(1, h); v != 0.01 {
		t.Errorf("p100 = %v, want the highest finite bound", v)
	}
	if _, ok := histogramQuantile(.5, histogramDelta(h, h)); ok {
		t.Error("quantile of no observations reported")
	}
	if _, err := parseMetrics([]byte("novalue\n")); err == nil {
		t.Error("malformed line accepted")
	}
}

func near(a, b float64) bool { d := a - b; return d < 1e-9 && d > -1e-9 }

const chatBody = `{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello \u003cworld\u003e"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`

const streamBody = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n" +
	"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n" +
	"data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n" +
	"data: [DONE]\n\n"

func TestVerify(t *testing.T) {
	c, err := analyseChat(200, []byte(chatBody))
	if err != nil {
		t.Fatal(err)
	}
	if c.content != "Hello <world>" || !c.usage || string(c.needle) != `"Hello \u003cworld\u003e"` {
		t.Errorf("chat probe = %+v", c)
	}
	check := chatCheck(c)
	if err := check(200, []byte(chatBody)); err != nil {
		t.Errorf("good answer refused: %v", err)
	}
	for _, bad := range []struct {
		status int
		body   string
	}{{500, chatBody}, {200, strings.Replace(chatBody, "world", "wurld", 1)}, {200, `{"error":{}}`}} {
		if check(bad.status, []byte(bad.body)) == nil {
			t.Errorf("bad answer accepted: %d %s", bad.status, bad.body)
		}
	}
	for _, bad := range []string{`{"choices":[]}`, `{"choices":[{"message":{"content":""}}]}`, `not json`} {
		if _, err := analyseChat(200, []byte(bad)); err == nil {
			t.Errorf("probe accepted %s", bad)
		}
	}

	s, err := analyseStream(200, []byte(streamBody))
	if err != nil {
		t.Fatal(err)
	}
	if s.content != "Hello" || s.events != 4 || s.usage {
		t.Errorf("stream probe = %+v", s)
	}
	withUsage := strings.Replace(streamBody, "data: [DONE]", "data: {\"choices\":[],\"usage\":{\"total_tokens\":5}}\n\ndata: [DONE]", 1)
	if u, err := analyseStream(200, []byte(withUsage)); err != nil || !u.usage {
		t.Errorf("usage chunk not seen: %+v %v", u, err)
	}
	scheck := streamCheck(s)
	if err := scheck(200, []byte(streamBody)); err != nil {
		t.Errorf("good stream refused: %v", err)
	}
	cut := strings.TrimSuffix(streamBody, "data: [DONE]\n\n")
	for _, bad := range []string{cut, withUsage, strings.Replace(streamBody, "data: {", ": {", 1)} {
		if scheck(200, []byte(bad)) == nil {
			t.Errorf("bad stream accepted: %q", bad)
		}
	}
	for _, bad := range []string{cut, "data: [DONE]\n\ndata: {}\n\n", "data: {oops}\n\ndata: [DONE]\n\n"} {
		if _, err := analyseStream(200, []byte(bad)); err == nil {
			t.Errorf("stream probe accepted %q", bad)
		}
	}
}

// TestTargetRun drives a local server: every request is answered and
// checked, wrong answers are counted, and the loop is bounded by both the
// count and the time limit.
func TestTargetRun(t *testing.T) {
	var calls, bad atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, "no key", http.StatusUnauthorized)
			return
		}
		if calls.Add(1)%10 == 0 {
			bad.Add(1)
			w.Write([]byte(`{"choices":[{"message":{"content":"other"}}]}`))
			return
		}
		w.Write([]byte(chatBody))
	}))
	defer srv.Close()
	want, err := analyseChat(200, []byte(chatBody))
	if err != nil {
		t.Fatal(err)
	}
	tg := &target{mode: ModeSluice, url: srv.URL, header: http.Header{"Authorization": {"Bearer k"}},
		body: []byte(`{}`), client: newClient(1), check: chatCheck(want)}
	ph := tg.run(context.Background(), 1, 30, time.Minute)
	if ph.Requests != 30 || ph.Errors != 3 || bad.Load() != 3 || len(ph.Latency) != 27 || len(ph.Samples) != 3 {
		t.Errorf("phase: %d requests, %d errors (server sent %d bad), %d latencies, samples %q",
			ph.Requests, ph.Errors, bad.Load(), len(ph.Latency), ph.Samples)
	}
	if s := side(ph); s.P50Ms <= 0 || s.Throughput <= 0 || s.Errors != 3 {
		t.Errorf("side %+v", s)
	}
	if ph := tg.run(context.Background(), 4, 1000, 0); ph.Requests != 0 {
		t.Errorf("%d requests after the time limit", ph.Requests)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ph := tg.run(ctx, 4, 1000, time.Minute); ph.Requests != 0 {
		t.Errorf("%d requests after cancellation", ph.Requests)
	}
}

func TestOptions(t *testing.T) {
	o, err := Options{Sluice: "/bin/true", NoPin: true}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	got := "sluice bench " + strings.Join(o.Args(), " ")
	want := "sluice bench --no-pin --conc 1,16,64 --stream-conc 1,16 --requests 20000 --max-duration 20s --warmup 500 --rounds 4 --output-tokens 16"
	if got != want {
		t.Errorf("command\n got %s\nwant %s", got, want)
	}
	o, err = Options{Sluice: "/bin/true", NoPin: true, StreamConcurrency: []int{}, Warmup: -1}.withDefaults()
	if err != nil || len(o.StreamConcurrency) != 0 || o.Warmup != 0 {
		t.Errorf("explicit none: %+v %v", o, err)
	}
	for _, bad := range []Options{
		{Sluice: "x", NoPin: true, Concurrency: []int{0}},
		{Sluice: "x", NoPin: true, Requests: -1},
		{Sluice: "x", NoPin: true, Rounds: -2},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func TestReportErrorsAreLoud(t *testing.T) {
	r := &Report{Points: []Point{{Kind: KindChat, Concurrency: 1,
		Sluice: Side{Requests: 10, Errors: 2, ErrorSamples: []string{"status 502: boom"}}}}}
	r.Ledger.Problem = "9 records for 10 requests"
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if r.TotalErrors() != 3 || !strings.Contains(b.String(), "THIS RUN HAD 3 ERRORS") || !strings.Contains(b.String(), "status 502: boom") {
		t.Errorf("errors not announced (%d):\n%s", r.TotalErrors(), b.String())
	}
	var w failWriter
	if err := r.WriteTable(&w); !errors.Is(err, errFail) {
		t.Errorf("write error lost: %v", err)
	}
}

var errFail = errors.New("disk full")

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errFail }

// TestGatewayConfig checks that the generated configuration is one the
// gateway accepts, with the extra YAML applied.
func TestGatewayConfig(t *testing.T) {
	src := gatewayConfig("127.0.0.1:1234", "127.0.0.1:5678", "/tmp/it's here/ledger.db", "log:\n  level: warn\n")
	c, err := config.Parse(strings.NewReader(src), nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	if c.Listen != "127.0.0.1:1234" || c.Ledger.DSN != "/tmp/it's here/ledger.db" || c.Log.Level != "warn" ||
		len(c.Endpoints) != 1 || c.Endpoints[0].Name != endpointName || c.Upstreams[0].BaseURL != "http://127.0.0.1:5678/v1" {
		t.Errorf("config not as generated: %+v", c)
	}
	o := Options{NoPin: true, Concurrency: []int{1}, StreamConcurrency: []int{}, ExtraConfig: "audit: {enabled: false} # it's off"}
	if got := strings.Join(o.Args(), " "); !strings.HasSuffix(got, `--extra-config 'audit: {enabled: false} # it'\''s off'`) {
		t.Errorf("args %s", got)
	}
}
