package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/internal/daily"
	"github.com/sluice-gateway/sluice/store/internal/settle"
)

// Budgets live in the same file as the ledger, so that inserting a usage
// record and settling its cost against its budgets is one transaction.
// Every write goes through the single writer connection inside BEGIN
// IMMEDIATE, so the conditional reservation below is serialised with every
// other write, in this process and in any other that opens the file.

var _ sluice.BudgetStore = (*Store)(nil)

const budgetColumns = `id, scope, subject, period, time_zone, limit_micros, hard, alert_thresholds, created_at`

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// maxParams bounds the parameters of one generated statement, well under
// SQLite's limit.
const maxParams = 2000

// CreateBudget validates and stores b, or returns sluice.ErrConflict if its
// id exists. The period containing b.CreatedAt starts with the spend the
// ledger holds for b's subject in that period.
func (s *Store) CreateBudget(ctx context.Context, b sluice.Budget) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("sqlite: create budget: %w", err)
	}
	start, end, err := b.PeriodAt(b.CreatedAt)
	if err != nil {
		return fmt.Errorf("sqlite: create budget: %w", err)
	}
	th, err := thresholdsJSON(b.AlertThresholds)
	if err != nil {
		return fmt.Errorf("sqlite: create budget %q: %w", b.ID, err)
	}
	return s.write(ctx, 1, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO budgets (`+budgetColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			b.ID, string(b.Scope), b.Subject, string(b.Period), b.TimeZone, b.LimitMicros, b.Hard, th, micros(b.CreatedAt))
		if err != nil {
			return fmt.Errorf("sqlite: create budget %q: %w", b.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: create budget %q: %w", b.ID, err)
		} else if n == 0 {
			return fmt.Errorf("sqlite: create budget %q: %w", b.ID, sluice.ErrConflict)
		}
		seed, err := ledgerSpend(ctx, tx, &b, start, end)
		if err != nil {
			return fmt.Errorf("sqlite: create budget %q: seed from ledger: %w", b.ID, err)
		}
		if seed == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO budget_periods VALUES (?, ?, ?, 0)`, b.ID, micros(start), seed); err != nil {
			return fmt.Errorf("sqlite: create budget %q: %w", b.ID, err)
		}
		if err := fireAlerts(ctx, tx, &b, start, seed, b.CreatedAt); err != nil {
			return fmt.Errorf("sqlite: create budget %q: %w", b.ID, err)
		}
		return nil
	})
}

// ledgerSpend sums the cost of the records b applies to in [start, end):
// whole UTC days from the daily rollup, partial days from the ledger.
func ledgerSpend(ctx context.Context, q querier, b *sluice.Budget, start, end time.Time) (int64, error) {
	var where string
	var args []any
	switch b.Scope {
	case sluice.ScopeKey:
		where, args = "key_id = ?", []any{b.Subject}
	case sluice.ScopeTeam:
		where, args = "team = ?", []any{b.Subject}
	case sluice.ScopeEndpoint:
		where, args = "endpoint = ?", []any{b.Subject}
	case sluice.ScopeTeamEndpoint:
		team, ep, _ := strings.Cut(b.Subject, "/")
		where, args = "team = ? AND endpoint = ?", []any{team, ep}
	}
	var total int64
	sum := func(table, col string, r daily.Range) error {
		w, a := where, slices.Clip(args)
		if r.HasFrom {
			w, a = w+" AND "+col+" >= ?", append(a, r.From)
		}
		if r.HasTo {
			w, a = w+" AND "+col+" < ?", append(a, r.To)
		}
		var part int64
		err := q.QueryRowContext(ctx, `SELECT coalesce(sum(cost_micros), 0) FROM `+table+` WHERE `+w, a...).Scan(&part)
		total += part
		return err
	}
	p := daily.Split(start, end)
	if p.Daily {
		if err := sum("usage_daily", "day", p.Days); err != nil {
			return 0, err
		}
	}
	for _, r := range p.Raw {
		if err := sum("usage", "requested_at", r); err != nil {
			return 0, err
		}
	}
	return total, nil
}

// Budget returns the budget with the given id, or sluice.ErrNotFound.
func (s *Store) Budget(ctx context.Context, id string) (sluice.Budget, error) {
	b, err := scanBudget(s.reader.QueryRowContext(ctx, `SELECT `+budgetColumns+` FROM budgets WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return b, fmt.Errorf("sqlite: budget %q: %w", id, sluice.ErrNotFound)
	}
	if err != nil {
		return b, fmt.Errorf("sqlite: budget %q: %w", id, err)
	}
	return b, nil
}

// Budgets lists every budget ordered by id.
func (s *Store) Budgets(ctx context.Context) ([]sluice.Budget, error) {
	bs, err := queryBudgets(ctx, s.reader, `SELECT `+budgetColumns+` FROM budgets ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: budgets: %w", err)
	}
	return bs, nil
}

// UpdateBudget replaces the limit, hardness and alert thresholds of the
// budget with b.ID.
func (s *Store) UpdateBudget(ctx context.Context, b sluice.Budget) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("sqlite: update budget: %w", err)
	}
	th, err := thresholdsJSON(b.AlertThresholds)
	if err != nil {
		return fmt.Errorf("sqlite: update budget %q: %w", b.ID, err)
	}
	return s.write(ctx, 1, func(tx *sql.Tx) error {
		old, err := scanBudget(tx.QueryRowContext(ctx, `SELECT `+budgetColumns+` FROM budgets WHERE id = ?`, b.ID))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: update budget %q: %w", b.ID, sluice.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlite: update budget %q: %w", b.ID, err)
		}
		if old.Scope != b.Scope || old.Subject != b.Subject || old.Period != b.Period || old.TimeZone != b.TimeZone {
			return fmt.Errorf("sqlite: update budget %q: %w", b.ID, sluice.ErrImmutable)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE budgets SET limit_micros = ?, hard = ?, alert_thresholds = ? WHERE id = ?`,
			b.LimitMicros, b.Hard, th, b.ID); err != nil {
			return fmt.Errorf("sqlite: update budget %q: %w", b.ID, err)
		}
		return nil
	})
}

// DeleteBudget deletes a budget with its spend, holds and alerts.
func (s *Store) DeleteBudget(ctx context.Context, id string) error {
	return s.write(ctx, 1, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM budgets WHERE id = ?`, id)
		if err != nil {
			return fmt.Errorf("sqlite: delete budget %q: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: delete budget %q: %w", id, err)
		} else if n == 0 {
			return fmt.Errorf("sqlite: delete budget %q: %w", id, sluice.ErrNotFound)
		}
		return nil
	})
}

// Reserve holds r.AmountMicros against every budget that applies to
// r.Subjects, or refuses with a *sluice.BudgetExceededError.
func (s *Store) Reserve(ctx context.Context, r sluice.Reservation, now time.Time) error {
	if err := checkReservation(&r); err != nil {
		return fmt.Errorf("sqlite: reserve: %w", err)
	}
	targets := r.Subjects.Targets()
	// Most requests have no budget: find out on the read pool, without
	// queueing for the writer. A budget created after this check misses
	// this one request's hold but still gets its cost when it settles.
	var exists bool
	q, args := targetsQuery(`SELECT EXISTS (SELECT 1 FROM budgets WHERE `, targets, nil)
	if err := s.reader.QueryRowContext(ctx, q+`)`, args...).Scan(&exists); err != nil {
		return fmt.Errorf("sqlite: reserve %q: %w", r.RequestID, err)
	}
	if !exists {
		return nil
	}
	return s.write(ctx, 1, func(tx *sql.Tx) error {
		err := s.reserve(ctx, tx, &r, targets, now)
		if err != nil && !errors.Is(err, sluice.ErrBudgetExceeded) {
			err = fmt.Errorf("sqlite: reserve %q: %w", r.RequestID, err)
		}
		return err
	})
}

func checkReservation(r *sluice.Reservation) error {
	switch {
	case r.RequestID == "":
		return errors.New("empty request id")
	case r.AmountMicros < 0 || r.AmountMicros > sluice.MaxBudgetMicros:
		return fmt.Errorf("amount %d out of range", r.AmountMicros)
	case r.ExpiresAt.IsZero():
		return errors.New("no expiry")
	}
	return nil
}

func (s *Store) reserve(ctx context.Context, tx *sql.Tx, r *sluice.Reservation, targets []sluice.BudgetTarget, now time.Time) error {
	var owner string
	var amount int64
	err := tx.QueryRowContext(ctx, `SELECT owner, amount_micros FROM reservations WHERE request_id = ?`, r.RequestID).Scan(&owner, &amount)
	switch {
	case err == nil && owner == r.Owner && amount == r.AmountMicros:
		return nil // a retry of a reservation that was made
	case err == nil:
		return fmt.Errorf("reserved already by %q: %w", owner, sluice.ErrConflict)
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	var settled bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM usage WHERE request_id = ?)`, r.RequestID).Scan(&settled); err != nil {
		return err
	}
	if settled {
		return fmt.Errorf("usage already recorded: %w", sluice.ErrConflict)
	}
	budgets, err := loadBudgets(ctx, tx, targets, nil)
	if err != nil || len(budgets) == 0 {
		return err
	}
	holds, err := settle.Holds(budgets, r.AmountMicros, now)
	if err != nil {
		return err
	}
	byID := indexBudgets(budgets)
	for _, h := range holds {
		b := byID[h.BudgetID]
		// A new row holds just this amount; a hard budget must fit it.
		ok := !b.Hard || h.Amount <= b.LimitMicros
		if ok {
			rows, err := tx.QueryContext(ctx, `INSERT INTO budget_periods VALUES (?1, ?2, 0, ?3)
				ON CONFLICT (budget_id, period_start) DO UPDATE
				SET reserved_micros = reserved_micros + excluded.reserved_micros
				WHERE NOT ?4 OR settled_micros + reserved_micros + excluded.reserved_micros <= ?5
				RETURNING 1`, b.ID, micros(h.PeriodStart), h.Amount, b.Hard, b.LimitMicros)
			if err != nil {
				return err
			}
			ok = rows.Next()
			if err := errors.Join(rows.Err(), rows.Close()); err != nil {
				return err
			}
		}
		if !ok {
			settled, reserved, err := periodSpend(ctx, tx, b.ID, h.PeriodStart)
			if err != nil {
				return err
			}
			return settle.Refusal(b, h.PeriodStart, settled, reserved, h.Amount)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO reservations VALUES (?, ?, ?, ?, ?)`,
		r.RequestID, r.Owner, r.AmountMicros, micros(now), micros(r.ExpiresAt)); err != nil {
		return err
	}
	for _, h := range holds {
		if _, err := tx.ExecContext(ctx, `INSERT INTO reservation_holds VALUES (?, ?, ?, ?)`,
			r.RequestID, h.BudgetID, micros(h.PeriodStart), h.Amount); err != nil {
			return err
		}
	}
	return nil
}

func periodSpend(ctx context.Context, q querier, budgetID string, start time.Time) (settled, reserved int64, err error) {
	err = q.QueryRowContext(ctx, `SELECT settled_micros, reserved_micros FROM budget_periods
		WHERE budget_id = ? AND period_start = ?`, budgetID, micros(start)).Scan(&settled, &reserved)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, nil
	}
	return settled, reserved, err
}

// Release drops the reservation of requestID and its holds.
func (s *Store) Release(ctx context.Context, requestID string) (bool, error) {
	var found bool
	err := s.write(ctx, 1, func(tx *sql.Tx) error {
		var err error
		found, err = release(ctx, tx, requestID)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("sqlite: release %q: %w", requestID, err)
	}
	return found, nil
}

func release(ctx context.Context, tx *sql.Tx, requestID string) (bool, error) {
	holds, err := takeHolds(ctx, tx, []string{requestID})
	if err != nil {
		return false, err
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM reservations WHERE request_id = ?`, requestID)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	for _, h := range holds[requestID] {
		if _, err := tx.ExecContext(ctx, `UPDATE budget_periods SET reserved_micros = reserved_micros - ?
			WHERE budget_id = ? AND period_start = ?`, h.Amount, h.BudgetID, micros(h.PeriodStart)); err != nil {
			return false, err
		}
	}
	return n > 0, nil
}

// takeHolds deletes and returns the holds of the given requests, in lock
// order per request.
func takeHolds(ctx context.Context, tx *sql.Tx, ids []string) (map[string][]settle.Hold, error) {
	out := map[string][]settle.Hold{}
	for chunk := range slices.Chunk(ids, maxParams) {
		rows, err := tx.QueryContext(ctx, `DELETE FROM reservation_holds WHERE request_id IN (`+placeholders(len(chunk))+`)
			RETURNING request_id, budget_id, period_start, amount_micros`, anySlice(chunk)...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			var h settle.Hold
			var start int64
			if err := rows.Scan(&id, &h.BudgetID, &start, &h.Amount); err != nil {
				rows.Close()
				return nil, err
			}
			h.PeriodStart = fromMicros(start)
			out[id] = append(out[id], h)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return nil, err
		}
	}
	for _, hs := range out {
		slices.SortFunc(hs, func(a, b settle.Hold) int {
			return settle.Compare(settle.Key{BudgetID: a.BudgetID, PeriodStart: micros(a.PeriodStart)},
				settle.Key{BudgetID: b.BudgetID, PeriodStart: micros(b.PeriodStart)})
		})
	}
	return out, nil
}

// ReleaseExpired releases up to limit reservations that expired by now.
func (s *Store) ReleaseExpired(ctx context.Context, now time.Time, limit int) ([]sluice.ExpiredReservation, error) {
	var out []sluice.ExpiredReservation
	err := s.write(ctx, 1, func(tx *sql.Tx) error {
		out = nil
		rows, err := tx.QueryContext(ctx, `SELECT request_id, owner, amount_micros, expires_at,
				EXISTS (SELECT 1 FROM usage u WHERE u.request_id = r.request_id)
			FROM reservations r WHERE expires_at <= ? ORDER BY expires_at, request_id LIMIT ?`, micros(now), limit)
		if err != nil {
			return err
		}
		for rows.Next() {
			var e sluice.ExpiredReservation
			var exp int64
			if err := rows.Scan(&e.RequestID, &e.Owner, &e.AmountMicros, &exp, &e.HadUsage); err != nil {
				rows.Close()
				return err
			}
			e.ExpiresAt = fromMicros(exp)
			out = append(out, e)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		for _, e := range out {
			if _, err := release(ctx, tx, e.RequestID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: release expired reservations: %w", err)
	}
	return out, nil
}

// OutstandingReservations counts reservations not yet settled or released.
func (s *Store) OutstandingReservations(ctx context.Context) (int64, error) {
	var n int64
	if err := s.reader.QueryRowContext(ctx, `SELECT count(*) FROM reservations`).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: outstanding reservations: %w", err)
	}
	return n, nil
}

// settleUsage charges the newly inserted records recs to their budgets, inside
// the transaction that inserted them.
func settleUsage(ctx context.Context, tx *sql.Tx, recs []sluice.UsageRecord) error {
	if len(recs) == 0 {
		return nil
	}
	// Without budgets there is nothing to charge; any reservation left
	// holds nothing and the reconciler drops it when it expires.
	var exists bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM budgets)`).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return nil
	}
	ids := make([]string, len(recs))
	for i := range recs {
		ids[i] = recs[i].RequestID
	}
	holds, err := takeHolds(ctx, tx, ids)
	if err != nil {
		return err
	}
	for chunk := range slices.Chunk(ids, maxParams) {
		if _, err := tx.ExecContext(ctx, `DELETE FROM reservations WHERE request_id IN (`+placeholders(len(chunk))+`)`, anySlice(chunk)...); err != nil {
			return err
		}
	}
	var held []string
	for _, hs := range holds {
		for _, h := range hs {
			held = append(held, h.BudgetID)
		}
	}
	budgets, err := loadBudgets(ctx, tx, settle.Targets(recs), held)
	if err != nil {
		return err
	}
	deltas, err := settle.Plan(recs, holds, indexBudgets(budgets))
	if err != nil {
		return err
	}
	for _, d := range deltas {
		var settled int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO budget_periods VALUES (?, ?, ?, ?)
			ON CONFLICT (budget_id, period_start) DO UPDATE
			SET settled_micros = settled_micros + excluded.settled_micros,
				reserved_micros = reserved_micros + excluded.reserved_micros
			RETURNING settled_micros`,
			d.Budget.ID, micros(d.PeriodStart), d.Settled, -d.Released).Scan(&settled); err != nil {
			return err
		}
		if d.Settled > 0 {
			if err := fireAlerts(ctx, tx, d.Budget, d.PeriodStart, settled, d.Last); err != nil {
				return err
			}
		}
	}
	return nil
}

// fireAlerts records every threshold of b that settled spend has reached
// in the period; one already recorded stays as it was.
func fireAlerts(ctx context.Context, tx *sql.Tx, b *sluice.Budget, start time.Time, settled int64, at time.Time) error {
	for _, t := range b.ThresholdsReached(settled) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO budget_alerts
			(budget_id, period_start, threshold, limit_micros, settled_micros, fired_at)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			b.ID, micros(start), t, b.LimitMicros, settled, micros(at)); err != nil {
			return err
		}
	}
	return nil
}

// BudgetStatus returns the spend of budget id in the period containing now.
func (s *Store) BudgetStatus(ctx context.Context, id string, now time.Time) (sluice.BudgetStatus, error) {
	b, err := s.Budget(ctx, id)
	if err != nil {
		return sluice.BudgetStatus{}, err
	}
	st, err := s.status(ctx, b, now)
	if err != nil {
		return st, fmt.Errorf("sqlite: budget status %q: %w", id, err)
	}
	return st, nil
}

// BudgetStatuses returns the status of every budget, by id.
func (s *Store) BudgetStatuses(ctx context.Context, now time.Time) ([]sluice.BudgetStatus, error) {
	bs, err := s.Budgets(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]sluice.BudgetStatus, 0, len(bs))
	for _, b := range bs {
		st, err := s.status(ctx, b, now)
		if err != nil {
			return nil, fmt.Errorf("sqlite: budget status %q: %w", b.ID, err)
		}
		out = append(out, st)
	}
	return out, nil
}

func (s *Store) status(ctx context.Context, b sluice.Budget, now time.Time) (sluice.BudgetStatus, error) {
	st := sluice.BudgetStatus{Budget: b}
	var err error
	if st.PeriodStart, st.ResetAt, err = b.PeriodAt(now); err != nil {
		return st, err
	}
	st.SettledMicros, st.ReservedMicros, err = periodSpend(ctx, s.reader, b.ID, st.PeriodStart)
	return st, err
}

// ClaimBudgetAlerts claims up to limit undelivered alerts until leaseUntil.
func (s *Store) ClaimBudgetAlerts(ctx context.Context, now, leaseUntil time.Time, limit int) ([]sluice.BudgetAlert, error) {
	var out []sluice.BudgetAlert
	err := s.write(ctx, 1, func(tx *sql.Tx) error {
		out = nil
		rows, err := tx.QueryContext(ctx, `UPDATE budget_alerts SET lease_until = ?1
			WHERE (budget_id, period_start, threshold) IN (
				SELECT budget_id, period_start, threshold FROM budget_alerts
				WHERE delivered_at IS NULL AND (lease_until IS NULL OR lease_until <= ?2)
				ORDER BY fired_at, budget_id, period_start, threshold LIMIT ?3)
			RETURNING budget_id, period_start, threshold, limit_micros, settled_micros, fired_at`,
			micros(leaseUntil), micros(now), limit)
		if err != nil {
			return err
		}
		for rows.Next() {
			var a sluice.BudgetAlert
			var start, fired int64
			if err := rows.Scan(&a.BudgetID, &start, &a.Threshold, &a.LimitMicros, &a.SettledMicros, &fired); err != nil {
				rows.Close()
				return err
			}
			a.PeriodStart, a.FiredAt = fromMicros(start), fromMicros(fired)
			out = append(out, a)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		for i := range out {
			a := &out[i]
			b, err := scanBudget(tx.QueryRowContext(ctx, `SELECT `+budgetColumns+` FROM budgets WHERE id = ?`, a.BudgetID))
			if err != nil {
				return err
			}
			if err := completeAlert(a, &b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: claim budget alerts: %w", err)
	}
	slices.SortFunc(out, compareAlerts)
	return out, nil
}

// completeAlert fills in what a stored alert takes from its budget.
func completeAlert(a *sluice.BudgetAlert, b *sluice.Budget) error {
	a.Scope, a.Subject, a.Period, a.Hard = b.Scope, b.Subject, b.Period, b.Hard
	_, end, err := b.PeriodAt(a.PeriodStart)
	a.ResetAt = end
	return err
}

func compareAlerts(a, b sluice.BudgetAlert) int {
	if c := a.FiredAt.Compare(b.FiredAt); c != 0 {
		return c
	}
	if c := strings.Compare(a.BudgetID, b.BudgetID); c != 0 {
		return c
	}
	if c := a.PeriodStart.Compare(b.PeriodStart); c != 0 {
		return c
	}
	return a.Threshold - b.Threshold
}

// AckBudgetAlert marks an alert delivered.
func (s *Store) AckBudgetAlert(ctx context.Context, a sluice.BudgetAlert, at time.Time) error {
	return s.write(ctx, 1, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE budget_alerts SET delivered_at = ?
			WHERE budget_id = ? AND period_start = ? AND threshold = ?`,
			micros(at), a.BudgetID, micros(a.PeriodStart), a.Threshold); err != nil {
			return fmt.Errorf("sqlite: ack budget alert: %w", err)
		}
		return nil
	})
}

// loadBudgets returns the budgets on any of targets or with any of ids.
func loadBudgets(ctx context.Context, q querier, targets []sluice.BudgetTarget, ids []string) ([]sluice.Budget, error) {
	seen := map[string]bool{}
	var out []sluice.Budget
	collect := func(query string, args []any) error {
		bs, err := queryBudgets(ctx, q, query, args...)
		for _, b := range bs {
			if !seen[b.ID] {
				seen[b.ID] = true
				out = append(out, b)
			}
		}
		return err
	}
	for chunk := range slices.Chunk(targets, maxParams/2) {
		query, args := targetsQuery(`SELECT `+budgetColumns+` FROM budgets WHERE `, chunk, nil)
		if err := collect(query, args); err != nil {
			return nil, err
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	for chunk := range slices.Chunk(ids, maxParams) {
		if err := collect(`SELECT `+budgetColumns+` FROM budgets WHERE id IN (`+placeholders(len(chunk))+`)`, anySlice(chunk)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// targetsQuery appends to prefix a condition matching budgets on any of
// targets (or none, if there are none).
func targetsQuery(prefix string, targets []sluice.BudgetTarget, args []any) (string, []any) {
	if len(targets) == 0 {
		return prefix + "0", args
	}
	var b strings.Builder
	b.WriteString(prefix)
	b.WriteString("(scope, subject) IN (VALUES ")
	for i, t := range targets {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?)")
		args = append(args, string(t.Scope), t.Subject)
	}
	b.WriteString(")")
	return b.String(), args
}

func queryBudgets(ctx context.Context, q querier, query string, args ...any) ([]sluice.Budget, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []sluice.Budget
	for rows.Next() {
		b, err := scanBudget(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

func scanBudget(row interface{ Scan(...any) error }) (sluice.Budget, error) {
	var (
		b                 sluice.Budget
		scope, period, th string
		created           int64
	)
	if err := row.Scan(&b.ID, &scope, &b.Subject, &period, &b.TimeZone, &b.LimitMicros, &b.Hard, &th, &created); err != nil {
		return b, err
	}
	b.Scope, b.Period, b.CreatedAt = sluice.BudgetScope(scope), sluice.BudgetPeriod(period), fromMicros(created)
	if err := json.Unmarshal([]byte(th), &b.AlertThresholds); err != nil {
		return b, fmt.Errorf("budget %q: alert thresholds: %w", b.ID, err)
	}
	if len(b.AlertThresholds) == 0 {
		b.AlertThresholds = nil
	}
	return b, nil
}

func thresholdsJSON(ts []int) (string, error) {
	if ts == nil {
		ts = []int{}
	}
	b, err := json.Marshal(ts)
	return string(b), err
}

func indexBudgets(bs []sluice.Budget) map[string]*sluice.Budget {
	m := make(map[string]*sluice.Budget, len(bs))
	for i := range bs {
		m[bs[i].ID] = &bs[i]
	}
	return m
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
