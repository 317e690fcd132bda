package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/internal/daily"
	"github.com/sluice-gateway/sluice/store/internal/settle"
)

// Budgets live in the same database as the ledger, so that inserting a
// usage record and settling its cost against its budgets is one
// transaction. Replicas share the per-period counters and change them in
// place: a reservation is a conditional upsert of the period row (whose
// row lock makes concurrent reservations of every replica queue for it and
// re-check the condition against the latest count), never a count
// computed elsewhere and written back. Transactions lock period rows in
// one order (budget id, then period start, bytewise), and one that is
// still chosen as a deadlock victim is retried.

var _ sluice.BudgetStore = (*Store)(nil)

const budgetColumns = `id, scope, subject, period, time_zone, limit_micros, hard, alert_thresholds, created_at`

// CreateBudget validates and stores b, or returns sluice.ErrConflict if its
// id exists. The period containing b.CreatedAt starts with the spend the
// ledger holds for b's subject in that period. To count every record
// exactly once, either in that sum or by settlement, it briefly blocks
// usage inserts (LOCK TABLE usage IN SHARE MODE) while it sums.
func (s *Store) CreateBudget(ctx context.Context, b sluice.Budget) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("postgres: create budget: %w", err)
	}
	start, end, err := b.PeriodAt(b.CreatedAt)
	if err != nil {
		return fmt.Errorf("postgres: create budget: %w", err)
	}
	th := b.AlertThresholds
	if th == nil {
		th = []int{}
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE usage IN SHARE MODE`); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO budgets (`+budgetColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING`,
			b.ID, string(b.Scope), b.Subject, string(b.Period), b.TimeZone, b.LimitMicros, b.Hard, th, b.CreatedAt)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return sluice.ErrConflict
		}
		seed, err := ledgerSpend(ctx, tx, &b, start, end)
		if err != nil {
			return fmt.Errorf("seed from ledger: %w", err)
		}
		if seed == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `INSERT INTO budget_periods VALUES ($1, $2, $3, 0)`, b.ID, start, seed); err != nil {
			return err
		}
		return fireAlerts(ctx, tx, []alertRow{newAlertRow(&b, start, seed, b.CreatedAt)})
	})
	if err != nil {
		return fmt.Errorf("postgres: create budget %q: %w", b.ID, err)
	}
	return nil
}

// ledgerSpend sums the cost of the records b applies to in [start, end):
// whole UTC days from the daily rollup, partial days from the ledger.
func ledgerSpend(ctx context.Context, tx pgx.Tx, b *sluice.Budget, start, end time.Time) (int64, error) {
	var where string
	var args []any
	switch b.Scope {
	case sluice.ScopeKey:
		where, args = "key_id = $1", []any{b.Subject}
	case sluice.ScopeTeam:
		where, args = "team = $1", []any{b.Subject}
	case sluice.ScopeEndpoint:
		where, args = "endpoint = $1", []any{b.Subject}
	case sluice.ScopeTeamEndpoint:
		team, ep, _ := strings.Cut(b.Subject, "/")
		where, args = "team = $1 AND endpoint = $2", []any{team, ep}
	}
	var total int64
	sum := func(table, col, typ string, r daily.Range, conv func(int64) time.Time) error {
		w, a := where, slices.Clip(args)
		if r.HasFrom {
			a = append(a, conv(r.From))
			w += fmt.Sprintf(" AND %s >= $%d::%s", col, len(a), typ)
		}
		if r.HasTo {
			a = append(a, conv(r.To))
			w += fmt.Sprintf(" AND %s < $%d::%s", col, len(a), typ)
		}
		var part int64
		err := tx.QueryRow(ctx, `SELECT coalesce(sum(cost_micros), 0)::bigint FROM `+table+` WHERE `+w, a...).Scan(&part)
		total += part
		return err
	}
	p := daily.Split(start, end)
	if p.Daily {
		if err := sum("usage_daily", "day", "date", p.Days, daily.DayStart); err != nil {
			return 0, err
		}
	}
	for _, r := range p.Raw {
		if err := sum("usage", "requested_at", "timestamptz", r, func(us int64) time.Time { return time.UnixMicro(us).UTC() }); err != nil {
			return 0, err
		}
	}
	return total, nil
}

// Budget returns the budget with the given id, or sluice.ErrNotFound.
func (s *Store) Budget(ctx context.Context, id string) (sluice.Budget, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+budgetColumns+` FROM budgets WHERE id = $1`, id)
	b, err := pgx.CollectExactlyOneRow(rows, scanBudget)
	if errors.Is(err, pgx.ErrNoRows) {
		return b, fmt.Errorf("postgres: budget %q: %w", id, sluice.ErrNotFound)
	}
	if err != nil {
		return b, fmt.Errorf("postgres: budget %q: %w", id, err)
	}
	return b, nil
}

// Budgets lists every budget ordered by id.
func (s *Store) Budgets(ctx context.Context) ([]sluice.Budget, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+budgetColumns+` FROM budgets ORDER BY id`)
	bs, err := pgx.CollectRows(rows, scanBudget)
	if err != nil {
		return nil, fmt.Errorf("postgres: budgets: %w", err)
	}
	return bs, nil
}

// UpdateBudget replaces the limit, hardness and alert thresholds of the
// budget with b.ID.
func (s *Store) UpdateBudget(ctx context.Context, b sluice.Budget) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("postgres: update budget: %w", err)
	}
	th := b.AlertThresholds
	if th == nil {
		th = []int{}
	}
	tag, err := s.pool.Exec(ctx, `UPDATE budgets SET limit_micros = $6, hard = $7, alert_thresholds = $8
		WHERE id = $1 AND scope = $2 AND subject = $3 AND period = $4 AND time_zone = $5`,
		b.ID, string(b.Scope), b.Subject, string(b.Period), b.TimeZone, b.LimitMicros, b.Hard, th)
	if err != nil {
		return fmt.Errorf("postgres: update budget %q: %w", b.ID, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	if _, err := s.Budget(ctx, b.ID); err != nil {
		return fmt.Errorf("postgres: update budget %q: %w", b.ID, sluice.ErrNotFound)
	}
	return fmt.Errorf("postgres: update budget %q: %w", b.ID, sluice.ErrImmutable)
}

// DeleteBudget deletes a budget with its spend and alerts. Reservations
// holding it keep their other holds.
func (s *Store) DeleteBudget(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM budgets WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("postgres: delete budget %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: delete budget %q: %w", id, sluice.ErrNotFound)
	}
	return nil
}

// budgetsOnTargets selects the budgets on any of the (scope, subject)
// pairs in $1, $2 or with an id in $3.
const budgetsOnTargets = `SELECT ` + budgetColumns + ` FROM budgets
	WHERE (scope, subject) IN (SELECT * FROM unnest($1::text[], $2::text[])) OR id = ANY($3::text[])`

func targetArrays(ts []sluice.BudgetTarget) (scopes, subjects []string) {
	for _, t := range ts {
		scopes = append(scopes, string(t.Scope))
		subjects = append(subjects, cleanText(t.Subject))
	}
	return scopes, subjects
}

// Reserve holds r.AmountMicros against every budget that applies to
// r.Subjects, or refuses with a *sluice.BudgetExceededError.
func (s *Store) Reserve(ctx context.Context, r sluice.Reservation, now time.Time) error {
	if err := checkReservation(&r); err != nil {
		return fmt.Errorf("postgres: reserve: %w", err)
	}
	r.RequestID, r.Owner = cleanText(r.RequestID), cleanText(r.Owner)
	for attempt := 1; ; attempt++ {
		err := s.reserve(ctx, &r, now)
		var pgErr *pgconn.PgError
		if attempt < 3 && errors.As(err, &pgErr) && pgErr.Code == "23503" {
			continue // a budget was deleted meanwhile: read them again
		}
		if err != nil && !errors.Is(err, sluice.ErrBudgetExceeded) {
			err = fmt.Errorf("postgres: reserve %q: %w", r.RequestID, err)
		}
		return err
	}
}

func (s *Store) reserve(ctx context.Context, r *sluice.Reservation, now time.Time) error {
	scopes, subjects := targetArrays(r.Subjects.Targets())
	// The definitions are read before the transaction, which saves a round
	// trip. The counts, which are what must be exact, are read and
	// changed inside it.
	rows, _ := s.pool.Query(ctx, budgetsOnTargets, scopes, subjects, []string{})
	budgets, err := pgx.CollectRows(rows, scanBudget)
	if err != nil || len(budgets) == 0 {
		return err
	}
	holds, err := settle.Holds(budgets, r.AmountMicros, now)
	if err != nil {
		return err
	}
	byID := indexBudgets(budgets)
	ids := make([]string, len(holds))
	starts := make([]time.Time, len(holds))
	for i, h := range holds {
		ids[i], starts[i] = h.BudgetID, h.PeriodStart
	}
	return s.inTx(ctx, func(tx pgx.Tx) error {
		var batch pgx.Batch
		batch.Queue(`INSERT INTO reservations
			SELECT $1::text, $2::text, $3::bigint, $4::timestamptz, $5::timestamptz WHERE NOT EXISTS (SELECT 1 FROM usage WHERE request_id = $1)
			ON CONFLICT (request_id) DO NOTHING`, r.RequestID, r.Owner, r.AmountMicros, now, r.ExpiresAt)
		for _, h := range holds {
			b := byID[h.BudgetID]
			// A new row holds just this amount; the WHERE covers an
			// existing one, re-checked on its latest version.
			if b.Hard && h.Amount > b.LimitMicros {
				break
			}
			batch.Queue(`INSERT INTO budget_periods AS p VALUES ($1, $2, 0, $3)
				ON CONFLICT (budget_id, period_start) DO UPDATE
				SET reserved_micros = p.reserved_micros + excluded.reserved_micros
				WHERE NOT $4 OR p.settled_micros + p.reserved_micros + excluded.reserved_micros <= $5`,
				b.ID, h.PeriodStart, h.Amount, b.Hard, b.LimitMicros)
		}
		queued := batch.Len() - 1 // holds queued
		if queued == len(holds) {
			// Conditional, so that a reservation that was not inserted
			// leaves the transaction usable to find out why.
			batch.Queue(`INSERT INTO reservation_holds
				SELECT $1::text, u.*, $2::bigint FROM unnest($3::text[], $4::timestamptz[]) AS u
				WHERE EXISTS (SELECT 1 FROM reservations WHERE request_id = $1)
				ON CONFLICT DO NOTHING`, r.RequestID, r.AmountMicros, ids, starts)
		}
		res := tx.SendBatch(ctx, &batch)
		tag, err := res.Exec()
		if err != nil {
			res.Close()
			return err
		}
		if tag.RowsAffected() == 0 {
			res.Close()
			return s.reservedAlready(ctx, tx, r)
		}
		refused := -1
		for i := range queued {
			tag, err := res.Exec()
			if err != nil {
				res.Close()
				return err
			}
			if tag.RowsAffected() == 0 && refused < 0 {
				refused = i
			}
		}
		if err := res.Close(); err != nil {
			return err
		}
		if refused < 0 && queued < len(holds) {
			refused = queued // the hold that could never fit
		}
		if refused >= 0 {
			h := holds[refused]
			var settled, reserved int64
			err := tx.QueryRow(ctx, `SELECT settled_micros, reserved_micros FROM budget_periods
				WHERE budget_id = $1 AND period_start = $2`, h.BudgetID, h.PeriodStart).Scan(&settled, &reserved)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			return settle.Refusal(byID[h.BudgetID], h.PeriodStart, settled, reserved, h.Amount)
		}
		return nil
	})
}

// reservedAlready handles a reservation that was not inserted: a retry of
// the same reservation succeeds; a different one, or one whose request
// has a usage record already, conflicts.
func (s *Store) reservedAlready(ctx context.Context, tx pgx.Tx, r *sluice.Reservation) error {
	var owner string
	var amount int64
	err := tx.QueryRow(ctx, `SELECT owner, amount_micros FROM reservations WHERE request_id = $1`, r.RequestID).Scan(&owner, &amount)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("usage already recorded: %w", sluice.ErrConflict)
	case err != nil:
		return err
	case owner == r.Owner && amount == r.AmountMicros:
		return errNoop
	}
	return fmt.Errorf("reserved already by %q: %w", owner, sluice.ErrConflict)
}

// errNoop rolls back a transaction that found its work done already.
var errNoop = errors.New("nothing to do")

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

// inTx runs fn in a transaction, retrying it if PostgreSQL aborts it as a
// deadlock victim or a serialization failure. errNoop from fn rolls back
// and counts as success.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.pool, fn)
		if errors.Is(err, errNoop) {
			return nil
		}
		var pgErr *pgconn.PgError
		if attempt < 5 && errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001") {
			continue
		}
		return err
	}
}

// delta is a change to budget period rows, column by column, in lock order.
type delta struct {
	ids      []string
	starts   []time.Time
	settled  []int64
	reserved []int64
}

func (d *delta) add(id string, start time.Time, settled, reserved int64) {
	d.ids = append(d.ids, id)
	d.starts = append(d.starts, start)
	d.settled = append(d.settled, settled)
	d.reserved = append(d.reserved, reserved)
}

// applyDelta adds the deltas to the period rows, creating rows that do not
// exist and skipping budgets deleted meanwhile, and returns each row's
// settled spend after the change.
const applyDelta = `INSERT INTO budget_periods AS p
	SELECT u.* FROM unnest($1::text[], $2::timestamptz[], $3::bigint[], $4::bigint[]) AS u(budget_id, period_start, s, r)
	WHERE EXISTS (SELECT 1 FROM budgets b WHERE b.id = u.budget_id)
	ORDER BY u.budget_id COLLATE "C", u.period_start
	ON CONFLICT (budget_id, period_start) DO UPDATE
	SET settled_micros = p.settled_micros + excluded.settled_micros,
		reserved_micros = p.reserved_micros + excluded.reserved_micros
	RETURNING budget_id, period_start, settled_micros`

// releaseHolds returns the holds of deleted reservations to their budgets.
func releaseHolds(ctx context.Context, tx pgx.Tx, holds []settle.Hold) error {
	if len(holds) == 0 {
		return nil
	}
	sum := map[settle.Key]int64{}
	for _, h := range holds {
		sum[settle.Key{BudgetID: h.BudgetID, PeriodStart: h.PeriodStart.UnixMicro()}] += h.Amount
	}
	keys := make([]settle.Key, 0, len(sum))
	for k := range sum {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, settle.Compare)
	var d delta
	for _, k := range keys {
		d.add(k.BudgetID, time.UnixMicro(k.PeriodStart).UTC(), 0, -sum[k])
	}
	_, err := tx.Exec(ctx, applyDelta, d.ids, d.starts, d.settled, d.reserved)
	return err
}

// takeHolds deletes reservations, with the statement given, and returns
// the holds of those it deleted. The statement must return the deleted
// rows' request_id, owner, amount_micros and expires_at. The holds are
// read, not deleted, here (they go by cascade): whoever deletes the
// reservation row owns its holds, and locks rows in the order every
// other path does, reservation first.
func takeHolds(ctx context.Context, tx pgx.Tx, deleteSQL string, args ...any) ([]sluice.ExpiredReservation, []settle.Hold, error) {
	rows, _ := tx.Query(ctx, `WITH res AS (`+deleteSQL+`)
		SELECT res.request_id, res.owner, res.amount_micros, res.expires_at,
			EXISTS (SELECT 1 FROM usage u WHERE u.request_id = res.request_id),
			h.budget_id, h.period_start, h.amount_micros
		FROM res LEFT JOIN reservation_holds h USING (request_id)
		ORDER BY res.expires_at, res.request_id`, args...)
	var (
		out    []sluice.ExpiredReservation
		holds  []settle.Hold
		e      sluice.ExpiredReservation
		id     *string
		start  *time.Time
		amount *int64
	)
	_, err := pgx.ForEachRow(rows, []any{&e.RequestID, &e.Owner, &e.AmountMicros, &e.ExpiresAt, &e.HadUsage, &id, &start, &amount}, func() error {
		if n := len(out); n == 0 || out[n-1].RequestID != e.RequestID {
			e.ExpiresAt = e.ExpiresAt.UTC()
			out = append(out, e)
		}
		if id != nil {
			holds = append(holds, settle.Hold{BudgetID: *id, PeriodStart: start.UTC(), Amount: *amount})
		}
		return nil
	})
	return out, holds, err
}

const reservationReturning = ` RETURNING request_id, owner, amount_micros, expires_at`

// Release drops the reservation of requestID and its holds.
func (s *Store) Release(ctx context.Context, requestID string) (bool, error) {
	var found bool
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		res, holds, err := takeHolds(ctx, tx, `DELETE FROM reservations WHERE request_id = $1`+reservationReturning, cleanText(requestID))
		if err != nil {
			return err
		}
		found = len(res) > 0
		return releaseHolds(ctx, tx, holds)
	})
	if err != nil {
		return false, fmt.Errorf("postgres: release %q: %w", requestID, err)
	}
	return found, nil
}

// ReleaseExpired releases up to limit reservations that expired by now.
// Replicas reconciling at once skip each other's rows.
func (s *Store) ReleaseExpired(ctx context.Context, now time.Time, limit int) ([]sluice.ExpiredReservation, error) {
	var out []sluice.ExpiredReservation
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var holds []settle.Hold
		var err error
		out, holds, err = takeHolds(ctx, tx, `DELETE FROM reservations WHERE request_id IN (
				SELECT request_id FROM reservations WHERE expires_at <= $1
				ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)`+reservationReturning, now, limit)
		if err != nil {
			return err
		}
		return releaseHolds(ctx, tx, holds)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: release expired reservations: %w", err)
	}
	return out, nil
}

// OutstandingReservations counts reservations not yet settled or released.
func (s *Store) OutstandingReservations(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM reservations`).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: outstanding reservations: %w", err)
	}
	return n, nil
}

// settleSQL inserts a batch of usage records (as insertUsageSQL does),
// adds those it inserted to the daily rollup and, in the same statement,
// deletes their reservations. It returns, for each record inserted, what
// settlement needs, one row per hold of its reservation (NULLs if it has
// none), and whether any budget exists at all. Rollup rows are written in
// key order, so that concurrent batches lock them in the same order.
const settleSQL = `WITH ins AS (` + insertUsageSQL + `
		RETURNING request_id, requested_at, key_id, team, end_user, endpoint, upstream, upstream_model,
			prompt_tokens, completion_tokens, total_tokens, error_class, cost_micros),
	days AS (` + addDailySQL + `),
	res AS (DELETE FROM reservations r USING ins WHERE r.request_id = ins.request_id
		RETURNING r.request_id)
	SELECT ins.request_id, ins.requested_at, ins.key_id, ins.team, ins.endpoint, ins.cost_micros,
		h.budget_id, h.period_start, h.amount_micros, EXISTS (SELECT 1 FROM budgets)
	FROM ins LEFT JOIN (res JOIN reservation_holds h USING (request_id)) USING (request_id)
	ORDER BY ins.request_id`

// insertAndSettle runs settleSQL with args and settles the inserted
// records against their budgets, in tx.
func insertAndSettle(ctx context.Context, tx pgx.Tx, args []any) error {
	rows, _ := tx.Query(ctx, settleSQL, args...)
	var (
		recs         []sluice.UsageRecord
		holds        = map[string][]settle.Hold{}
		held         []string
		r            sluice.UsageRecord
		id           *string
		start        *time.Time
		amount       *int64
		budgetsExist bool // the same on every row
	)
	_, err := pgx.ForEachRow(rows, []any{&r.RequestID, &r.Time, &r.KeyID, &r.Team, &r.Endpoint, &r.CostMicros,
		&id, &start, &amount, &budgetsExist}, func() error {
		if n := len(recs); n == 0 || recs[n-1].RequestID != r.RequestID {
			recs = append(recs, r)
		}
		if id != nil {
			holds[r.RequestID] = append(holds[r.RequestID], settle.Hold{BudgetID: *id, PeriodStart: start.UTC(), Amount: *amount})
			held = append(held, *id)
		}
		return nil
	})
	if err != nil || !budgetsExist {
		// Without budgets there are no holds either: they went with
		// their budgets.
		return err
	}
	scopes, subjects := targetArrays(settle.Targets(recs))
	if held == nil {
		held = []string{}
	}
	brows, _ := tx.Query(ctx, budgetsOnTargets, scopes, subjects, held)
	budgets, err := pgx.CollectRows(brows, scanBudget)
	if err != nil {
		return err
	}
	deltas, err := settle.Plan(recs, holds, indexBudgets(budgets))
	if err != nil || len(deltas) == 0 {
		return err
	}
	return applyDeltas(ctx, tx, deltas)
}

// applyDeltas changes the period rows by deltas and records the alert
// thresholds their settled spend reached.
func applyDeltas(ctx context.Context, tx pgx.Tx, deltas []settle.Delta) error {
	var d delta
	for _, x := range deltas {
		d.add(x.Budget.ID, x.PeriodStart, x.Settled, -x.Released)
	}
	prows, _ := tx.Query(ctx, applyDelta, d.ids, d.starts, d.settled, d.reserved)
	after := map[settle.Key]int64{}
	var (
		id      string
		start   time.Time
		settled int64
	)
	if _, err := pgx.ForEachRow(prows, []any{&id, &start, &settled}, func() error {
		after[settle.Key{BudgetID: id, PeriodStart: start.UnixMicro()}] = settled
		return nil
	}); err != nil {
		return err
	}
	var alerts []alertRow
	for _, x := range deltas {
		total, ok := after[settle.Key{BudgetID: x.Budget.ID, PeriodStart: x.PeriodStart.UnixMicro()}]
		if ok && x.Settled > 0 {
			alerts = append(alerts, newAlertRow(x.Budget, x.PeriodStart, total, x.Last))
		}
	}
	return fireAlerts(ctx, tx, alerts)
}

// alertRow is a budget period whose settled spend may have reached some
// of its budget's alert thresholds.
type alertRow struct {
	budget  *sluice.Budget
	start   time.Time
	settled int64
	at      time.Time
}

func newAlertRow(b *sluice.Budget, start time.Time, settled int64, at time.Time) alertRow {
	return alertRow{b, start, settled, at}
}

// fireAlerts records every threshold reached; one recorded already stays
// as it was.
func fireAlerts(ctx context.Context, tx pgx.Tx, rows []alertRow) error {
	var (
		ids                []string
		starts, at         []time.Time
		ths                []int32
		limits, settledArr []int64
	)
	for _, r := range rows {
		for _, t := range r.budget.ThresholdsReached(r.settled) {
			ids = append(ids, r.budget.ID)
			starts = append(starts, r.start)
			ths = append(ths, int32(t))
			limits = append(limits, r.budget.LimitMicros)
			settledArr = append(settledArr, r.settled)
			at = append(at, r.at)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO budget_alerts
			(budget_id, period_start, threshold, limit_micros, settled_micros, fired_at)
		SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::integer[], $4::bigint[], $5::bigint[], $6::timestamptz[])
		ON CONFLICT DO NOTHING`, ids, starts, ths, limits, settledArr, at)
	return err
}

// BudgetStatus returns the spend of budget id in the period containing now.
func (s *Store) BudgetStatus(ctx context.Context, id string, now time.Time) (sluice.BudgetStatus, error) {
	b, err := s.Budget(ctx, id)
	if err != nil {
		return sluice.BudgetStatus{}, err
	}
	sts, err := s.statuses(ctx, []sluice.Budget{b}, now)
	if err != nil {
		return sluice.BudgetStatus{}, fmt.Errorf("postgres: budget status %q: %w", id, err)
	}
	return sts[0], nil
}

// BudgetStatuses returns the status of every budget, by id.
func (s *Store) BudgetStatuses(ctx context.Context, now time.Time) ([]sluice.BudgetStatus, error) {
	bs, err := s.Budgets(ctx)
	if err != nil {
		return nil, err
	}
	sts, err := s.statuses(ctx, bs, now)
	if err != nil {
		return nil, fmt.Errorf("postgres: budget statuses: %w", err)
	}
	return sts, nil
}

func (s *Store) statuses(ctx context.Context, bs []sluice.Budget, now time.Time) ([]sluice.BudgetStatus, error) {
	out := make([]sluice.BudgetStatus, len(bs))
	ids := make([]string, len(bs))
	starts := make([]time.Time, len(bs))
	for i, b := range bs {
		out[i].Budget = b
		var err error
		if out[i].PeriodStart, out[i].ResetAt, err = b.PeriodAt(now); err != nil {
			return nil, err
		}
		ids[i], starts[i] = b.ID, out[i].PeriodStart
	}
	rows, _ := s.pool.Query(ctx, `SELECT u.ord, p.settled_micros, p.reserved_micros
		FROM unnest($1::text[], $2::timestamptz[]) WITH ORDINALITY AS u(budget_id, period_start, ord)
		JOIN budget_periods p USING (budget_id, period_start)`, ids, starts)
	var (
		ord               int64
		settled, reserved int64
	)
	_, err := pgx.ForEachRow(rows, []any{&ord, &settled, &reserved}, func() error {
		out[ord-1].SettledMicros, out[ord-1].ReservedMicros = settled, reserved
		return nil
	})
	return out, err
}

// ClaimBudgetAlerts claims up to limit undelivered alerts until leaseUntil.
// Replicas claiming at once skip each other's rows.
func (s *Store) ClaimBudgetAlerts(ctx context.Context, now, leaseUntil time.Time, limit int) ([]sluice.BudgetAlert, error) {
	rows, _ := s.pool.Query(ctx, `UPDATE budget_alerts a SET lease_until = $1
		FROM budgets b
		WHERE b.id = a.budget_id AND (a.budget_id, a.period_start, a.threshold) IN (
			SELECT budget_id, period_start, threshold FROM budget_alerts
			WHERE delivered_at IS NULL AND (lease_until IS NULL OR lease_until <= $2)
			ORDER BY fired_at LIMIT $3 FOR UPDATE SKIP LOCKED)
		RETURNING a.budget_id, a.period_start, a.threshold, a.limit_micros, a.settled_micros, a.fired_at,
			b.scope, b.subject, b.period, b.time_zone, b.hard`, leaseUntil, now, limit)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (sluice.BudgetAlert, error) {
		var a sluice.BudgetAlert
		var b sluice.Budget
		var scope, period string
		if err := row.Scan(&a.BudgetID, &a.PeriodStart, &a.Threshold, &a.LimitMicros, &a.SettledMicros, &a.FiredAt,
			&scope, &a.Subject, &period, &b.TimeZone, &a.Hard); err != nil {
			return a, err
		}
		a.Scope, a.Period = sluice.BudgetScope(scope), sluice.BudgetPeriod(period)
		a.PeriodStart, a.FiredAt = a.PeriodStart.UTC(), a.FiredAt.UTC()
		b.ID, b.Period = a.BudgetID, a.Period
		_, end, err := b.PeriodAt(a.PeriodStart)
		a.ResetAt = end
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: claim budget alerts: %w", err)
	}
	slices.SortFunc(out, func(a, b sluice.BudgetAlert) int {
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
	})
	return out, nil
}

// AckBudgetAlert marks an alert delivered.
func (s *Store) AckBudgetAlert(ctx context.Context, a sluice.BudgetAlert, at time.Time) error {
	if _, err := s.pool.Exec(ctx, `UPDATE budget_alerts SET delivered_at = $4
		WHERE budget_id = $1 AND period_start = $2 AND threshold = $3`,
		a.BudgetID, a.PeriodStart, a.Threshold, at); err != nil {
		return fmt.Errorf("postgres: ack budget alert: %w", err)
	}
	return nil
}

func scanBudget(row pgx.CollectableRow) (sluice.Budget, error) {
	var (
		b             sluice.Budget
		scope, period string
		th            []int32
	)
	if err := row.Scan(&b.ID, &scope, &b.Subject, &period, &b.TimeZone, &b.LimitMicros, &b.Hard, &th, &b.CreatedAt); err != nil {
		return b, err
	}
	b.Scope, b.Period, b.CreatedAt = sluice.BudgetScope(scope), sluice.BudgetPeriod(period), b.CreatedAt.UTC()
	for _, t := range th {
		b.AlertThresholds = append(b.AlertThresholds, int(t))
	}
	return b, nil
}

func indexBudgets(bs []sluice.Budget) map[string]*sluice.Budget {
	m := make(map[string]*sluice.Budget, len(bs))
	for i := range bs {
		m[bs[i].ID] = &bs[i]
	}
	return m
}
