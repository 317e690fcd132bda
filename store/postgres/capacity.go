package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/internal/daily"
)

var _ sluice.CapacityStore = (*Store)(nil)

// AccrueCapacity inserts the charges with one statement; a charge for an
// (endpoint, served entity, hour) already stored, or earlier in charges,
// is skipped, so the first charge of an hour wins. Hour is taken as the
// UTC hour that contains it.
func (s *Store) AccrueCapacity(ctx context.Context, charges []sluice.CapacityCharge) error {
	if len(charges) == 0 {
		return nil
	}
	type key struct {
		endpoint, entity string
		hour             time.Time
	}
	seen := make(map[key]bool, len(charges))
	var (
		endpoints, entities      []string
		hours                    []time.Time
		cost, tokensPerSec, conc []int64
	)
	for _, c := range charges {
		k := key{cleanText(c.Endpoint), cleanText(c.ServedEntity), hourOf(c.Hour)}
		if seen[k] {
			continue
		}
		seen[k] = true
		endpoints, entities, hours = append(endpoints, k.endpoint), append(entities, k.entity), append(hours, k.hour)
		cost, tokensPerSec, conc = append(cost, c.CostMicros), append(tokensPerSec, c.TokensPerSecond), append(conc, c.Concurrency)
	}
	// In key order, so that concurrent accruals lock rows in the same order.
	_, err := s.pool.Exec(ctx, `INSERT INTO capacity_charges
		(endpoint, served_entity, hour, cost_micros, tokens_per_second, concurrency)
		SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[], $5::bigint[], $6::bigint[])
			AS c(endpoint, served_entity, hour, cost_micros, tokens_per_second, concurrency)
		ORDER BY c.endpoint COLLATE "C", c.served_entity COLLATE "C", c.hour
		ON CONFLICT (endpoint, served_entity, hour) DO NOTHING`,
		endpoints, entities, hours, cost, tokensPerSec, conc)
	if err != nil {
		return fmt.Errorf("postgres: accrue %d capacity charges: %w", len(charges), err)
	}
	return nil
}

// CapacityCharges returns the charges with Hour in [from, to), ordered by
// endpoint, served entity and hour. A zero bound is open.
func (s *Store) CapacityCharges(ctx context.Context, from, to time.Time) ([]sluice.CapacityCharge, error) {
	conds, args := timeRange("hour", from, to, 0)
	rows, _ := s.pool.Query(ctx, `SELECT endpoint, served_entity, hour, cost_micros, tokens_per_second, concurrency
		FROM capacity_charges`+where(conds)+` ORDER BY endpoint, served_entity, hour`, args...)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (sluice.CapacityCharge, error) {
		var c sluice.CapacityCharge
		err := row.Scan(&c.Endpoint, &c.ServedEntity, &c.Hour, &c.CostMicros, &c.TokensPerSecond, &c.Concurrency)
		c.Hour = c.Hour.UTC()
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: capacity charges: %w", err)
	}
	return out, nil
}

// EntityUsage sums the usage records with a served entity and Time in
// [from, to) by endpoint, served entity, UTC hour and team, ordered by
// those (byte order). A zero bound is open. BusyMillis is the sum of the
// records' latencies, truncated to the millisecond once, after summing.
// The range is read through the usage_time index.
//
// The hour is truncated in UTC explicitly: date_trunc on a timestamptz
// truncates in the session's time zone, which for a zone with a
// fractional offset (Asia/Kolkata) would not be a UTC hour.
func (s *Store) EntityUsage(ctx context.Context, from, to time.Time) ([]sluice.EntityHourUsage, error) {
	q, args := entityUsageQuery(from, to)
	rows, _ := s.pool.Query(ctx, q, args...)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (sluice.EntityHourUsage, error) {
		var u sluice.EntityHourUsage
		err := row.Scan(&u.Endpoint, &u.ServedEntity, &u.Hour, &u.Team, &u.Requests, &u.Tokens, &u.BusyMillis)
		u.Hour = u.Hour.UTC()
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: entity usage: %w", err)
	}
	return out, nil
}

// entityUsageQuery is EntityUsage's statement and its arguments.
func entityUsageQuery(from, to time.Time) (string, []any) {
	conds, args := timeRange("requested_at", from, to, 0)
	conds = append(conds, "served_entity <> ''")
	return `SELECT endpoint, served_entity,
			date_trunc('hour', requested_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', team,
			count(*), sum(total_tokens)::bigint, div(sum(latency_us), 1000)::bigint
		FROM usage` + where(conds) + ` GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`, args
}

// hourOf is the start of the UTC hour that contains t.
func hourOf(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// timeRange returns the conditions, and their arguments, that select the
// timestamptz col in [from, to), a zero bound being open. The arguments
// are numbered from $n+1. Bounds are rounded up to the microsecond, the
// precision the column keeps.
func timeRange(col string, from, to time.Time, n int) ([]string, []any) {
	var (
		conds []string
		args  []any
	)
	for _, b := range []struct {
		t  time.Time
		op string
	}{{from, ">="}, {to, "<"}} {
		if b.t.IsZero() {
			continue
		}
		args = append(args, time.UnixMicro(daily.Bound(b.t)).UTC())
		conds = append(conds, fmt.Sprintf("%s %s $%d::timestamptz", col, b.op, n+len(args)))
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
