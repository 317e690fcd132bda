package budget_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/budget"
	"github.com/sluice-gateway/sluice/store"
	"github.com/sluice-gateway/sluice/store/sqlite"
	"github.com/sluice-gateway/sluice/store/storetest"
)

// Tests that need a second process re-run this test binary with these
// variables set; TestHelperProcess then plays the other gateway.
const (
	helperEnv = "SLUICE_BUDGET_HELPER" // "crash" or "hammer"
	dsnEnv    = "SLUICE_BUDGET_DSN"
)

const (
	crashExit = 7
	worst     = 7_000 // a request's worst-case cost in the hammer test
	allowed   = 10    // requests the hammer test's budget admits
	perProc   = 100   // requests each hammering process sends
)

func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper for tests that run a second process")
	}
	ctx := context.Background()
	st, err := store.Open(ctx, os.Getenv(dsnEnv), sqlite.Options{Logger: quiet})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	switch mode {
	case "crash":
		crashAfterReserving(st)
	case "hammer":
		fmt.Println("ready")
		if line, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil || line != "go\n" {
			fmt.Fprintln(os.Stderr, "no go signal:", line, err)
			os.Exit(2)
		}
		admitted, err := hammer(st, "child")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println("admitted", admitted)
		st.Close()
	}
}

// crashAfterReserving reserves three requests, settles one, and dies
// without closing anything or releasing the others.
func crashAfterReserving(st store.Store) {
	ctx := context.Background()
	m := budget.New(st, budget.Options{Owner: "crashed", TTL: time.Minute, Now: func() time.Time { return t0 }, Logger: quiet})
	for _, id := range []string{"r1", "r2", "r3"} {
		if err := m.Reserve(ctx, sluice.Reservation{RequestID: id, Subjects: alice, AmountMicros: 100}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	if err := st.InsertUsage(ctx, []sluice.UsageRecord{record("r3", t0, alice, 40)}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(crashExit)
}

func helper(t *testing.T, mode, dsn string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, dsnEnv+"="+dsn)
	return cmd
}

// TestCrashBetweenReserveAndSettle kills a gateway process between
// reserving and settling; after a restart the reconciler releases what
// it left behind, and records written late or twice count once.
func TestCrashBetweenReserveAndSettle(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("running as helper")
	}
	t.Run("SQLite", func(t *testing.T) {
		testCrash(t, filepath.Join(t.TempDir(), "ledger.db"))
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		testCrash(t, storetest.PostgresDSN(t))
	})
}

func testCrash(t *testing.T, dsn string) {
	ctx := context.Background()
	st, err := store.Open(ctx, dsn, sqlite.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	createBudget(t, st, sluice.Budget{ID: "team", Scope: sluice.ScopeTeam, Subject: "ml", Period: sluice.PeriodDay, LimitMicros: 1000, Hard: true})
	createBudget(t, st, sluice.Budget{ID: "key", Scope: sluice.ScopeKey, Subject: "k_alice", Period: sluice.PeriodLifetime, LimitMicros: 1000, Hard: true})
	st.Close()

	out, err := helper(t, "crash", dsn).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != crashExit {
		t.Fatalf("helper: %v\n%s", err, out)
	}

	// Restart.
	st, err = store.Open(ctx, dsn, sqlite.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := &clock{now: t0.Add(30 * time.Second)}
	m := budget.New(st, budget.Options{Now: clk.Now, Logger: quiet})
	assertStatus := func(settled, reserved int64) {
		t.Helper()
		for _, id := range []string{"team", "key"} {
			if s := status(t, m, id); s.SettledMicros != settled || s.ReservedMicros != reserved {
				t.Errorf("%s: settled %d reserved %d, want %d and %d", id, s.SettledMicros, s.ReservedMicros, settled, reserved)
			}
		}
	}
	assertStatus(40, 200)
	if got, err := m.Reconcile(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Reconcile before expiry = %+v, %v", got, err)
	}
	clk.Add(time.Minute)
	got, err := m.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range got {
		ids = append(ids, r.RequestID)
		if r.Owner != "crashed" || r.HadUsage || r.AmountMicros != 100 {
			t.Errorf("released %+v", r)
		}
	}
	if strings.Join(ids, ",") != "r1,r2" {
		t.Errorf("released %v, want r1,r2", ids)
	}
	assertStatus(40, 0)

	// The ledger writer retries after the restart: r3 again, and r1's
	// record, which the crash delayed, twice.
	insert(t, st, record("r3", t0, alice, 40), record("r1", t0, alice, 70))
	insert(t, st, record("r1", t0, alice, 70))
	assertStatus(110, 0)
	if got, err := m.Reconcile(ctx); err != nil || len(got) != 0 {
		t.Errorf("second Reconcile = %+v, %v", got, err)
	}
	if n, err := m.Outstanding(ctx); err != nil || n != 0 {
		t.Errorf("Outstanding = %d, %v", n, err)
	}
	assertLedgerSpend(t, st, 110)
}

// assertLedgerSpend checks that the ledger's total cost is what the
// budgets settled.
func assertLedgerSpend(t *testing.T, st sluice.UsageStore, want int64) {
	t.Helper()
	rows, err := st.UsageReport(context.Background(), sluice.UsageQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var got int64
	for _, r := range rows {
		got += r.CostMicros
	}
	if got != want {
		t.Errorf("ledger total %d, budgets settled %d", got, want)
	}
}

// hammer sends perProc concurrent requests through a Manager of its own:
// each reserves the worst case and, if admitted, settles it at that cost.
func hammer(st storetest.BudgetStore, prefix string) (int64, error) {
	ctx := context.Background()
	m := budget.New(st, budget.Options{Owner: prefix, Now: func() time.Time { return t0 }, Logger: quiet})
	var (
		admitted atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		errs     []error
	)
	for i := range perProc {
		wg.Go(func() {
			id := fmt.Sprintf("%s-%03d", prefix, i)
			s := sluice.BudgetSubjects{KeyID: fmt.Sprintf("k%d", i%4), Team: "ml", Endpoint: "gpt"}
			err := m.Reserve(ctx, sluice.Reservation{RequestID: id, Subjects: s, AmountMicros: worst})
			if err == nil {
				admitted.Add(1)
				err = st.InsertUsage(ctx, []sluice.UsageRecord{record(id, t0, s, worst)})
			}
			if err != nil && !errors.Is(err, sluice.ErrBudgetExceeded) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return admitted.Load(), errors.Join(errs...)
}

// TestTwoProcessesSharePostgres runs two gateway processes against one
// PostgreSQL schema, each sending 100 concurrent requests at a hard
// budget that allows 10 of them.
func TestTwoProcessesSharePostgres(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("running as helper")
	}
	dsn := storetest.PostgresDSN(t)
	st := openPostgres(t, dsn)
	// The limiting budget's id sorts first, so it is the first row every
	// transaction locks: no earlier lock serialises the requests for it.
	createBudget(t, st, sluice.Budget{ID: "a-team", Scope: sluice.ScopeTeam, Subject: "ml", Period: sluice.PeriodDay, LimitMicros: allowed * worst, Hard: true})
	createBudget(t, st, sluice.Budget{ID: "pair", Scope: sluice.ScopeTeamEndpoint, Subject: "ml/gpt", Period: sluice.PeriodMonth, LimitMicros: 1000 * worst})
	for i := range 4 {
		createBudget(t, st, sluice.Budget{ID: fmt.Sprintf("key%d", i), Scope: sluice.ScopeKey, Subject: fmt.Sprintf("k%d", i),
			Period: sluice.PeriodLifetime, LimitMicros: 3 * worst, Hard: true})
	}

	cmd := helper(t, "hammer", dsn)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper did not get ready: %q\n%s", lines.Text(), stderr.String())
	}
	// Both processes start hammering at once.
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	mine, err := hammer(st, "parent")
	if err != nil {
		t.Error(err)
	}
	var theirs int64 = -1
	for lines.Scan() {
		if n, ok := strings.CutPrefix(lines.Text(), "admitted "); ok {
			theirs, _ = strconv.ParseInt(n, 10, 64)
		}
	}
	if err := cmd.Wait(); err != nil || theirs < 0 {
		t.Fatalf("helper: %v\n%s", err, stderr.String())
	}
	t.Logf("admitted: %d here, %d in the other process", mine, theirs)
	if mine+theirs != allowed {
		t.Errorf("%d + %d requests admitted, want exactly %d", mine, theirs, allowed)
	}
	m := budget.New(st, budget.Options{Now: func() time.Time { return t0 }, Logger: quiet})
	s := status(t, m, "a-team")
	if s.SettledMicros > s.LimitMicros || s.SettledMicros != (mine+theirs)*worst || s.ReservedMicros != 0 {
		t.Errorf("team budget: settled %d reserved %d, limit %d", s.SettledMicros, s.ReservedMicros, s.LimitMicros)
	}
	for i := range 4 {
		if s := status(t, m, fmt.Sprintf("key%d", i)); s.SettledMicros > s.LimitMicros || s.ReservedMicros != 0 {
			t.Errorf("key budget %d: settled %d reserved %d, limit %d", i, s.SettledMicros, s.ReservedMicros, s.LimitMicros)
		}
	}
	if n, err := m.Outstanding(context.Background()); err != nil || n != 0 {
		t.Errorf("Outstanding = %d, %v", n, err)
	}
	assertLedgerSpend(t, st, s.SettledMicros)
}
