package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/auth"
	"github.com/sluice-gateway/sluice/capacity"
	"github.com/sluice-gateway/sluice/config"
)

// TestProvisionedCapacity drives a provisioned-throughput endpoint through
// the real gateway: calls are admitted up to its concurrency, one more
// waits in its bounded queue, the next is refused with 429 and
// Retry-After, a waiter past the queue wait is refused too; then the
// capacity's hours are charged and attributed to the teams by tokens.
func TestProvisionedCapacity(t *testing.T) {
	release := make(chan struct{})
	var entered sync.WaitGroup
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), `"hold"`) {
			entered.Done()
			<-release
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"model":"llama","choices":[{"message":{"content":"ok"}}],"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30}}`)
	}))
	defer up.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	yaml := fmt.Sprintf(`listen: 127.0.0.1:0
ledger: {dsn: %q}
upstreams:
  - {name: pt, type: openai, base_url: %s/v1}
endpoints:
  - name: llama-pt
    kind: provisioned_throughput
    upstream: pt
    model: llama
    price: {input_per_1m: "0", output_per_1m: "0"}
    capacity: {concurrency: 2, hourly_price: "36.000001", max_queue: 1, max_queue_wait: 300ms}
`, filepath.Join(t.TempDir(), "l.db"), up.URL)
	cfg, err := config.Parse(strings.NewReader(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// The gateway's clock runs at the half hour, so that every call falls
	// in one hour however close to an hour's end the test runs.
	real := time.Now()
	// (Ahead, never behind: the gateway sets I/O deadlines from it.)
	offset := 90*time.Minute - real.Sub(real.Truncate(time.Hour))
	clock := func() time.Time { return time.Now().Add(offset) }
	s, err := New(ctx, cfg, Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() { cancel(); <-done; s.Close() }()
	url := "http://" + ln.Addr().String() + "/v1/chat/completions"
	keys := map[string]string{}
	for _, team := range []string{"a", "b"} {
		secret, k, _ := auth.NewKey(team, team, false, nil, time.Time{}, time.Now())
		if err := s.Store().CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		keys[team] = secret
	}
	call := func(team, content string) (int, http.Header) {
		req, _ := http.NewRequest("POST", url, strings.NewReader(`{"model":"llama-pt","messages":[{"role":"user","content":"`+content+`"}]}`))
		req.Header.Set("Authorization", "Bearer "+keys[team])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0, nil
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	var gate *capacity.Gate
	for _, g := range s.caps.gates {
		gate = g.gate
	}
	if gate == nil {
		t.Fatal("no capacity gate")
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for i := 0; !cond(); i++ {
			if i > 1000 {
				t.Fatalf("%s did not happen", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// Two calls take the capacity.
	statuses := make(chan int, 3)
	entered.Add(2)
	for _, team := range []string{"a", "b"} {
		go func() { st, _ := call(team, "hold"); statuses <- st }()
	}
	entered.Wait()
	if gate.InFlight() != 2 {
		t.Fatalf("in flight %d", gate.InFlight())
	}
	// A third waits past the queue wait and is refused.
	if st, h := call("a", "late"); st != 429 || h.Get("Retry-After") == "" {
		t.Fatalf("past the wait: %d %v", st, h)
	}
	// A third waits; a fourth finds the queue full and is refused at once.
	go func() { st, _ := call("a", "queued"); statuses <- st }()
	waitUntil("a queued call", func() bool { return gate.Queued() == 1 })
	if st, h := call("b", "refused"); st != 429 || h.Get("Retry-After") == "" {
		t.Fatalf("queue full: %d %v", st, h)
	}
	close(release)
	for range 3 {
		if st := <-statuses; st != 200 {
			t.Fatalf("admitted call: %d", st)
		}
	}

	// Hourly cost: the hours since the capacity appeared are charged, used
	// or not, and split by the teams' tokens: a used 2 calls (60 tokens),
	// b 1 call (30 tokens).
	ents := s.capacityEntities()
	if len(ents) != 1 || ents[0].HourlyMicros != 36_000_001 || ents[0].Concurrency != 2 {
		t.Fatalf("entities %+v", ents)
	}
	now := clock().UTC()
	accr := &capacity.Accruer{Store: s.Store(), Entities: s.capacityEntities}
	n, err := accr.AccrueOnce(ctx, now.Add(2*time.Hour))
	if err != nil || n < 2 {
		t.Fatalf("accrued %d: %v", n, err)
	}
	rep, err := capacity.Report(ctx, s.Store(), now.Truncate(time.Hour), now.Truncate(time.Hour).Add(2*time.Hour))
	if err != nil || len(rep.Entities) != 1 {
		t.Fatalf("report %+v %v", rep, err)
	}
	e := rep.Entities[0]
	// Five requests reached the entity: three served, two refused by its
	// capacity (no tokens).
	if e.Hours != 2 || e.CostMicros != 72_000_002 || e.Tokens != 90 || e.Requests != 5 || e.EffectivePricePer1M == nil ||
		*e.EffectivePricePer1M != 800_000_022_222 || e.UtilisationBasis != capacity.BasisBusyTime {
		t.Fatalf("entity %+v", e)
	}
	shares := map[string]int64{}
	var sum int64
	for _, ts := range e.Teams {
		shares[ts.Team] += ts.CostMicros
		sum += ts.CostMicros
	}
	// The hour with the calls splits 36,000,001 as 2:1; the next is idle.
	if sum != e.CostMicros || shares["a"] != 24_000_001 || shares["b"] != 12_000_000 || shares[""] != 36_000_001 {
		t.Fatalf("shares %v (sum %d)", shares, sum)
	}

	// The admin API serves the same report to admin keys only.
	adminSecret, adminKey, _ := auth.NewKey("ops", "ops", true, nil, time.Time{}, time.Now())
	if err := s.Store().CreateKey(ctx, adminKey); err != nil {
		t.Fatal(err)
	}
	day := now.Truncate(24 * time.Hour)
	capURL := fmt.Sprintf("http://%s/admin/v1/capacity?from=%s&to=%s", ln.Addr(), day.Format("2006-01-02"), day.Add(48*time.Hour).Format("2006-01-02"))
	for _, c := range []struct {
		key  string
		want int
	}{{keys["a"], 403}, {adminSecret, 200}} {
		req, _ := http.NewRequest("GET", capURL, nil)
		req.Header.Set("Authorization", "Bearer "+c.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got capacity.ReportResult
		json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Fatalf("admin capacity: %d, want %d", resp.StatusCode, c.want)
		}
		if c.want == 200 && (len(got.Entities) != 1 || got.Entities[0].CostMicros != 72_000_002 || got.TotalCostMicros != 72_000_002) {
			t.Fatalf("admin capacity report %+v", got)
		}
	}
}
