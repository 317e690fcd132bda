package admission

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/budget"
	"github.com/sluice-gateway/sluice/proxy"
)

// Budgets reserves each call's worst-case cost against the budgets that
// apply to it (key, team, endpoint, team × endpoint) before the call goes
// upstream. The ledger commit settles the reservation in the same
// transaction as the usage record, so there is nothing to do afterwards.
//
// The budget list is cached and refreshed in the background, so a call to
// which no budget applies costs no store round trip.
type Budgets struct {
	Manager *budget.Manager
	Store   sluice.BudgetStore
	Logger  *slog.Logger
	// OnRefused is called with the refusing budget's scope, for metrics.
	OnRefused func(scope string)

	budgets atomic.Pointer[[]sluice.Budget]
}

var _ proxy.Admitter = (*Budgets)(nil)

// Refresh reloads the budget list.
func (b *Budgets) Refresh(ctx context.Context) error {
	bs, err := b.Store.Budgets(ctx)
	if err != nil {
		return err
	}
	b.budgets.Store(&bs)
	return nil
}

// Run refreshes the list on every tick until ctx ends.
func (b *Budgets) Run(ctx context.Context, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			if err := b.Refresh(ctx); err != nil && ctx.Err() == nil && b.Logger != nil {
				b.Logger.Warn("budget list refresh failed; using the last one", "err", err)
			}
		}
	}
}

func (b *Budgets) applies(s sluice.BudgetSubjects) bool {
	p := b.budgets.Load()
	if p == nil {
		return true // not loaded yet: ask the store
	}
	for i := range *p {
		if (*p)[i].AppliesTo(s) {
			return true
		}
	}
	return false
}

// Admit implements proxy.Admitter.
func (b *Budgets) Admit(ctx context.Context, a *proxy.Admission) (func(*sluice.UsageRecord), error) {
	subj := sluice.BudgetSubjects{KeyID: a.Key.ID, Team: a.Key.Team, Endpoint: a.Endpoint.Name}
	if !b.applies(subj) {
		return nil, nil
	}
	var amount int64
	if len(a.Targets) > 0 && a.Targets[0].Priced {
		amount = a.Targets[0].Price.Cost(a.PromptTokens(), a.WorstCaseOutput())
	}
	err := b.Manager.Reserve(ctx, sluice.Reservation{RequestID: a.Record.RequestID, Subjects: subj, AmountMicros: amount})
	if err == nil {
		return nil, nil
	}
	var be *sluice.BudgetExceededError
	if errors.As(err, &be) {
		if b.OnRefused != nil {
			b.OnRefused(string(be.Scope))
		}
		e := &apierr.Error{Status: 429, Type: "insufficient_quota", Code: "insufficient_quota", Msg: be.Error(),
			Class: sluice.ErrClassBudgetExceeded}
		if !be.ResetAt.IsZero() {
			e.RetryAfter = time.Until(be.ResetAt)
		}
		return nil, e
	}
	return nil, &apierr.Error{Status: 503, Type: "server_error", Code: "budget_unavailable",
		Msg: "Budgets cannot be checked right now; retry shortly.", Class: sluice.ErrClassInternal, Err: err}
}
