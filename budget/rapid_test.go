package budget_test

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/budget"
	"github.com/sluice-gateway/sluice/store/storetest"
	"pgregory.net/rapid"
)

// The budget state machine: reservations, settlement through the ledger
// (for less and for more than was reserved, and more than once), release,
// expiry and reconciliation, and time moving across period boundaries,
// checked step by step against a simple in-memory model.
//
// The invariant: for every hard budget and period,
//
//	settled + reserved <= limit + overrun
//
// where overrun is what settlement added beyond the amounts admission
// checked: the excess of a request's actual cost over its reservation,
// and the whole cost of records that held nothing on the budget (their
// reservation had been released or had expired). When actual costs stay
// within the reservations, overrun is zero and settled spend never exceeds
// a hard budget. Beyond that the counters must equal the model's exactly.

func TestBudgetStateMachine(t *testing.T) {
	// wipe empties a store (the ledger, its daily roll-up, budgets); the
	// other budget tables follow by cascade.
	const wipe = `DELETE FROM usage; DELETE FROM usage_daily; DELETE FROM budgets; DELETE FROM reservations;`
	t.Run("SQLite", func(t *testing.T) {
		defaultChecks(t, 30) // SQLite is slow under -race
		path := filepath.Join(t.TempDir(), "ledger.db")
		st := openSQLite(t, path)
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		rapid.Check(t, func(rt *rapid.T) {
			// A fresh store for each check.
			if _, err := db.Exec(wipe); err != nil {
				rt.Fatal(err)
			}
			runMachine(rt, st, func() (*sql.Rows, error) {
				return db.Query(`SELECT budget_id, period_start, settled_micros, reserved_micros FROM budget_periods`)
			})
		})
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		defaultChecks(t, 50)
		dsn := storetest.PostgresDSN(t)
		st := openPostgres(t, dsn)
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		rapid.Check(t, func(rt *rapid.T) {
			// A fresh store for each check, without the cost of a schema.
			if _, err := db.Exec(wipe); err != nil {
				rt.Fatal(err)
			}
			runMachine(rt, st, func() (*sql.Rows, error) {
				return db.Query(`SELECT budget_id, (extract(epoch FROM period_start) * 1000000)::bigint,
					settled_micros, reserved_micros FROM budget_periods`)
			})
		})
	})
}

// defaultChecks makes rapid run n checks (of about 30 steps each) for the
// rest of t, unless -rapid.checks or RAPID_CHECKS asks for a number: the
// default of 100 would make this test the slowest of the repository. Run
// with -rapid.checks=2000 for a deeper search.
func defaultChecks(t *testing.T, n int) {
	f := flag.Lookup("rapid.checks")
	explicit := os.Getenv("RAPID_CHECKS") != ""
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "rapid.checks" })
	if f == nil || explicit {
		return
	}
	old := f.Value.String()
	if err := f.Value.Set(strconv.Itoa(n)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Value.Set(old) })
}

type periodKey struct {
	budget string
	start  int64 // Unix microseconds
}

type counts struct{ settled, reserved, overrun int64 }

// request is an admitted request whose record has not been written.
type request struct {
	subj    sluice.BudgetSubjects
	amount  int64
	holds   map[string]time.Time // budget id → period start
	expires time.Time
}

type machine struct {
	st      storetest.BudgetStore
	rows    func() (*sql.Rows, error) // every period row, read behind the store's back
	m       *budget.Manager
	now     time.Time
	budgets []sluice.Budget
	counts  map[periodKey]*counts
	open    map[string]*request              // admitted, holding (or nothing to hold)
	lapsed  map[string]sluice.BudgetSubjects // released or expired, no record yet
	written map[string]sluice.UsageRecord
	next    int
}

var (
	keys      = []string{"k0", "k1", ""}
	teams     = []string{"t0", "t1"}
	endpoints = []string{"e0", "e1"}
	zones     = []string{"", "America/New_York", "Asia/Kolkata"}
)

func runMachine(t *rapid.T, st storetest.BudgetStore, rows func() (*sql.Rows, error)) {
	ctx := context.Background()
	// Around the night the United States moves its clocks forward.
	start := time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC).
		Add(time.Duration(rapid.Int64Range(0, 48*3600).Draw(t, "start")) * time.Second)
	mc := &machine{
		st: st, rows: rows, now: start,
		counts: map[periodKey]*counts{}, open: map[string]*request{},
		lapsed: map[string]sluice.BudgetSubjects{}, written: map[string]sluice.UsageRecord{},
	}
	mc.m = budget.New(st, budget.Options{Owner: "model", Now: func() time.Time { return mc.now }, BatchSize: 3, Logger: quiet})
	menu := []sluice.Budget{
		{ID: "team-day", Scope: sluice.ScopeTeam, Subject: "t0", Period: sluice.PeriodDay},
		{ID: "key-life", Scope: sluice.ScopeKey, Subject: "k0", Period: sluice.PeriodLifetime},
		{ID: "ep-month", Scope: sluice.ScopeEndpoint, Subject: "e0", Period: sluice.PeriodMonth},
		{ID: "pair-week", Scope: sluice.ScopeTeamEndpoint, Subject: "t0/e0", Period: sluice.PeriodWeek},
	}
	for _, b := range menu {
		if !rapid.Bool().Draw(t, "has "+b.ID) {
			continue
		}
		b.TimeZone = rapid.SampledFrom(zones).Draw(t, b.ID+" zone")
		b.LimitMicros = rapid.Int64Range(0, 200).Draw(t, b.ID+" limit")
		b.Hard = rapid.Float64Range(0, 1).Draw(t, b.ID+" hard") < 0.75
		b.AlertThresholds = []int{50, 100}
		b.CreatedAt = start
		if err := st.CreateBudget(ctx, b); err != nil {
			t.Fatal(err)
		}
		mc.budgets = append(mc.budgets, b)
	}

	t.Repeat(map[string]func(*rapid.T){
		"reserve":   mc.reserve,
		"settle":    mc.settle,
		"release":   mc.release,
		"reconcile": mc.reconcile,
		"late":      mc.late,
		"again":     mc.again,
		"advance":   mc.advance,
		"":          mc.check,
	})
}

func (mc *machine) period(t *rapid.T, b *sluice.Budget, at time.Time) (periodKey, *counts) {
	start, _, err := b.PeriodAt(at)
	if err != nil {
		t.Fatal(err)
	}
	k := periodKey{b.ID, start.UnixMicro()}
	c := mc.counts[k]
	if c == nil {
		c = &counts{}
		mc.counts[k] = c
	}
	return k, c
}

func (mc *machine) reserve(t *rapid.T) {
	subj := sluice.BudgetSubjects{
		KeyID:    rapid.SampledFrom(keys).Draw(t, "key"),
		Team:     rapid.SampledFrom(teams).Draw(t, "team"),
		Endpoint: rapid.SampledFrom(endpoints).Draw(t, "endpoint"),
	}
	amount := rapid.Int64Range(0, 80).Draw(t, "amount")
	ttl := time.Duration(rapid.Int64Range(60, 3*3600).Draw(t, "ttl")) * time.Second
	mc.next++
	id := fmt.Sprintf("r%d", mc.next)

	refusing := map[string]bool{}
	holds := map[string]time.Time{}
	for i := range mc.budgets {
		b := &mc.budgets[i]
		if !b.AppliesTo(subj) {
			continue
		}
		k, c := mc.period(t, b, mc.now)
		holds[b.ID] = time.UnixMicro(k.start)
		if b.Hard && c.settled+c.reserved+amount > b.LimitMicros {
			refusing[b.ID] = true
		}
	}
	err := mc.m.Reserve(context.Background(), sluice.Reservation{RequestID: id, Subjects: subj, AmountMicros: amount, ExpiresAt: mc.now.Add(ttl)})
	if len(refusing) > 0 {
		var be *sluice.BudgetExceededError
		if !errors.As(err, &be) || !refusing[be.BudgetID] {
			t.Fatalf("Reserve(%s, %d): %v; want a refusal by one of %v", id, amount, err, slices.Sorted(maps.Keys(refusing)))
		}
		return
	}
	if err != nil {
		t.Fatalf("Reserve(%s, %d): %v", id, amount, err)
	}
	for bid, start := range holds {
		mc.counts[periodKey{bid, start.UnixMicro()}].reserved += amount
	}
	mc.open[id] = &request{subj: subj, amount: amount, holds: holds, expires: mc.now.Add(ttl)}
}

// pick draws one of ids, or skips the step if there are none.
func pick[V any](t *rapid.T, m map[string]V, what string) string {
	if len(m) == 0 {
		t.Skip("no " + what)
	}
	return rapid.SampledFrom(slices.Sorted(maps.Keys(m))).Draw(t, what)
}

// charge applies a newly written record to the model: held budgets settle
// in the period held, others that apply in the record's period.
func (mc *machine) charge(t *rapid.T, rec sluice.UsageRecord, amount int64, holds map[string]time.Time) {
	for i := range mc.budgets {
		b := &mc.budgets[i]
		if start, ok := holds[b.ID]; ok {
			c := mc.counts[periodKey{b.ID, start.UnixMicro()}]
			c.reserved -= amount
			c.settled += rec.CostMicros
			c.overrun += max(0, rec.CostMicros-amount)
		} else if b.AppliesTo(sluice.SubjectsOf(&rec)) {
			_, c := mc.period(t, b, rec.Time)
			c.settled += rec.CostMicros
			c.overrun += rec.CostMicros
		}
	}
	mc.written[rec.RequestID] = rec
}

func (mc *machine) write(t *rapid.T, recs ...sluice.UsageRecord) {
	if err := mc.st.InsertUsage(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

func (mc *machine) settle(t *rapid.T) {
	id := pick(t, mc.open, "open request")
	r := mc.open[id]
	var cost int64
	if rapid.Bool().Draw(t, "over estimate") {
		cost = rapid.Int64Range(r.amount, 2*r.amount+10).Draw(t, "cost")
	} else {
		cost = rapid.Int64Range(0, r.amount).Draw(t, "cost")
	}
	rec := record(id, mc.now, r.subj, cost)
	if rapid.Bool().Draw(t, "duplicate in batch") {
		mc.write(t, rec, rec)
	} else {
		mc.write(t, rec)
	}
	mc.charge(t, rec, r.amount, r.holds)
	delete(mc.open, id)
}

func (mc *machine) release(t *rapid.T) {
	id := pick(t, mc.open, "open request")
	if err := mc.m.Release(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	mc.drop(id)
}

// drop returns an open request's holds, as Release and Reconcile do.
func (mc *machine) drop(id string) {
	r := mc.open[id]
	for bid, start := range r.holds {
		mc.counts[periodKey{bid, start.UnixMicro()}].reserved -= r.amount
	}
	delete(mc.open, id)
	mc.lapsed[id] = r.subj
}

func (mc *machine) reconcile(t *rapid.T) {
	released, err := mc.m.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, r := range released {
		got = append(got, r.RequestID)
		if r.HadUsage {
			t.Errorf("released %s, which has a usage record", r.RequestID)
		}
	}
	for id, r := range mc.open {
		// A request whose subjects had no budget holds nothing and has
		// no reservation to release; it stays open.
		if !r.expires.After(mc.now) && len(r.holds) > 0 {
			want = append(want, id)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Reconcile at %v released %v, want %v", mc.now, got, want)
	}
	for _, id := range want {
		mc.drop(id)
	}
}

// late writes the record of a request whose reservation was released or
// had expired: it is charged in full, as spend nobody reserved.
func (mc *machine) late(t *rapid.T) {
	id := pick(t, mc.lapsed, "lapsed request")
	rec := record(id, mc.now, mc.lapsed[id], rapid.Int64Range(0, 50).Draw(t, "cost"))
	mc.write(t, rec)
	mc.charge(t, rec, 0, nil)
	delete(mc.lapsed, id)
}

// again writes a record a second time, as a retrying ledger writer may.
func (mc *machine) again(t *rapid.T) {
	id := pick(t, mc.written, "written record")
	rec := mc.written[id]
	rec.CostMicros += rapid.Int64Range(0, 5).Draw(t, "different cost") // ignored: the first record wins
	mc.write(t, rec)
}

func (mc *machine) advance(t *rapid.T) {
	steps := []time.Duration{time.Second, 10 * time.Minute, time.Hour, 7 * time.Hour, 26 * time.Hour, 9 * 24 * time.Hour}
	mc.now = mc.now.Add(rapid.SampledFrom(steps).Draw(t, "advance"))
}

func (mc *machine) check(t *rapid.T) {
	ctx := context.Background()
	// Every period row the store has must be the model's, and the other
	// way round (a row the model lacks must be zero).
	rows, err := mc.rows()
	if err != nil {
		t.Fatal(err)
	}
	stored := map[periodKey][2]int64{}
	for rows.Next() {
		var k periodKey
		var v [2]int64
		if err := rows.Scan(&k.budget, &k.start, &v[0], &v[1]); err != nil {
			t.Fatal(err)
		}
		stored[k] = v
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		t.Fatal(err)
	}
	for k, v := range stored {
		if c := mc.counts[k]; c == nil && v != [2]int64{} {
			t.Fatalf("%s period %v: store settled %d reserved %d, model has nothing", k.budget, time.UnixMicro(k.start).UTC(), v[0], v[1])
		}
	}
	byID := map[string]*sluice.Budget{}
	for i := range mc.budgets {
		byID[mc.budgets[i].ID] = &mc.budgets[i]
	}
	for k, c := range mc.counts {
		b, v := byID[k.budget], stored[k]
		if v[0] != c.settled || v[1] != c.reserved {
			t.Fatalf("%s period %v: store settled %d reserved %d, model %d and %d",
				k.budget, time.UnixMicro(k.start).UTC(), v[0], v[1], c.settled, c.reserved)
		}
		if c.reserved < 0 {
			t.Fatalf("%s period %v: negative reserved %d", k.budget, time.UnixMicro(k.start).UTC(), c.reserved)
		}
		if b.Hard && c.settled+c.reserved > b.LimitMicros+c.overrun {
			t.Fatalf("hard budget %s overspent in period %v: settled %d + reserved %d > limit %d + overrun %d",
				b.ID, time.UnixMicro(k.start).UTC(), c.settled, c.reserved, b.LimitMicros, c.overrun)
		}
	}
	// What the gateway sees: the current period through the Manager.
	sts, err := mc.m.Statuses(ctx)
	if err != nil || len(sts) != len(mc.budgets) {
		t.Fatalf("Statuses = %d, %v; want %d", len(sts), err, len(mc.budgets))
	}
	for _, s := range sts {
		k, c := mc.period(t, byID[s.ID], mc.now)
		if s.SettledMicros != c.settled || s.ReservedMicros != c.reserved || s.PeriodStart.UnixMicro() != k.start {
			t.Fatalf("Status(%s) at %v = %+v, model %+v from %v", s.ID, mc.now, s, *c, time.UnixMicro(k.start).UTC())
		}
	}
	held := int64(0)
	for _, r := range mc.open {
		if len(r.holds) > 0 {
			held++
		}
	}
	if n, err := mc.m.Outstanding(ctx); err != nil || n != held {
		t.Fatalf("Outstanding = %d, %v; model holds %d", n, err, held)
	}
}
