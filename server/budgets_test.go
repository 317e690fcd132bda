package server_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store"
	"github.com/sluice-gateway/sluice/store/sqlite"
	"github.com/sluice-gateway/sluice/store/storetest"
	"github.com/sluice-gateway/sluice/usage"
)

// The price makes one request cost prompt×1000 + 10×1000 micro-dollars:
// the simulator answers exactly max_tokens=10 tokens and reports the same
// prompt count Sluice estimates, so the worst case reserved is the cost.
const budgetYAML = `
ledger: {dsn: LEDGER}
upstreams: [{name: sim, type: simulator, simulator: {output_tokens: 50}}]
endpoints:
  - {name: sim-chat, upstream: sim, price: {input_per_1m: "1000", output_per_1m: "1000"}}
`

const budgetBody = `{"model":"sim-chat","max_tokens":10,"messages":[{"role":"user","content":"count the cost"}]}`

// perRequestMicros is what one budgetBody request costs.
func perRequestMicros(t *testing.T) int64 {
	t.Helper()
	var c usage.Counter
	p, err := c.PromptTokens(sluice.APIChat, "sim-chat", []byte(budgetBody))
	if err != nil {
		t.Fatal(err)
	}
	return (p + 10) * 1000
}

// hammer sends n concurrent requests spread over the base URLs and
// returns how many were admitted (200) and refused with insufficient_quota.
func hammer(t *testing.T, bases []string, key string, n int) (ok, refused int64) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}, Timeout: 60 * time.Second}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", bases[i%len(bases)]+"/v1/chat/completions", strings.NewReader(budgetBody))
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			var b strings.Builder
			bufio.NewReader(resp.Body).WriteTo(&b)
			resp.Body.Close()
			switch {
			case resp.StatusCode == 200:
				atomic.AddInt64(&ok, 1)
			case resp.StatusCode == 429 && strings.Contains(b.String(), `"insufficient_quota"`):
				atomic.AddInt64(&refused, 1)
			default:
				t.Errorf("unexpected answer %d %s", resp.StatusCode, b.String())
			}
		}()
	}
	wg.Wait()
	return ok, refused
}

func checkBudget(t *testing.T, st sluice.BudgetStore, limit int64, ok, refused int64, n int) {
	t.Helper()
	if ok+refused != int64(n) {
		t.Fatalf("%d admitted + %d refused != %d", ok, refused, n)
	}
	if ok > 10 {
		t.Fatalf("%d requests admitted against a budget for 10", ok)
	}
	status, err := st.BudgetStatus(context.Background(), "team-cap", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if status.SettledMicros > limit {
		t.Fatalf("settled %d exceeds the hard limit %d", status.SettledMicros, limit)
	}
	if status.ReservedMicros != 0 {
		t.Fatalf("%d micro-dollars still reserved after every request finished", status.ReservedMicros)
	}
	t.Logf("%d admitted, %d refused; settled %d of %d", ok, refused, status.SettledMicros, limit)
}

func teamBudget(limit int64) sluice.Budget {
	return sluice.Budget{ID: "team-cap", Scope: sluice.ScopeTeam, Subject: "t", Period: sluice.PeriodMonth,
		LimitMicros: limit, Hard: true, AlertThresholds: []int{50, 100}, CreatedAt: time.Now()}
}

func testBudgetConcurrency(t *testing.T, ledger string) {
	per := perRequestMicros(t)
	limit := 10 * per
	yaml := budgetYAML
	if ledger != "" {
		yaml = strings.Replace(yaml, "LEDGER", "'"+ledger+"'", 1)
	}
	base, key, srv := startGateway(t, yaml)
	if err := srv.Store().CreateBudget(context.Background(), teamBudget(limit)); err != nil {
		t.Fatal(err)
	}
	// A budget made outside the admin API reaches the gateway's cached
	// list on its next refresh; do that now rather than wait.
	if err := srv.RefreshBudgets(context.Background()); err != nil {
		t.Fatal(err)
	}
	ok, refused := hammer(t, []string{base}, key, 200)
	checkBudget(t, srv.Store(), limit, ok, refused, 200)
	if ok != 10 {
		t.Fatalf("%d admitted; the budget fits exactly 10", ok)
	}
}

func TestBudgetConcurrencySQLite(t *testing.T) { testBudgetConcurrency(t, "") }

func TestBudgetConcurrencyPostgres(t *testing.T) {
	testBudgetConcurrency(t, storetest.PostgresDSN(t))
}

// TestBudgetTwoProcessesPostgres runs two real gateway processes on one
// PostgreSQL schema and sends 200 concurrent requests across both.
func TestBudgetTwoProcessesPostgres(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	bin := buildSluice(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(budgetYAML, "LEDGER", "'"+dsn+"'", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "keys", "create", "--config", cfgPath, "--team", "t").Output()
	if err != nil {
		t.Fatalf("keys create: %v", err)
	}
	key := strings.TrimSpace(string(out))
	per := perRequestMicros(t)
	limit := 10 * per
	if out, err := exec.Command(bin, "budgets", "create", "--config", cfgPath, "--id", "team-cap", "--scope", "team",
		"--subject", "t", "--limit", fmt.Sprintf("%d.%06d", limit/1e6, limit%1e6)).CombinedOutput(); err != nil {
		t.Fatalf("budgets create: %v\n%s", err, out)
	}
	var bases []string
	for i := 0; i < 2; i++ {
		port := freePort(t)
		cmd := exec.Command(bin, "serve", "--config", cfgPath, "--listen", fmt.Sprintf("127.0.0.1:%d", port))
		logf, _ := os.Create(filepath.Join(dir, fmt.Sprintf("serve%d.log", i)))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			logf.Close()
		})
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		waitHealthy(t, base)
		bases = append(bases, base)
	}
	ok, refused := hammer(t, bases, key, 200)
	st, err := store.Open(context.Background(), dsn, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	checkBudget(t, st, limit, ok, refused, 200)
	if ok != 10 {
		t.Fatalf("%d admitted across two processes; the budget fits exactly 10", ok)
	}
}

func buildSluice(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sluice")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/sluice-gateway/sluice/cmd/sluice")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitHealthy(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not become healthy", base)
}
