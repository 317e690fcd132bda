package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/simulator"
	"github.com/sluice-gateway/sluice/store"
	"github.com/sluice-gateway/sluice/store/sqlite"
)

// Bounds of the crash test's load.
const (
	crashClients     = 16
	crashMaxRequests = 3000
	crashMaxLoad     = 10 * time.Second
	crashKillAfter   = time.Second // at the earliest, and once crashMinDone responses are complete
	crashMinDone     = 2 * crashClients
	crashKillBy      = 8 * time.Second // at the latest
	crashOutput      = 16              // tokens per simulated answer
)

// TestCrashLosesNoRecord builds the sluice binary, drives it with
// concurrent streaming and non-streaming chat, kills it with SIGKILL in the
// middle of the load, restarts it, and checks that every response a client
// received completely has exactly one record in the ledger.
func TestCrashLosesNoRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the sluice binary and kills it under load; skipped with -short")
	}
	dir := t.TempDir()
	bin := buildSluice(t, dir)

	sim := httptest.NewServer(simulator.New(simulator.Options{OutputTokens: crashOutput}))
	defer sim.Close()
	// The simulator loads its tokenizer on first use; do that before the load.
	if resp, err := http.Post(sim.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"`+chatModel+`","messages":[{"role":"user","content":"hi"}]}`)); err != nil {
		t.Fatalf("simulator warm-up: %v", err)
	} else {
		resp.Body.Close()
	}
	addr := freeAddr(t)
	dsn := filepath.Join(dir, "ledger.db")
	cfg := filepath.Join(dir, "sluice.yaml")
	writeFile(t, cfg, fmt.Sprintf(`listen: %s
ledger:
  dsn: %q
  synchronous: normal
log:
  level: warn
upstreams:
  - name: sim
    type: openai
    base_url: %s/v1
endpoints:
  - name: chat
    upstream: sim
    model: %s
    apis: [chat]
    price: {input_per_1m: "10", output_per_1m: "30"}
`, addr, dsn, sim.URL, chatModel))
	key := strings.TrimSpace(string(runSluice(t, bin, "keys", "create", "--config", cfg, "--team", "t")))
	if !strings.HasPrefix(key, "sk-sluice-") {
		t.Fatalf("sluice keys create printed %q, not a key", key)
	}
	url := "http://" + addr

	gw := startSluice(t, bin, filepath.Join(dir, "first.log"), "serve", "--config", cfg)
	gw.waitHealthy(t, url)
	res := crashLoad(t, url, key, gw)
	gw.checkLog(t)

	// Restart on the same ledger: it must open after the crash and serve.
	gw2 := startSluice(t, bin, filepath.Join(dir, "second.log"), "serve", "--config", cfg)
	gw2.waitHealthy(t, url)
	after := crashRequest(&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}, url, key, false)
	if !after.complete {
		t.Errorf("the restarted gateway does not serve: %v", after.err)
	}
	gw2.stop(t)
	gw2.checkLog(t)

	st, err := store.Open(context.Background(), dsn, sqlite.Options{})
	if err != nil {
		t.Fatalf("open the ledger after the crash: %v", err)
	}
	defer st.Close()
	ids := map[string]bool{}
	var missing, wrong []string
	var complete, streams, inFlight, inFlightRecorded int
	var took []time.Duration
	for _, o := range res.outcomes {
		switch {
		case o.complete:
			complete++
			took = append(took, o.took)
			if o.stream {
				streams++
			}
			if ids[o.id] {
				t.Errorf("request id %s was given to two requests", o.id)
			}
			ids[o.id] = true
			rec, err := st.Usage(context.Background(), o.id)
			if err != nil {
				missing = append(missing, fmt.Sprintf("%s (stream %v): %v", o.id, o.stream, err))
				continue
			}
			if rec.Status != http.StatusOK || rec.ErrorClass != "" || rec.Stream != o.stream ||
				rec.CompletionTokens != crashOutput || rec.UsageSource != sluice.UsageUpstream {
				wrong = append(wrong, fmt.Sprintf("%s: status %d class %q stream %v completion %d usage %s",
					o.id, rec.Status, rec.ErrorClass, rec.Stream, rec.CompletionTokens, rec.UsageSource))
			}
		case o.started.Before(res.killedAt):
			inFlight++
			if o.id != "" {
				if _, err := st.Usage(context.Background(), o.id); err == nil {
					inFlightRecorded++
				}
			}
		}
	}
	rows, err := st.UsageReport(context.Background(), sluice.UsageQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, r := range rows {
		total += r.Requests
	}

	t.Logf("%d requests in %v before SIGKILL (%d clients): %d received completely (%d streams), %d in flight at the kill (%d of them with a record), %d refused after it",
		len(res.outcomes), res.killedAt.Sub(res.start).Round(time.Millisecond), crashClients, complete, streams,
		inFlight, inFlightRecorded, len(res.outcomes)-complete-inFlight)
	if len(took) > 0 {
		slices.Sort(took)
		t.Logf("response times: p50 %v, max %v", took[len(took)/2].Round(time.Microsecond), took[len(took)-1].Round(time.Microsecond))
	}
	t.Logf("ledger after restart: %d records (%d complete responses + at most %d in flight + 1 after restart)", total, complete, inFlight)

	if complete == 0 || streams == 0 || streams == complete {
		t.Errorf("the load did not complete both kinds of request (%d complete, %d streams)", complete, streams)
	}
	if res.unexpected > 0 {
		t.Errorf("%d requests failed before the kill: %v", res.unexpected, res.firstUnexpected)
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d completely received responses have no record, e.g. %s", len(missing), complete, strings.Join(first(missing, 5), "; "))
	}
	if len(wrong) > 0 {
		t.Errorf("%d records do not match their responses, e.g. %s", len(wrong), strings.Join(first(wrong, 5), "; "))
	}
	// Every record is one request's: no more records than requests.
	if max := int64(complete + inFlight + 1); total > max {
		t.Errorf("the ledger has %d records for %d requests that could have one", total, max)
	}
}

// crashResult is the load's outcome.
type crashResult struct {
	outcomes        []outcome
	start, killedAt time.Time
	unexpected      int // requests that failed before the kill
	firstUnexpected error
}

// outcome is one request of the load.
type outcome struct {
	id       string
	stream   bool
	started  time.Time
	complete bool // 200 and the whole body read; for a stream, [DONE] received
	took     time.Duration
	err      error
}

// crashLoad runs the bounded load and SIGKILLs the gateway mid-way: after
// crashKillAfter once crashMinDone responses are complete (so that the load
// is in full swing on a slow machine too), or once half the request budget
// is used, or at crashKillBy.
func crashLoad(t *testing.T, url, key string, gw *sluiceProc) crashResult {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: crashClients, DisableCompression: true}}
	defer hc.CloseIdleConnections()
	var (
		seq     atomic.Int64
		done    atomic.Int64
		stop    atomic.Bool
		wg      sync.WaitGroup
		results = make([][]outcome, crashClients)
		res     = crashResult{start: time.Now()}
	)
	for i := range crashClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() && time.Since(res.start) < crashMaxLoad {
				n := seq.Add(1)
				if n > crashMaxRequests {
					return
				}
				o := crashRequest(hc, url, key, n%2 == 0)
				if o.complete {
					done.Add(1)
				}
				results[i] = append(results[i], o)
			}
		}()
	}
	for gw.running() && seq.Load() < crashMaxRequests/2 && time.Since(res.start) < crashKillBy &&
		(time.Since(res.start) < crashKillAfter || done.Load() < crashMinDone) {
		time.Sleep(10 * time.Millisecond)
	}
	stop.Store(true)
	res.killedAt = time.Now()
	gw.kill(t)
	wg.Wait()
	for _, r := range results {
		for _, o := range r {
			res.outcomes = append(res.outcomes, o)
			if !o.complete && o.started.Before(res.killedAt) && o.err != nil && !isConnErr(o.err) {
				res.unexpected++
				if res.firstUnexpected == nil {
					res.firstUnexpected = o.err
				}
			}
		}
	}
	return res
}

// isConnErr reports whether err is what a client sees when the server
// process dies under it.
func isConnErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED)
}

// crashRequest sends one chat request and reads the answer to its end.
func crashRequest(hc *http.Client, url, key string, stream bool) (o outcome) {
	o = outcome{stream: stream, started: time.Now()}
	defer func() { o.took = time.Since(o.started) }()
	body := fmt.Sprintf(`{"model":"chat","stream":%v,"messages":[{"role":"user","content":"Count me, even if you crash."}]}`, stream)
	req, err := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		o.err = err
		return o
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		o.err = err
		return o
	}
	defer resp.Body.Close()
	o.id = resp.Header.Get("X-Request-Id")
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		o.err = fmt.Errorf("status %s: %s", resp.Status, b)
		return o
	}
	if stream {
		var done bool
		_, done, o.err = readSSE(resp.Body)
		o.complete = done
		if !done && o.err == nil {
			o.err = io.ErrUnexpectedEOF
		}
		return o
	}
	_, o.err = io.ReadAll(resp.Body)
	o.complete = o.err == nil
	return o
}

// buildSluice builds the sluice command into dir, as it ships (no race
// detector: the in-process tests run the same code under it).
func buildSluice(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(string(bytes.TrimSpace(out)))
	bin := filepath.Join(dir, "sluice")
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/sluice")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/sluice: %v\n%s", err, out)
	}
	t.Logf("built %s in %v", bin, time.Since(start).Round(time.Millisecond))
	return bin
}

// runSluice runs the binary to completion and returns its standard output.
func runSluice(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sluice %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// sluiceProc is a running sluice process.
type sluiceProc struct {
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error // Wait's result, once exited is closed
}

func startSluice(t *testing.T, bin, log string, args ...string) *sluiceProc {
	t.Helper()
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := &sluiceProc{cmd: exec.Command(bin, args...), log: log, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if p.running() {
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

func (p *sluiceProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// waitHealthy waits up to 30s for /healthz to answer.
func (p *sluiceProc) waitHealthy(t *testing.T, url string) {
	t.Helper()
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if !p.running() {
			t.Fatalf("sluice exited before it was healthy (%v):\n%s", p.err, p.logTail())
		}
		if resp, err := hc.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("sluice was not healthy within 30s:\n%s", p.logTail())
}

// kill sends SIGKILL and waits for the process to die.
func (p *sluiceProc) kill(t *testing.T) {
	t.Helper()
	if !p.running() {
		t.Fatalf("sluice died before it was killed (%v):\n%s", p.err, p.logTail())
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
}

// stop sends SIGTERM and waits up to 30s for a clean exit.
func (p *sluiceProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("sluice exited with %v after SIGTERM:\n%s", p.err, p.logTail())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("sluice did not exit within 30s of SIGTERM:\n%s", p.logTail())
	}
}

// checkLog fails if the gateway logged an error or a panic.
func (p *sluiceProc) checkLog(t *testing.T) {
	t.Helper()
	b, _ := os.ReadFile(p.log)
	for _, line := range bytes.Split(b, []byte("\n")) {
		if bytes.Contains(line, []byte(`"level":"ERROR"`)) || bytes.Contains(line, []byte("panic")) {
			t.Errorf("sluice logged: %s", line)
		}
	}
}

func (p *sluiceProc) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	return string(b)
}

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
