package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
)

// BudgetStore is what the budget conformance suite needs of a store: the
// budgets and the ledger that settles against them.
type BudgetStore interface {
	sluice.UsageStore
	sluice.BudgetStore
}

// RunBudgets runs the budget conformance suite. open must return a new,
// empty store for each call and arrange for it to be closed when t ends.
func RunBudgets(t *testing.T, open func(t *testing.T) BudgetStore) {
	t.Run("CRUD", func(t *testing.T) { testBudgetCRUD(t, open(t)) })
	t.Run("Validation", func(t *testing.T) { testBudgetValidation(t, open(t)) })
	t.Run("ReserveAndRefuse", func(t *testing.T) { testReserveAndRefuse(t, open(t)) })
	t.Run("AllOrNone", func(t *testing.T) { testAllOrNone(t, open(t)) })
	t.Run("SettleOnInsert", func(t *testing.T) { testSettleOnInsert(t, open(t)) })
	t.Run("SettleWithoutReservation", func(t *testing.T) { testSettleWithoutReservation(t, open(t)) })
	t.Run("ReserveIdempotent", func(t *testing.T) { testReserveIdempotent(t, open(t)) })
	t.Run("Release", func(t *testing.T) { testRelease(t, open(t)) })
	t.Run("ReleaseExpired", func(t *testing.T) { testReleaseExpired(t, open(t)) })
	t.Run("PeriodRollover", func(t *testing.T) { testPeriodRollover(t, open(t)) })
	t.Run("SeedFromLedger", func(t *testing.T) { testSeedFromLedger(t, open(t)) })
	t.Run("SeedAcrossDays", func(t *testing.T) { testSeedAcrossDays(t, open(t)) })
	t.Run("DeleteWhileHeld", func(t *testing.T) { testDeleteWhileHeld(t, open(t)) })
	t.Run("Alerts", func(t *testing.T) { testAlerts(t, open(t)) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrentReservations(t, open(t)) })
}

// Budget tests run on Monday 2 March 2026, mid-morning UTC.
var budgetNow = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func mustCreateBudget(t *testing.T, st BudgetStore, b sluice.Budget) sluice.Budget {
	t.Helper()
	if b.CreatedAt.IsZero() {
		b.CreatedAt = budgetNow
	}
	if err := st.CreateBudget(context.Background(), b); err != nil {
		t.Fatalf("CreateBudget(%s): %v", b.ID, err)
	}
	return b
}

func hardBudget(id string, scope sluice.BudgetScope, subject string, limit int64) sluice.Budget {
	return sluice.Budget{ID: id, Scope: scope, Subject: subject, Period: sluice.PeriodDay, LimitMicros: limit, Hard: true}
}

func reservation(id string, amount int64, s sluice.BudgetSubjects) sluice.Reservation {
	return sluice.Reservation{RequestID: id, Owner: "test", Subjects: s, AmountMicros: amount, ExpiresAt: budgetNow.Add(time.Hour)}
}

// spend returns a budget's settled and reserved spend at now.
func spend(t *testing.T, st BudgetStore, id string, now time.Time) (settled, reserved int64) {
	t.Helper()
	s, err := st.BudgetStatus(context.Background(), id, now)
	if err != nil {
		t.Fatalf("BudgetStatus(%s): %v", id, err)
	}
	return s.SettledMicros, s.ReservedMicros
}

func assertSpend(t *testing.T, st BudgetStore, id string, now time.Time, settled, reserved int64) {
	t.Helper()
	gs, gr := spend(t, st, id, now)
	if gs != settled || gr != reserved {
		t.Errorf("budget %s at %v: settled %d reserved %d, want %d and %d", id, now, gs, gr, settled, reserved)
	}
}

func usageFor(id string, at time.Time, s sluice.BudgetSubjects, cost int64) sluice.UsageRecord {
	return sluice.UsageRecord{RequestID: id, Time: at, KeyID: s.KeyID, Team: s.Team, Endpoint: s.Endpoint, CostMicros: cost}
}

func mustInsert(t *testing.T, st BudgetStore, recs ...sluice.UsageRecord) {
	t.Helper()
	if err := st.InsertUsage(context.Background(), recs); err != nil {
		t.Fatalf("InsertUsage: %v", err)
	}
}

func assertOutstanding(t *testing.T, st BudgetStore, want int64) {
	t.Helper()
	n, err := st.OutstandingReservations(context.Background())
	if err != nil || n != want {
		t.Errorf("OutstandingReservations = %d, %v; want %d", n, err, want)
	}
}

var alice = sluice.BudgetSubjects{KeyID: "k_alice", Team: "ml", Endpoint: "gpt"}

func testBudgetCRUD(t *testing.T, st BudgetStore) {
	ctx := context.Background()
	b := sluice.Budget{
		ID: "ml-gpt", Scope: sluice.ScopeTeamEndpoint, Subject: sluice.TeamEndpoint("ml", "gpt"),
		Period: sluice.PeriodMonth, TimeZone: "Europe/Paris", LimitMicros: 250_000_000, Hard: true,
		AlertThresholds: []int{50, 80, 100},
		CreatedAt:       budgetNow.Add(123456789 * time.Nanosecond).In(plus5),
	}
	mustCreateBudget(t, st, b)
	other := mustCreateBudget(t, st, sluice.Budget{ID: "a-key", Scope: sluice.ScopeKey, Subject: "k1", Period: sluice.PeriodLifetime, LimitMicros: 1})
	got, err := st.Budget(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := b
	want.CreatedAt = b.CreatedAt.UTC().Truncate(time.Microsecond)
	assertBudget(t, got, want)

	if err := st.CreateBudget(ctx, b); !errors.Is(err, sluice.ErrConflict) {
		t.Errorf("CreateBudget duplicate: %v, want ErrConflict", err)
	}
	list, err := st.Budgets(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("Budgets = %v, %v; want 2", list, err)
	}
	assertBudget(t, list[0], other) // ordered by id
	assertBudget(t, list[1], want)

	upd := want
	upd.LimitMicros, upd.Hard, upd.AlertThresholds = 1_000_000, false, nil
	if err := st.UpdateBudget(ctx, upd); err != nil {
		t.Fatalf("UpdateBudget: %v", err)
	}
	if got, _ := st.Budget(ctx, b.ID); true {
		assertBudget(t, got, upd)
	}
	for _, change := range []func(*sluice.Budget){
		func(b *sluice.Budget) { b.Scope, b.Subject = sluice.ScopeTeam, "ml" },
		func(b *sluice.Budget) { b.Subject = "ml/other" },
		func(b *sluice.Budget) { b.Period = sluice.PeriodDay },
		func(b *sluice.Budget) { b.TimeZone = "UTC" },
	} {
		bad := upd
		change(&bad)
		if err := st.UpdateBudget(ctx, bad); !errors.Is(err, sluice.ErrImmutable) {
			t.Errorf("UpdateBudget(%+v): %v, want ErrImmutable", bad, err)
		}
	}
	missing := upd
	missing.ID = "nope"
	if err := st.UpdateBudget(ctx, missing); !errors.Is(err, sluice.ErrNotFound) {
		t.Errorf("UpdateBudget(unknown): %v, want ErrNotFound", err)
	}
	if err := st.DeleteBudget(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteBudget(ctx, b.ID); !errors.Is(err, sluice.ErrNotFound) {
		t.Errorf("DeleteBudget twice: %v, want ErrNotFound", err)
	}
	if _, err := st.Budget(ctx, b.ID); !errors.Is(err, sluice.ErrNotFound) {
		t.Errorf("Budget(deleted): %v, want ErrNotFound", err)
	}
	if _, err := st.BudgetStatus(ctx, b.ID, budgetNow); !errors.Is(err, sluice.ErrNotFound) {
		t.Errorf("BudgetStatus(deleted): %v, want ErrNotFound", err)
	}
}

func assertBudget(t *testing.T, got, want sluice.Budget) {
	t.Helper()
	same := got.ID == want.ID && got.Scope == want.Scope && got.Subject == want.Subject &&
		got.Period == want.Period && got.TimeZone == want.TimeZone && got.LimitMicros == want.LimitMicros &&
		got.Hard == want.Hard && slices.Equal(got.AlertThresholds, want.AlertThresholds) &&
		sameTime(got.CreatedAt, want.CreatedAt)
	if !same {
		t.Errorf("budget mismatch\n got %+v\nwant %+v", got, want)
	}
}

func testBudgetValidation(t *testing.T, st BudgetStore) {
	ctx := context.Background()
	good := hardBudget("b", sluice.ScopeTeam, "ml", 10)
	good.CreatedAt = budgetNow
	for name, change := range map[string]func(*sluice.Budget){
		"no id":          func(b *sluice.Budget) { b.ID = "" },
		"scope":          func(b *sluice.Budget) { b.Scope = "org" },
		"no subject":     func(b *sluice.Budget) { b.Subject = "" },
		"pair subject":   func(b *sluice.Budget) { b.Scope = sluice.ScopeTeamEndpoint },
		"period":         func(b *sluice.Budget) { b.Period = "year" },
		"zone":           func(b *sluice.Budget) { b.TimeZone = "Mars/Olympus" },
		"negative limit": func(b *sluice.Budget) { b.LimitMicros = -1 },
		"huge limit":     func(b *sluice.Budget) { b.LimitMicros = sluice.MaxBudgetMicros + 1 },
		"threshold":      func(b *sluice.Budget) { b.AlertThresholds = []int{50, 0} },
	} {
		b := good
		change(&b)
		if err := st.CreateBudget(ctx, b); err == nil {
			t.Errorf("%s: CreateBudget(%+v) accepted", name, b)
		}
	}
	if list, err := st.Budgets(ctx); err != nil || len(list) != 0 {
		t.Errorf("invalid budgets stored: %v, %v", list, err)
	}
	for name, r := range map[string]sluice.Reservation{
		"no id":     {Subjects: alice, AmountMicros: 1, ExpiresAt: budgetNow},
		"negative":  {RequestID: "r", Subjects: alice, AmountMicros: -1, ExpiresAt: budgetNow},
		"no expiry": {RequestID: "r", Subjects: alice, AmountMicros: 1},
	} {
		if err := st.Reserve(ctx, r, budgetNow); err == nil {
			t.Errorf("%s: Reserve(%+v) accepted", name, r)
		}
	}
}

func testReserveAndRefuse(t *testing.T, st BudgetStore) {
	ctx := context.Background()
	mustCreateBudget(t, st, hardBudget("team", sluice.ScopeTeam, "ml", 100))
	soft := hardBudget("soft", sluice.ScopeEndpoint, "gpt", 10)
	soft.Hard = false
	mustCreateBudget(t, st, soft)

	if err := st.Reserve(ctx, reservation("r1", 60, alice), budgetNow); err != nil {
		t.Fatalf("Reserve within budget: %v", err)
	}
	err := st.Reserve(ctx, reservation("r2", 41, alice), budgetNow)
	var be *sluice.BudgetExceededError
	if !errors.As(err, &be) || !errors.Is(err, sluice.ErrBudgetExceeded) {
		t.Fatalf("Reserve over budget: %v, want *BudgetExceededError", err)
	}
	want := sluice.BudgetExceededError{
		BudgetID: "team", Scope: sluice.ScopeTeam, Subject: "ml", Period: sluice.PeriodDay,
		PeriodStart: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), ResetAt: time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC),
		LimitMicros: 100, SettledMicros: 0, ReservedMicros: 60, RequestedMicros: 41,
	}
	if !be.PeriodStart.Equal(want.PeriodStart) || !be.ResetAt.Equal(want.ResetAt) {
		t.Errorf("refusal period %v–%v, want %v–%v", be.PeriodStart, be.ResetAt, want.PeriodStart, want.ResetAt)
	}
	be.PeriodStart, be.ResetAt, want.PeriodStart, want.ResetAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if *be != want {
		t.Errorf("refusal %+v\nwant %+v", *be, want)
	}
	// Exactly up to the limit is fine; the soft budget is far over it.
	if err := st.Reserve(ctx, reservation("r3", 40, alice), budgetNow); err != nil {
		t.Fatalf("Reserve up to the limit: %v", err)
	}
	assertSpend(t, st, "team", budgetNow, 0, 100)
	assertSpend(t, st, "soft", budgetNow, 0, 100)
	// Zero fits even a full budget; a budget of another team is untouched.
	if err := st.Reserve(ctx, reservation("r4", 0, alice), budgetNow); err != nil {
		t.Fatalf("Reserve zero: %v", err)
	}
	bob := sluice.BudgetSubjects{KeyID: "k_bob", Team: "web", Endpoint: "embed"}
	if err := st.Reserve(ctx, reservation("r5", 1000, bob), budgetNow); err != nil {
		t.Fatalf("Reserve without budgets: %v", err)
	}
	// A single request larger than the whole limit is refused too.
	mustCreateBudget(t, st, hardBudget("tiny", sluice.ScopeKey, "k_carol", 5))
	err = st.Reserve(ctx, reservation("r6", 6, sluice.BudgetSubjects{KeyID: "k_carol"}), budgetNow)
	if !errors.As(err, &be) || be.BudgetID != "tiny" || be.SettledMicros != 0 || be.ReservedMicros != 0 {
		t.Errorf("Reserve above the limit of a fresh budget: %v", err)
	}
	assertSpend(t, st, "tiny", budgetNow, 0, 0)
	assertOutstanding(t, st, 3) // r1, r3, r4; r5 held nothing
}

func testAllOrNone(t *testing.T, st BudgetStore) {
	ctx := context.Background()
	mustCreateBudget(t, st, hardBudget("key", sluice.ScopeKey, "k_alice", 1000))
	mustCreateBudget(t, st, hardBudget("team", sluice.ScopeTeam, "ml", 50))
	mustCreateBudget(t, st, hardBudget("ep", sluice.ScopeEndpoint, "gpt", 1000))
	mustCreateBudget(t, st, hardBudget("pair", sluice.ScopeTeamEndpoint, "ml/gpt", 1000))
	err := st.Reserve(ctx, reservation("r1", 60, alice), budgetNow)
	var be *sluice.BudgetExceededError
	if !errors.As(err, &be) || be.BudgetID != "team" {
		t.Fatalf("Reserve: %v, want refusal by budget team", err)
	}
	for _, id := range []string{"key", "team", "ep", "pair"} {
		assertSpend(t, st, id, budgetNow, 0, 0)
	}
	assertOutstanding(t, st, 0)
	if err := st.Reserve(ctx, reservation("r2", 50, alice), budgetNow); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"key", "team", "ep", "pair"} {
		assertSpend(t, st, id, budgetNow, 0, 50)
	}
}

func testSettleOnInsert(t *testing.T, st BudgetStore) {
	ctx := context.Background()
	mustCreateBudget(t, st, hardBudget("team", sluice.ScopeTeam, "ml", 100))
	mustCreateBudget(t, st, hardBudget("key", sluice.ScopeKey, "k_alice", 100))
	for _, id := range []string{"r1", "r2", "r3"} {
		if err := st.Reserve(ctx, reservation(id, 30, alice), budgetNow); err != nil {
			t.Fatal(err)
		}
	}
	// One batch: two reserved records (one cheaper, one dearer than its
	// estimate), one of them twice, and a record of another team.
	mustInsert(t, st,
		usageFor("r1", budgetNow, alice, 10),
		usageFor("r2", budgetNow, alice, 45),
		usageFor("r1", budgetNow, alice, 999),
		usageFor("x", budgetNow, sluice.BudgetSubjects{KeyID: "k_bob", Team: "web"}, 7),
	)
	assertSpend(t, st, "team", budgetNow, 55, 30)
	assertSpend(t, st, "key", budgetNow, 55, 30)
	assertOutstanding(t, st, 1)
	// Inserted again, alone or with new records: nothing is settled twice.
	mustInsert(t, st, usageFor("r2", budgetNow, alice, 45))
	mustInsert(t, st, usageFor("r1", budgetNow, alice, 10), usageFor("r3", budgetNow, alice, 0))
	assertSpend(t, st, "team", budgetNow, 55, 0)
	assertOutstanding(t, st, 0)
	if found, err := st.Release(ctx, "r3"); err != nil || found {
		t.Errorf("Release of a settled reservation = %v, %v; want false", found, err)
	}
	// The settled spend is what the ledger says.
	rows, err := st.UsageReport(ctx, sluice.UsageQuery{GroupBy: []sluice.UsageGroup{sluice.GroupTeam}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Keys[0] == "ml" && r.CostMicros != 55 {
			t.Errorf("ledger says team ml spent %d, budget says 55", r.CostMicros)
		}
	}
}

func testSettleWithoutReservation(t *testing.T, st BudgetStore) {
	mustCreateBudget(t, st, hardBudget("team", sluice.ScopeTeam, "ml", 100))
	mustCreateBudget(t, st, hardBudget("pair", sluice.ScopeTeamEndpoint, "ml/gpt", 100))
	week := hardBudget("week", sluice.ScopeKey, "k_alice", 100)
	week.Period = sluice.PeriodWeek
	mustCreateBudget(t, st, week)
	yesterday := budgetNow.Add(-24 * time.Hour) // Sunday: last week
	mustInsert(t, st,
		usageFor("a", budgetNow, alice, 20),
		usageFor("b", yesterday, alice, 5),
		usageFor("c", budgetNow, sluice.BudgetSubjects{KeyID: "k_x", Team: "ml", Endpoint: "embed"}, 3),
		usageFor("d", budgetNow, alice, 0),
	)
	assertSpend(t, st, "team", budgetNow, 23, 0)
	assertSpend(t, st, "team", yesterday, 5, 0)
	assertSpend(t, st, "pair", budgetNow, 20, 0)
	assertSpend(t, st, "week", budgetNow, 20, 0)
	assertSpend(t, st, "week", yesterday, 5, 0)
	// Spend without a reservation still counts against admission.
	err := st.Reserve(context.Background(), reservation("r", 78, alice), budgetNow)
	if !errors.Is(err, sluice.ErrBudgetExceeded) {
		t.Errorf("Reserve after unreserved spend: %v, want refusal", err)
	}
}

func testReserveIdempotent(t *testing.T, st BudgetStore) {
	ctx := context.Background()
	mustCreateBudget(t, st, hardBudget("team", sluice.ScopeTeam, "ml", 100))
	r := reservation("r1", 30, alice)
	for range 2 {
		if err := st.Reserve(ctx, r, budgetNow); err != nil {
			t.Fatalf("Reserve (again): %v", err)
		}
	}
	assertSpend(t, st, "team", budgetNow, 0, 30)
	r2 := r
	r2.AmountMicros = 31
	if err := st.Reserve(ctx, r2, budgetNow); !errors.Is(err, sluice.ErrConflict) {
		t.Errorf("Reserve same id, other amount: %v, want ErrConflict", err)
	}
	r2 = r
	r2.Owner = "other"
	if err := st.Reserve(ctx, r2, budgetNow); !errors.Is(err, sluice.ErrConflict) {
		t.Errorf("Reserve same id, other owner: %v, want ErrConflict", err)
	}
	mustInsert(t, st, usageFor("done", budgetNow, alice, 1))
	if err := st.Reserve(ctx, reservation("done", 1, alice), budgetNow); !errors.Is(err, sluice.ErrConflict) {
		t.Errorf("Reserve after its usage record: %v, want ErrConflict", err)
	}
	assertSpend(t, st, "team", budgetNow, 1, 30)
	assertOutstanding(t, st, 1)
}

func testRelease(t *testing.T, st BudgetStore) {
	ctx := context.Background()
	mustCreateBudget(t, st, hardBudget("team", sluice.ScopeTeam, "ml", 100))
	mustCreateBudget(t, st, hardBudget("key", sluice.ScopeKey, "k_alice", 100))
	for _, id := range []string{"r1", "r2"} {
		if err := st.Reserve(ctx, reservation(id, 40, alice), budgetNow); err != nil {
			t.Fatal(err)
		}
	}
	if found, err := st.Release(ctx, "r1"); err != nil || !found {
		t.Fatalf("Release = %v, %v; want true", found, err)
	}
	if found, err := st.Release(ctx, "r1"); err != nil || found {
		t.Errorf("Release twice = %v, %v; want false", found, err)
	}
	if found, err := st.Release(ctx, "never"); err != nil || found {
		t.Errorf("Release unknown = %v, %v; want false", found, err)
	}
	assertSpend(t, st, "team", budgetNow, 0, 40)
	assertSpend(t, st, "key", budgetNow, 0, 40)
	// A record after its release is charged, but releases nothing more.
	mustInsert(t, st, usageFor("r1", budgetNow, alice, 25))
	assertSpend(t, st, "team", budgetNow, 25, 40)
	assertOutstanding(t, st, 1)
}

func testReleaseExpired(t *testing.T, st BudgetStore) {
	ctx := context.Background()
	mustCreateBudget(t, st, hardBudget("team", sluice.ScopeTeam, "ml", 100))
	for i, exp := range []time.Duration{time.Minute, 3 * time.Minute, 2 * time.Minute, time.Hour} {
		r := reservation(fmt.Sprintf("r%d", i), 10, alice)
		r.Owner = fmt.Sprintf("gw-%d", i%2)
		r.ExpiresAt = budgetNow.Add(exp)
		if err := st.Reserve(ctx, r, budgetNow); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.ReleaseExpired(ctx, budgetNow.Add(30*time.Second), 10)
	if err != nil || len(got) != 0 {
		t.Fatalf("ReleaseExpired before any expiry = %v, %v", got, err)
	}
	got, err = st.ReleaseExpired(ctx, budgetNow.Add(3*time.Minute), 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []sluice.ExpiredReservation{
		{RequestID: "r0", Owner: "gw-0", AmountMicros: 10, ExpiresAt: budgetNow.Add(time.Minute)},
		{RequestID: "r2", Owner: "gw-0", AmountMicros: 10, ExpiresAt: budgetNow.Add(2 * time.Minute)},
	}
	if !slices.EqualFunc(got, want, sameExpired) {
		t.Errorf("ReleaseExpired (limit 2) = %+v\nwant %+v", got, want)
	}
	assertSpend(t, st, "team", budgetNow, 0, 20)
	got, err = st.ReleaseExpired(ctx, budgetNow.Add(3*time.Minute), 10)
	if err != nil || len(got) != 1 || got[0].RequestID != "r1" || got[0].Owner != "gw-1" {
		t.Errorf("ReleaseExpired = %+v, %v; want r1", got, err)
	}
	assertSpend(t, st, "team", budgetNow, 0, 10)
	assertOutstanding(t, st, 1)
	// The late record of a released reservation is still charged.
	mustInsert(t, st, usageFor("r0", budgetNow, alice, 8))
	assertSpend(t, st, "team", budgetNow, 8, 10)
}

func sameExpired(a, b sluice.ExpiredReservation) bool {
	return a.RequestID == b.RequestID && a.Owner == b.Owner && a.AmountMicros == b.AmountMicros &&
		sameTime(a.ExpiresAt, b.ExpiresAt) && a.HadUsage == b.HadUsage
}

func testPeriodRollover(t *testing.T, st BudgetStore) {
	ctx := context.Background()
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	b := hardBudget("day", sluice.ScopeTeam, "ml", 100)
	b.TimeZone = "America/New_York"
	mustCreateBudget(t, st, b)
	m := hardBudget("month", sluice.ScopeKey, "k_alice", 1000)
	m.Period = sluice.PeriodMonth
	mustCreateBudget(t, st, m)

	late := time.Date(2026, 3, 2, 23, 50, 0, 0, ny) // 04:50 UTC on the 3rd
	early := late.Add(20 * time.Minute)             // the 3rd in New York
	if err := st.Reserve(ctx, reservation("r1", 90, alice), late); err != nil {
		t.Fatal(err)
	}
	assertSpend(t, st, "day", late, 0, 90)
	assertSpend(t, st, "day", early, 0, 0)
	// A new day has its whole limit, even with last night's hold open.
	if err := st.Reserve(ctx, reservation("r2", 100, alice), early); err != nil {
		t.Fatalf("Reserve in a new period: %v", err)
	}
	// r1's record, written after midnight, settles where r1 was held.
	mustInsert(t, st, usageFor("r1", early, alice, 70))
	assertSpend(t, st, "day", late, 70, 0)
	assertSpend(t, st, "day", early, 0, 100)
	assertSpend(t, st, "month", early, 70, 100)

	st0, err := st.BudgetStatus(ctx, "day", early)
	if err != nil {
		t.Fatal(err)
	}
	if wantStart := time.Date(2026, 3, 3, 0, 0, 0, 0, ny); !st0.PeriodStart.Equal(wantStart) || !st0.ResetAt.Equal(wantStart.AddDate(0, 0, 1)) {
		t.Errorf("status period %v–%v, want the New York day from %v", st0.PeriodStart, st0.ResetAt, wantStart)
	}
	if st0.RemainingMicros() != 0 {
		t.Errorf("remaining %d, want 0", st0.RemainingMicros())
	}
}

func testSeedFromLedger(t *testing.T, st BudgetStore) {
	// Spend recorded before the budget existed, in and before its period.
	mustInsert(t, st,
		usageFor("a", budgetNow.Add(-time.Hour), alice, 30),
		usageFor("b", budgetNow.Add(-24*time.Hour), alice, 500),
		usageFor("c", budgetNow.Add(-time.Minute), sluice.BudgetSubjects{KeyID: "k_other", Team: "ml", Endpoint: "gpt"}, 4),
		usageFor("d", budgetNow.Add(-time.Minute), sluice.BudgetSubjects{KeyID: "k_alice", Team: "ml", Endpoint: "embed"}, 2),
	)
	b := hardBudget("team", sluice.ScopeTeam, "ml", 100)
	b.AlertThresholds = []int{30}
	mustCreateBudget(t, st, b)
	mustCreateBudget(t, st, hardBudget("key", sluice.ScopeKey, "k_alice", 100))
	mustCreateBudget(t, st, hardBudget("pair", sluice.ScopeTeamEndpoint, "ml/gpt", 100))
	mustCreateBudget(t, st, hardBudget("ep", sluice.ScopeEndpoint, "gpt", 100))
	life := hardBudget("life", sluice.ScopeTeam, "ml", 10_000)
	life.Period = sluice.PeriodLifetime
	mustCreateBudget(t, st, life)
	assertSpend(t, st, "team", budgetNow, 36, 0)
	assertSpend(t, st, "key", budgetNow, 32, 0)
	assertSpend(t, st, "pair", budgetNow, 34, 0)
	assertSpend(t, st, "ep", budgetNow, 34, 0)
	assertSpend(t, st, "life", budgetNow, 536, 0)
	alerts, err := st.ClaimBudgetAlerts(context.Background(), budgetNow, budgetNow.Add(time.Minute), 10)
	if err != nil || len(alerts) != 1 || alerts[0].BudgetID != "team" || alerts[0].SettledMicros != 36 {
		t.Errorf("alerts after seeding = %+v, %v; want team at 30%%", alerts, err)
	}
}

// testSeedAcrossDays seeds budgets whose periods span whole UTC days,
// which a store may sum from a daily rollup, and start or end inside one.
func testSeedAcrossDays(t *testing.T, st BudgetStore) {
	utc := func(d, h int, extra time.Duration) time.Time {
		return time.Date(2026, 3, d, h, 0, 0, 0, time.UTC).Add(extra)
	}
	other := sluice.BudgetSubjects{KeyID: "k_bob", Team: "ops", Endpoint: "embed"}
	mustInsert(t, st,
		// New York's March runs from 1 March 05:00 to 1 April 04:00 UTC.
		usageFor("a", utc(1, 5, -time.Microsecond), alice, 1000),
		usageFor("b", utc(1, 5, 0), alice, 1),
		usageFor("c", utc(1, 12, 0), alice, 2),
		usageFor("d", utc(2, 1, 0), alice, 4),
		usageFor("e", utc(2, 9, 0), alice, 8),
		usageFor("f", utc(31, 23, 0), alice, 16),
		usageFor("g", utc(32, 4, -time.Microsecond), alice, 32),
		usageFor("h", utc(32, 4, 0), alice, 64),
		usageFor("x", utc(2, 9, 0), other, 128),
	)
	for _, c := range []struct {
		b    sluice.Budget
		want int64
	}{
		{sluice.Budget{ID: "ny-month", Scope: sluice.ScopeTeam, Subject: "ml", Period: sluice.PeriodMonth, TimeZone: "America/New_York"}, 63},
		{sluice.Budget{ID: "ny-month-pair", Scope: sluice.ScopeTeamEndpoint, Subject: "ml/gpt", Period: sluice.PeriodMonth, TimeZone: "America/New_York"}, 63},
		{sluice.Budget{ID: "utc-month-key", Scope: sluice.ScopeKey, Subject: "k_alice", Period: sluice.PeriodMonth}, 1031},
		{sluice.Budget{ID: "utc-week-ep", Scope: sluice.ScopeEndpoint, Subject: "gpt", Period: sluice.PeriodWeek}, 12},
		{sluice.Budget{ID: "kolkata-day", Scope: sluice.ScopeTeam, Subject: "ml", Period: sluice.PeriodDay, TimeZone: "Asia/Kolkata"}, 12},
		{sluice.Budget{ID: "life", Scope: sluice.ScopeTeam, Subject: "ml", Period: sluice.PeriodLifetime}, 1127},
		{sluice.Budget{ID: "ops-week", Scope: sluice.ScopeTeam, Subject: "ops", Period: sluice.PeriodWeek}, 128},
	} {
		c.b.LimitMicros = 1_000_000
		mustCreateBudget(t, st, c.b)
		assertSpend(t, st, c.b.ID, budgetNow, c.want, 0)
	}
}

func testDeleteWhileHeld(t *testing.T, st BudgetStore) {
	ctx := context.Background()
	mustCreateBudget(t, st, hardBudget("team", sluice.ScopeTeam, "ml", 100))
	mustCreateBudget(t, st, hardBudget("key", sluice.ScopeKey, "k_alice", 100))
	for _, id := range []string{"r1", "r2"} {
		if err := st.Reserve(ctx, reservation(id, 40, alice), budgetNow); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.DeleteBudget(ctx, "key"); err != nil {
		t.Fatal(err)
	}
	mustInsert(t, st, usageFor("r1", budgetNow, alice, 15))
	if found, err := st.Release(ctx, "r2"); err != nil || !found {
		t.Errorf("Release = %v, %v", found, err)
	}
	assertSpend(t, st, "team", budgetNow, 15, 0)
	// Recreated, it starts from the ledger.
	mustCreateBudget(t, st, hardBudget("key", sluice.ScopeKey, "k_alice", 100))
	assertSpend(t, st, "key", budgetNow, 15, 0)
	if err := st.DeleteBudget(ctx, "team"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteBudget(ctx, "key"); err != nil {
		t.Fatal(err)
	}
	mustInsert(t, st, usageFor("r3", budgetNow, alice, 15))
}

func testAlerts(t *testing.T, st BudgetStore) {
	ctx := context.Background()
	b := hardBudget("team", sluice.ScopeTeam, "ml", 100)
	b.AlertThresholds = []int{50, 80, 100}
	mustCreateBudget(t, st, b)
	soft := hardBudget("soft", sluice.ScopeKey, "k_alice", 50)
	soft.Hard, soft.AlertThresholds = false, []int{200}
	mustCreateBudget(t, st, soft)

	claim := func(now time.Time) []sluice.BudgetAlert {
		t.Helper()
		as, err := st.ClaimBudgetAlerts(ctx, now, now.Add(time.Minute), 10)
		if err != nil {
			t.Fatal(err)
		}
		return as
	}
	thresholds := func(as []sluice.BudgetAlert) []string {
		var out []string
		for _, a := range as {
			out = append(out, fmt.Sprintf("%s@%d", a.BudgetID, a.Threshold))
		}
		return out
	}
	at := func(m int) time.Time { return budgetNow.Add(time.Duration(m) * time.Minute) }

	mustInsert(t, st, usageFor("a", at(1), alice, 40))
	if as := claim(at(1)); len(as) != 0 {
		t.Errorf("alerts at 40%% = %v", thresholds(as))
	}
	mustInsert(t, st, usageFor("b", at(2), alice, 15))
	mustInsert(t, st, usageFor("c", at(3), alice, 30)) // 85: 80 reached
	as := claim(at(3))
	if got := thresholds(as); !slices.Equal(got, []string{"team@50", "team@80"}) {
		t.Fatalf("alerts at 85%% = %v, want team@50 team@80", got)
	}
	a := as[0]
	want := sluice.BudgetAlert{
		BudgetID: "team", Scope: sluice.ScopeTeam, Subject: "ml", Period: sluice.PeriodDay,
		PeriodStart: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), ResetAt: time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC),
		Threshold: 50, LimitMicros: 100, SettledMicros: 55, Hard: true, FiredAt: at(2),
	}
	if !sameTime(a.PeriodStart, want.PeriodStart) || !sameTime(a.ResetAt, want.ResetAt) || !sameTime(a.FiredAt, want.FiredAt) {
		t.Errorf("alert times %v %v %v, want %v %v %v", a.PeriodStart, a.ResetAt, a.FiredAt, want.PeriodStart, want.ResetAt, want.FiredAt)
	}
	a.PeriodStart, a.ResetAt, a.FiredAt = want.PeriodStart, want.ResetAt, want.FiredAt
	if a != want {
		t.Errorf("alert %+v\nwant %+v", a, want)
	}
	// Claimed: not offered again until the lease runs out, unless acked.
	if as := claim(at(3)); len(as) != 0 {
		t.Errorf("claimed alerts offered again: %v", thresholds(as))
	}
	if err := st.AckBudgetAlert(ctx, as[0], at(3)); err != nil {
		t.Fatal(err)
	}
	if got := thresholds(claim(at(5))); !slices.Equal(got, []string{"team@80"}) {
		t.Errorf("after the lease = %v, want team@80 only", got)
	}
	// Each threshold fires once per period, however often it is crossed.
	mustInsert(t, st, usageFor("d", at(6), alice, 5), usageFor("e", at(6), alice, 10))
	mustInsert(t, st, usageFor("f", at(7), alice, 0))
	as = claim(at(10))
	if got := thresholds(as); !slices.Equal(got, []string{"team@80", "soft@200", "team@100"}) {
		t.Errorf("at 100%% = %v, want team@80 (lease over) soft@200 team@100", got)
	}
	for _, a := range as {
		if err := st.AckBudgetAlert(ctx, a, at(10)); err != nil {
			t.Fatal(err)
		}
	}
	// A new period fires again.
	tomorrow := budgetNow.Add(24 * time.Hour)
	mustInsert(t, st, usageFor("g", tomorrow, alice, 60))
	as = claim(tomorrow)
	if got := thresholds(as); !slices.Equal(got, []string{"team@50"}) || !as[0].PeriodStart.Equal(want.ResetAt) {
		t.Errorf("next day = %v, want team@50 of the next period", got)
	}
}

// testConcurrentReservations runs 200 concurrent requests against a hard
// budget that allows exactly 10 of them at their worst-case cost, each
// settling as soon as it is admitted at that worst case. Other budgets on
// the same requests make every transaction take several row locks.
func testConcurrentReservations(t *testing.T, st BudgetStore) {
	ctx := context.Background()
	const (
		requests = 200
		worst    = 7_000
		allowed  = 10
	)
	// The limiting budget's id sorts first, so it is the first row every
	// transaction locks: no earlier lock serialises the requests for it.
	mustCreateBudget(t, st, hardBudget("a-team", sluice.ScopeTeam, "ml", allowed*worst))
	mustCreateBudget(t, st, hardBudget("ep", sluice.ScopeEndpoint, "gpt", 1000*worst))
	for i := range 4 {
		soft := hardBudget(fmt.Sprintf("key%d", i), sluice.ScopeKey, fmt.Sprintf("k%d", i), worst)
		soft.Hard = false
		mustCreateBudget(t, st, soft)
	}
	var (
		admitted atomic.Int64
		wg       sync.WaitGroup
		start    = make(chan struct{})
		errs     = make(chan error, requests)
	)
	for i := range requests {
		wg.Go(func() {
			<-start
			s := sluice.BudgetSubjects{KeyID: fmt.Sprintf("k%d", i%4), Team: "ml", Endpoint: "gpt"}
			id := fmt.Sprintf("req-%03d", i)
			err := st.Reserve(ctx, reservation(id, worst, s), budgetNow)
			if errors.Is(err, sluice.ErrBudgetExceeded) {
				return
			}
			if err != nil {
				errs <- err
				return
			}
			admitted.Add(1)
			if err := st.InsertUsage(ctx, []sluice.UsageRecord{usageFor(id, budgetNow, s, worst)}); err != nil {
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := admitted.Load(); n != allowed {
		t.Errorf("%d requests admitted, want exactly %d", n, allowed)
	}
	settled, reserved := spend(t, st, "a-team", budgetNow)
	if settled > allowed*worst || settled != admitted.Load()*worst || reserved != 0 {
		t.Errorf("team budget settled %d reserved %d; limit %d, %d admitted", settled, reserved, allowed*worst, admitted.Load())
	}
	assertSpend(t, st, "ep", budgetNow, settled, 0)
	assertOutstanding(t, st, 0)
}
