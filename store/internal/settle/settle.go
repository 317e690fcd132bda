// Package settle holds the budget bookkeeping both ledger stores share:
// which period of which budget a reservation holds, and how a batch of
// newly inserted usage records changes budget spend. The stores run the
// SQL; this package decides what it must do, so the two cannot disagree.
package settle

import (
	"cmp"
	"slices"
	"time"

	"github.com/sluice-gateway/sluice"
)

// Hold is the part of a reservation held against one budget period.
type Hold struct {
	BudgetID    string
	PeriodStart time.Time
	Amount      int64
}

// Key identifies one period row of one budget.
type Key struct {
	BudgetID    string
	PeriodStart int64 // microseconds since the Unix epoch
}

func keyOf(budgetID string, start time.Time) Key {
	return Key{budgetID, start.UnixMicro()}
}

// Compare orders keys the way every transaction must lock period rows, so
// that concurrent transactions on PostgreSQL cannot deadlock.
func Compare(a, b Key) int {
	if c := cmp.Compare(a.BudgetID, b.BudgetID); c != 0 {
		return c
	}
	return cmp.Compare(a.PeriodStart, b.PeriodStart)
}

// Holds returns the holds a reservation of amount made at now takes on
// budgets, in lock order.
func Holds(budgets []sluice.Budget, amount int64, now time.Time) ([]Hold, error) {
	hs := make([]Hold, 0, len(budgets))
	for i := range budgets {
		start, _, err := budgets[i].PeriodAt(now)
		if err != nil {
			return nil, err
		}
		hs = append(hs, Hold{BudgetID: budgets[i].ID, PeriodStart: start, Amount: amount})
	}
	slices.SortFunc(hs, func(a, b Hold) int {
		return Compare(keyOf(a.BudgetID, a.PeriodStart), keyOf(b.BudgetID, b.PeriodStart))
	})
	return hs, nil
}

// Delta is the change a batch makes to one budget period: Settled is added
// to its settled spend and Released taken off its reserved amount.
type Delta struct {
	Budget      *sluice.Budget
	PeriodStart time.Time
	Settled     int64
	Released    int64
	// Last is the latest Time of the records settled into the period.
	Last time.Time
}

// Plan computes the deltas of settling recs, the newly inserted records of
// one batch. holds maps a request id to the holds its reservation had (the
// reservation is being deleted); budgets holds every budget that applies
// to a record or is held by one, by id. Holds on budgets missing from it
// (deleted since) are dropped. The deltas come in lock order and omit
// those that change nothing.
func Plan(recs []sluice.UsageRecord, holds map[string][]Hold, budgets map[string]*sluice.Budget) ([]Delta, error) {
	byKey := map[Key]*Delta{}
	add := func(b *sluice.Budget, start time.Time, settled, released int64, at time.Time) {
		if settled == 0 && released == 0 {
			return
		}
		k := keyOf(b.ID, start)
		d := byKey[k]
		if d == nil {
			d = &Delta{Budget: b, PeriodStart: start}
			byKey[k] = d
		}
		d.Settled += settled
		d.Released += released
		if at.After(d.Last) {
			d.Last = at
		}
	}
	// Budgets are few; scanning them per record is cheaper than indexing.
	all := make([]*sluice.Budget, 0, len(budgets))
	for _, b := range budgets {
		all = append(all, b)
	}
	for i := range recs {
		r := &recs[i]
		held := map[string]bool{}
		for _, h := range holds[r.RequestID] {
			b := budgets[h.BudgetID]
			if b == nil {
				continue
			}
			held[b.ID] = true
			add(b, h.PeriodStart, r.CostMicros, h.Amount, r.Time)
		}
		subj := sluice.SubjectsOf(r)
		for _, b := range all {
			if held[b.ID] || !b.AppliesTo(subj) {
				continue
			}
			start, _, err := b.PeriodAt(r.Time)
			if err != nil {
				return nil, err
			}
			add(b, start, r.CostMicros, 0, r.Time)
		}
	}
	out := make([]Delta, 0, len(byKey))
	for _, d := range byKey {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b Delta) int {
		return Compare(keyOf(a.Budget.ID, a.PeriodStart), keyOf(b.Budget.ID, b.PeriodStart))
	})
	return out, nil
}

// Targets returns the distinct (scope, subject) pairs of recs.
func Targets(recs []sluice.UsageRecord) []sluice.BudgetTarget {
	seen := map[sluice.BudgetTarget]bool{}
	var out []sluice.BudgetTarget
	for i := range recs {
		for _, t := range sluice.SubjectsOf(&recs[i]).Targets() {
			if !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	return out
}

// Refusal builds the error for a hard budget that refused amount in the
// period starting at start, with the period's spend as it stood.
func Refusal(b *sluice.Budget, start time.Time, settled, reserved, amount int64) error {
	_, end, err := b.PeriodAt(start)
	if err != nil {
		return err
	}
	return &sluice.BudgetExceededError{
		BudgetID: b.ID, Scope: b.Scope, Subject: b.Subject, Period: b.Period,
		PeriodStart: start, ResetAt: end, LimitMicros: b.LimitMicros,
		SettledMicros: settled, ReservedMicros: reserved, RequestedMicros: amount,
	}
}
