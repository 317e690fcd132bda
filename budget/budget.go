// Package budget is the budget engine the gateway drives. Admission
// reserves a request's worst-case cost against every budget that applies
// to it (key, team, endpoint, team on endpoint), atomically and all or
// none; a hard budget refuses a reservation that could take it over its
// limit. The request's usage record settles the reservation in the
// transaction that inserts it (sluice.UsageStore.InsertUsage), so there
// is no settle call here: the ledger is the only source of truth for
// spend, and a record written twice is counted once. A background loop
// releases reservations whose owner crashed or hung, and delivers alert
// thresholds as they are reached.
//
//	m := budget.New(st, budget.Options{Now: clock, OnAlert: notify})
//	go m.Run(ctx, time.NewTicker(10*time.Second).C)
//	...
//	err := m.Reserve(ctx, sluice.Reservation{RequestID: id, Subjects: subj, AmountMicros: worst})
//	var refused *sluice.BudgetExceededError
//	if errors.As(err, &refused) { ... 429 insufficient_quota, refused.Error() ... }
//	... serve, then commit the usage record through the ledger writer ...
//	// only if no usage record will ever be written for id:
//	m.Release(ctx, id)
package budget

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluice-gateway/sluice"
)

// Options tune a Manager. The zero value is ready to use.
type Options struct {
	// Owner names this process in the reservations it makes, so that
	// ones left behind can be traced to it. Empty means a random id.
	Owner string
	// TTL is how long a reservation lives when Reservation.ExpiresAt is
	// zero: after it, the reconciler may release it. It must outlast the
	// longest request (upstream timeout included) plus the ledger's write
	// delay, or a request still running loses its hold and another may be
	// admitted in its place. Zero means 15 minutes.
	TTL time.Duration
	// FailOpen admits a request when the store cannot be reached to
	// reserve for it (and reports the error to OnStoreError). False, the
	// default, returns the error, and the gateway should refuse.
	FailOpen bool
	// OnStoreError, if set, is called with each store error Reserve
	// absorbed because of FailOpen. It must not block.
	OnStoreError func(error)
	// OnAlert receives each alert threshold reached. Nil means alerts are
	// logged and dropped. An error leaves the alert to be offered again
	// after AlertLease; alerts are delivered at least once, so receivers
	// should deduplicate on (budget id, period start, threshold).
	OnAlert func(ctx context.Context, a sluice.BudgetAlert) error
	// AlertLease is how long a claimed alert is withheld from other
	// deliverers (other replicas included). Zero means one minute.
	AlertLease time.Duration
	// BatchSize bounds the reservations released, and the alerts
	// claimed, per store call. Zero means 100.
	BatchSize int
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// Logger receives reconciliation and delivery events. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Manager reserves, releases and reconciles budget holds and delivers
// alerts. Its methods are safe for concurrent use.
type Manager struct {
	st           sluice.BudgetStore
	owner        string
	ttl          time.Duration
	failOpen     bool
	onStoreError func(error)
	onAlert      func(context.Context, sluice.BudgetAlert) error
	lease        time.Duration
	batch        int
	now          func() time.Time
	log          *slog.Logger
}

// New returns a Manager keeping its state in st.
func New(st sluice.BudgetStore, opts Options) *Manager {
	m := &Manager{
		st:           st,
		owner:        opts.Owner,
		ttl:          opts.TTL,
		failOpen:     opts.FailOpen,
		onStoreError: opts.OnStoreError,
		onAlert:      opts.OnAlert,
		lease:        opts.AlertLease,
		batch:        opts.BatchSize,
		now:          opts.Now,
		log:          opts.Logger,
	}
	if m.owner == "" {
		var b [8]byte
		rand.Read(b[:])
		m.owner = "sluice-" + hex.EncodeToString(b[:])
	}
	if m.ttl <= 0 {
		m.ttl = 15 * time.Minute
	}
	if m.lease <= 0 {
		m.lease = time.Minute
	}
	if m.batch <= 0 {
		m.batch = 100
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	return m
}

// Owner returns the id this Manager stamps on its reservations.
func (m *Manager) Owner() string { return m.owner }

// Reserve holds r.AmountMicros, the request's worst-case cost, against the
// current period of every budget that applies to r.Subjects. It fills in
// an empty Owner and a zero ExpiresAt (now + TTL). It returns nil when the
// request may proceed and a *sluice.BudgetExceededError (errors.Is
// sluice.ErrBudgetExceeded) naming the budget and when it resets when a
// hard budget refuses; then nothing is held. A request id reserved
// already, or that has a usage record, is sluice.ErrConflict. Any other
// error is the store's, returned unless FailOpen.
//
// Once Reserve returns nil, exactly one of these must follow: the
// request's usage record is inserted (settling the hold), Release is
// called, or the reservation expires and Reconcile releases it.
func (m *Manager) Reserve(ctx context.Context, r sluice.Reservation) error {
	now := m.now()
	if r.Owner == "" {
		r.Owner = m.owner
	}
	if r.ExpiresAt.IsZero() {
		r.ExpiresAt = now.Add(m.ttl)
	}
	err := m.st.Reserve(ctx, r, now)
	if err == nil || errors.Is(err, sluice.ErrBudgetExceeded) || errors.Is(err, sluice.ErrConflict) || !m.failOpen {
		return err
	}
	if ctx.Err() != nil {
		return err // the caller gave up; nothing to fail open for
	}
	m.log.Warn("budget store unavailable; admitting without a reservation", "request_id", r.RequestID, "err", err)
	if m.onStoreError != nil {
		m.onStoreError(err)
	}
	return nil
}

// Release returns a reservation's holds to its budgets. Call it only for a
// request that will never have a usage record; the gateway writes one for
// every request it admitted, failures included, and that record settles
// the reservation. Releasing an unknown or settled reservation is a no-op.
func (m *Manager) Release(ctx context.Context, requestID string) error {
	_, err := m.st.Release(ctx, requestID)
	return err
}

// Reconcile releases every reservation that expired by now: its owner
// crashed or hung, or its request outlived the TTL. A request whose
// record arrives after that is still charged in full, as a request
// without a reservation. It returns what it released.
func (m *Manager) Reconcile(ctx context.Context) ([]sluice.ExpiredReservation, error) {
	now := m.now()
	var all []sluice.ExpiredReservation
	for {
		rs, err := m.st.ReleaseExpired(ctx, now, m.batch)
		all = append(all, rs...)
		for _, r := range rs {
			if r.HadUsage {
				// Settlement deletes the reservation it settles, so the
				// record was inserted before the reservation was made.
				m.log.Warn("released an expired reservation whose request has a usage record",
					"request_id", r.RequestID, "owner", r.Owner, "amount_micros", r.AmountMicros)
			}
		}
		if err != nil {
			return all, fmt.Errorf("budget: reconcile: %w", err)
		}
		if len(rs) < m.batch {
			break
		}
	}
	if len(all) > 0 {
		m.log.Info("released expired budget reservations", "count", len(all))
	}
	return all, nil
}

// DeliverAlerts claims the alerts waiting for delivery and hands each to
// OnAlert, acknowledging those it accepts. It returns how many were
// delivered. An alert OnAlert fails is offered again once its lease ends.
func (m *Manager) DeliverAlerts(ctx context.Context) (int, error) {
	delivered := 0
	for {
		now := m.now()
		as, err := m.st.ClaimBudgetAlerts(ctx, now, now.Add(m.lease), m.batch)
		if err != nil {
			return delivered, fmt.Errorf("budget: claim alerts: %w", err)
		}
		failed := 0
		for _, a := range as {
			if err := m.deliver(ctx, a); err != nil {
				failed++
				m.log.Warn("budget alert not delivered; will retry", "budget", a.BudgetID,
					"threshold", a.Threshold, "retry_after", m.lease, "err", err)
				continue
			}
			if err := m.st.AckBudgetAlert(ctx, a, m.now()); err != nil {
				return delivered, fmt.Errorf("budget: acknowledge alert: %w", err)
			}
			delivered++
		}
		if len(as) < m.batch || failed == len(as) {
			return delivered, nil
		}
	}
}

func (m *Manager) deliver(ctx context.Context, a sluice.BudgetAlert) error {
	if m.onAlert == nil {
		m.log.Warn("budget alert threshold reached", "budget", a.BudgetID, "scope", a.Scope,
			"subject", a.Subject, "threshold_percent", a.Threshold, "settled_micros", a.SettledMicros,
			"limit_micros", a.LimitMicros, "period_start", a.PeriodStart)
		return nil
	}
	return m.onAlert(ctx, a)
}

// Run reconciles and delivers alerts once at start and then at every tick,
// until ctx ends or tick is closed; it returns ctx.Err() or nil. Failures
// are logged and retried at the next tick. The gateway runs it in a
// goroutine, typically with time.NewTicker(10*time.Second).C; tests drive
// it with a channel of their own.
func (m *Manager) Run(ctx context.Context, tick <-chan time.Time) error {
	for {
		if _, err := m.Reconcile(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("budget reconciliation failed", "err", err)
		}
		if _, err := m.DeliverAlerts(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("budget alert delivery failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-tick:
			if !ok {
				return nil
			}
		}
	}
}

// Status returns a budget's spend in its current period, or an error
// wrapping sluice.ErrNotFound.
func (m *Manager) Status(ctx context.Context, budgetID string) (sluice.BudgetStatus, error) {
	return m.st.BudgetStatus(ctx, budgetID, m.now())
}

// Statuses returns the current status of every budget, by id, for metrics.
func (m *Manager) Statuses(ctx context.Context) ([]sluice.BudgetStatus, error) {
	return m.st.BudgetStatuses(ctx, m.now())
}

// Outstanding counts reservations not yet settled or released, for
// metrics.
func (m *Manager) Outstanding(ctx context.Context) (int64, error) {
	return m.st.OutstandingReservations(ctx)
}
