package budget_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/budget"
	"github.com/sluice-gateway/sluice/store/postgres"
	"github.com/sluice-gateway/sluice/store/sqlite"
	"github.com/sluice-gateway/sluice/store/storetest"
)

var quiet = slog.New(slog.DiscardHandler)

// t0 is the instant the tests' clocks start from: Monday 2 March 2026.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// clock is an injectable clock tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type testStore interface {
	storetest.BudgetStore
	Close() error
}

// tb is what the open helpers need of a *testing.T or a *rapid.T.
type tb interface {
	Fatal(args ...any)
	Cleanup(func())
}

func openSQLite(t tb, path string) testStore {
	st, err := sqlite.Open(path, sqlite.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func openPostgres(t tb, dsn string) testStore {
	st, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// eachStore runs f on a fresh SQLite store and, if configured, a fresh
// PostgreSQL one.
func eachStore(t *testing.T, f func(t *testing.T, st testStore)) {
	t.Run("SQLite", func(t *testing.T) {
		f(t, openSQLite(t, filepath.Join(t.TempDir(), "ledger.db")))
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		f(t, openPostgres(t, storetest.PostgresDSN(t)))
	})
}

func createBudget(t testing.TB, st sluice.BudgetStore, b sluice.Budget) {
	t.Helper()
	if b.CreatedAt.IsZero() {
		b.CreatedAt = t0
	}
	if err := st.CreateBudget(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

func insert(t testing.TB, st sluice.UsageStore, recs ...sluice.UsageRecord) {
	t.Helper()
	if err := st.InsertUsage(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

var alice = sluice.BudgetSubjects{KeyID: "k_alice", Team: "ml", Endpoint: "gpt"}

func record(id string, at time.Time, s sluice.BudgetSubjects, cost int64) sluice.UsageRecord {
	return sluice.UsageRecord{RequestID: id, Time: at, KeyID: s.KeyID, Team: s.Team, Endpoint: s.Endpoint, CostMicros: cost}
}

func status(t testing.TB, m *budget.Manager, id string) sluice.BudgetStatus {
	t.Helper()
	s, err := m.Status(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestReserveFillsOwnerAndExpiry(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx := context.Background()
		clk := &clock{now: t0}
		createBudget(t, st, sluice.Budget{ID: "team", Scope: sluice.ScopeTeam, Subject: "ml", Period: sluice.PeriodDay, LimitMicros: 100, Hard: true})
		m := budget.New(st, budget.Options{Owner: "gw-1", TTL: 5 * time.Minute, Now: clk.Now, Logger: quiet})
		if m.Owner() != "gw-1" {
			t.Errorf("Owner() = %q", m.Owner())
		}
		if err := m.Reserve(ctx, sluice.Reservation{RequestID: "r1", Subjects: alice, AmountMicros: 60}); err != nil {
			t.Fatal(err)
		}
		err := m.Reserve(ctx, sluice.Reservation{RequestID: "r2", Subjects: alice, AmountMicros: 41})
		var be *sluice.BudgetExceededError
		if !errors.As(err, &be) || be.BudgetID != "team" {
			t.Fatalf("Reserve over the limit: %v", err)
		}
		if want := `day budget "team" on team "ml" is exhausted ($0.00006 of $0.0001 spent or in flight, this request may cost up to $0.000041); it resets at 2026-03-03T00:00:00Z`; err.Error() != want {
			t.Errorf("refusal message:\n got %s\nwant %s", err, want)
		}
		if n, err := m.Outstanding(ctx); err != nil || n != 1 {
			t.Errorf("Outstanding = %d, %v; want 1", n, err)
		}
		clk.Add(5*time.Minute - time.Microsecond)
		if got, err := m.Reconcile(ctx); err != nil || len(got) != 0 {
			t.Fatalf("Reconcile before expiry = %+v, %v", got, err)
		}
		clk.Add(time.Microsecond)
		got, err := m.Reconcile(ctx)
		if err != nil || len(got) != 1 {
			t.Fatalf("Reconcile at expiry = %+v, %v", got, err)
		}
		if got[0].RequestID != "r1" || got[0].Owner != "gw-1" || !got[0].ExpiresAt.Equal(t0.Add(5*time.Minute)) || got[0].HadUsage {
			t.Errorf("released %+v", got[0])
		}
		if s := status(t, m, "team"); s.ReservedMicros != 0 || s.RemainingMicros() != 100 {
			t.Errorf("after reconcile: %+v", s)
		}
	})
}

func TestReconcileInBatches(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t, filepath.Join(t.TempDir(), "ledger.db"))
	clk := &clock{now: t0}
	createBudget(t, st, sluice.Budget{ID: "team", Scope: sluice.ScopeTeam, Subject: "ml", Period: sluice.PeriodMonth, LimitMicros: 1000, Hard: true})
	m := budget.New(st, budget.Options{BatchSize: 3, TTL: time.Minute, Now: clk.Now, Logger: quiet})
	for _, id := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		if err := m.Reserve(ctx, sluice.Reservation{RequestID: id, Subjects: alice, AmountMicros: 10}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(time.Hour)
	got, err := m.Reconcile(ctx)
	if err != nil || len(got) != 7 {
		t.Fatalf("Reconcile = %d released, %v; want all 7", len(got), err)
	}
	if s := status(t, m, "team"); s.ReservedMicros != 0 {
		t.Errorf("reserved %d after reconcile", s.ReservedMicros)
	}
}

// failingStore is a BudgetStore whose every call fails.
type failingStore struct {
	sluice.BudgetStore
	err error
}

func (f failingStore) Reserve(context.Context, sluice.Reservation, time.Time) error { return f.err }

func TestFailOpen(t *testing.T) {
	ctx := context.Background()
	down := errors.New("connection refused")
	r := sluice.Reservation{RequestID: "r", Subjects: alice, AmountMicros: 1}

	closed := budget.New(failingStore{err: down}, budget.Options{Logger: quiet})
	if err := closed.Reserve(ctx, r); !errors.Is(err, down) {
		t.Errorf("fail closed: Reserve = %v, want the store's error", err)
	}

	var reported []error
	open := budget.New(failingStore{err: down}, budget.Options{FailOpen: true, Logger: quiet,
		OnStoreError: func(err error) { reported = append(reported, err) }})
	if err := open.Reserve(ctx, r); err != nil {
		t.Errorf("fail open: Reserve = %v, want nil", err)
	}
	if len(reported) != 1 || !errors.Is(reported[0], down) {
		t.Errorf("OnStoreError got %v", reported)
	}
	// Refusals and conflicts are answers, not outages.
	refusal := &sluice.BudgetExceededError{BudgetID: "b"}
	for _, want := range []error{refusal, sluice.ErrConflict} {
		m := budget.New(failingStore{err: want}, budget.Options{FailOpen: true, Logger: quiet})
		if err := m.Reserve(ctx, r); !errors.Is(err, want) {
			t.Errorf("fail open: Reserve = %v, want %v", err, want)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := open.Reserve(cancelled, r); err == nil {
		t.Error("fail open admitted a request whose caller had gone")
	}
}

func TestRunReconcilesAndDeliversAlerts(t *testing.T) {
	eachStore(t, func(t *testing.T, st testStore) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		clk := &clock{now: t0}
		createBudget(t, st, sluice.Budget{ID: "team", Scope: sluice.ScopeTeam, Subject: "ml", Period: sluice.PeriodDay,
			LimitMicros: 100, Hard: true, AlertThresholds: []int{50, 90}})

		var mu sync.Mutex
		failNext := true
		delivered := make(chan sluice.BudgetAlert, 10)
		onAlert := func(ctx context.Context, a sluice.BudgetAlert) error {
			mu.Lock()
			defer mu.Unlock()
			if failNext {
				failNext = false
				return errors.New("receiver down")
			}
			delivered <- a
			return nil
		}
		m := budget.New(st, budget.Options{TTL: time.Minute, AlertLease: 30 * time.Second, OnAlert: onAlert, Now: clk.Now, Logger: quiet})
		if err := m.Reserve(ctx, sluice.Reservation{RequestID: "lost", Subjects: alice, AmountMicros: 30}); err != nil {
			t.Fatal(err)
		}
		insert(t, st, record("spent", t0, alice, 60))

		tick := make(chan time.Time)
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx, tick) }()

		// The first round ran at start: the alert failed once, and the
		// reservation has not expired yet.
		tick <- t0
		select {
		case a := <-delivered:
			t.Fatalf("alert %+v delivered during its lease", a)
		default:
		}
		clk.Add(time.Minute)
		tick <- clk.Now() // the lease is over and the reservation expired
		tick <- clk.Now() // and this round has finished
		select {
		case a := <-delivered:
			if a.BudgetID != "team" || a.Threshold != 50 || a.SettledMicros != 60 {
				t.Errorf("delivered %+v", a)
			}
		default:
			t.Fatal("alert not redelivered after its lease")
		}
		if s := status(t, m, "team"); s.ReservedMicros != 0 || s.SettledMicros != 60 {
			t.Errorf("after Run: settled %d reserved %d, want 60 and 0", s.SettledMicros, s.ReservedMicros)
		}
		insert(t, st, record("more", clk.Now(), alice, 30))
		tick <- clk.Now()
		tick <- clk.Now()
		if a := <-delivered; a.Threshold != 90 {
			t.Errorf("delivered %+v, want the 90%% threshold", a)
		}
		close(tick)
		if err := <-done; err != nil {
			t.Errorf("Run = %v after its ticker closed", err)
		}
		go func() { done <- m.Run(ctx, nil) }()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v after cancel", err)
		}
	})
}

func TestAlertsWithoutReceiverAreLogged(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t, filepath.Join(t.TempDir(), "ledger.db"))
	createBudget(t, st, sluice.Budget{ID: "team", Scope: sluice.ScopeTeam, Subject: "ml", Period: sluice.PeriodDay,
		LimitMicros: 100, AlertThresholds: []int{10, 20, 30}})
	insert(t, st, record("a", t0, alice, 35))
	var logs safeBuffer
	m := budget.New(st, budget.Options{Now: func() time.Time { return t0 }, Logger: slog.New(slog.NewTextHandler(&logs, nil)), BatchSize: 2})
	n, err := m.DeliverAlerts(ctx)
	if err != nil || n != 3 {
		t.Fatalf("DeliverAlerts = %d, %v; want 3", n, err)
	}
	if n, err := m.DeliverAlerts(ctx); err != nil || n != 0 {
		t.Errorf("DeliverAlerts again = %d, %v; want 0", n, err)
	}
	if got := logs.String(); !containsAll(got, "budget alert threshold reached", "threshold_percent=10", "threshold_percent=30") {
		t.Errorf("log:\n%s", got)
	}
}

type safeBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

var _ io.Writer = (*safeBuffer)(nil)

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
