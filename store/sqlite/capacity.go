package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/internal/daily"
)

var _ sluice.CapacityStore = (*Store)(nil)

// hourMicros is an hour in microseconds, the unit times are stored in.
const hourMicros = int64(time.Hour / time.Microsecond)

// AccrueCapacity inserts the charges in one transaction; a charge for an
// (endpoint, served entity, hour) already stored, or earlier in charges,
// is skipped, so the first charge of an hour wins. Hour is taken as the
// UTC hour that contains it.
func (s *Store) AccrueCapacity(ctx context.Context, charges []sluice.CapacityCharge) error {
	if len(charges) == 0 {
		return nil
	}
	return s.write(ctx, len(charges), func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO capacity_charges
			(endpoint, served_entity, hour, cost_micros, tokens_per_second, concurrency) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (endpoint, served_entity, hour) DO NOTHING`)
		if err != nil {
			return fmt.Errorf("sqlite: accrue capacity: %w", err)
		}
		defer stmt.Close()
		for _, c := range charges {
			if _, err := stmt.ExecContext(ctx, c.Endpoint, c.ServedEntity, micros(hourOf(c.Hour)),
				c.CostMicros, c.TokensPerSecond, c.Concurrency); err != nil {
				return fmt.Errorf("sqlite: accrue capacity for %s/%s: %w", c.Endpoint, c.ServedEntity, err)
			}
		}
		return nil
	})
}

// CapacityCharges returns the charges with Hour in [from, to), ordered by
// endpoint, served entity and hour. A zero bound is open.
func (s *Store) CapacityCharges(ctx context.Context, from, to time.Time) ([]sluice.CapacityCharge, error) {
	conds, args := timeRange("hour", from, to)
	rows, err := s.reader.QueryContext(ctx, `SELECT endpoint, served_entity, hour, cost_micros, tokens_per_second, concurrency
		FROM capacity_charges`+where(conds)+` ORDER BY endpoint, served_entity, hour`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: capacity charges: %w", err)
	}
	defer rows.Close()
	var out []sluice.CapacityCharge
	for rows.Next() {
		var (
			c    sluice.CapacityCharge
			hour int64
		)
		if err := rows.Scan(&c.Endpoint, &c.ServedEntity, &hour, &c.CostMicros, &c.TokensPerSecond, &c.Concurrency); err != nil {
			return nil, fmt.Errorf("sqlite: capacity charges: %w", err)
		}
		c.Hour = fromMicros(hour)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: capacity charges: %w", err)
	}
	return out, nil
}

// EntityUsage sums the usage records with a served entity and Time in
// [from, to) by endpoint, served entity, UTC hour and team, ordered by
// those (byte order). A zero bound is open. BusyMillis is the sum of the
// records' latencies, truncated to the millisecond once, after summing.
// The range is read through the usage_time index.
func (s *Store) EntityUsage(ctx context.Context, from, to time.Time) ([]sluice.EntityHourUsage, error) {
	q, args := entityUsageQuery(from, to)
	rows, err := s.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: entity usage: %w", err)
	}
	defer rows.Close()
	var out []sluice.EntityHourUsage
	for rows.Next() {
		var (
			u    sluice.EntityHourUsage
			hour int64
		)
		if err := rows.Scan(&u.Endpoint, &u.ServedEntity, &hour, &u.Team, &u.Requests, &u.Tokens, &u.BusyMillis); err != nil {
			return nil, fmt.Errorf("sqlite: entity usage: %w", err)
		}
		u.Hour = fromMicros(hour)
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: entity usage: %w", err)
	}
	return out, nil
}

// entityUsageQuery is EntityUsage's statement and its arguments. The hour
// is floored, not truncated toward zero, so that instants before 1970
// fall in the right hour.
func entityUsageQuery(from, to time.Time) (string, []any) {
	conds, args := timeRange("requested_at", from, to)
	conds = append(conds, "served_entity <> ''")
	return fmt.Sprintf(`SELECT endpoint, served_entity,
			requested_at - ((requested_at %% %[1]d) + %[1]d) %% %[1]d AS hour, team,
			count(*), sum(total_tokens), sum(latency_us) / 1000
		FROM usage%[2]s GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`, hourMicros, where(conds)), args
}

// hourOf is the start of the UTC hour that contains t.
func hourOf(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// timeRange returns the conditions, and their arguments, that select col
// (microseconds since the Unix epoch) in [from, to), a zero bound being
// open. Bounds are rounded up to the microsecond, the precision the
// column keeps.
func timeRange(col string, from, to time.Time) ([]string, []any) {
	var (
		conds []string
		args  []any
	)
	if !from.IsZero() {
		conds, args = append(conds, col+" >= ?"), append(args, daily.Bound(from))
	}
	if !to.IsZero() {
		conds, args = append(conds, col+" < ?"), append(args, daily.Bound(to))
	}
	return conds, args
}

// where is a WHERE clause (with a leading space) of all conds, or empty.
func where(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}
