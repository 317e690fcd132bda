package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice"
)

const usageColumns = `request_id, requested_at, key_id, team, end_user, endpoint, api, upstream,
	upstream_model, prompt_tokens, completion_tokens, total_tokens, usage_source, cost_micros,
	price_version, status, error_class, latency_us, ttft_us, stream, client_addr`

const insertUsageSQL = `INSERT INTO usage (` + usageColumns + `)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (request_id) DO NOTHING`

// InsertUsage writes recs in one transaction: all or none. A record whose
// request id is already stored (or appears earlier in recs) is skipped.
// Times and durations are kept to the microsecond, truncating the rest.
// Each record inserted is settled against its budgets in the same
// transaction (see sluice.BudgetStore).
func (s *Store) InsertUsage(ctx context.Context, recs []sluice.UsageRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return s.write(ctx, len(recs), func(tx *sql.Tx) error {
		stmt := tx.StmtContext(ctx, s.insertUsage)
		defer stmt.Close()
		var inserted []sluice.UsageRecord
		for i := range recs {
			r := &recs[i]
			res, err := stmt.ExecContext(ctx,
				r.RequestID, micros(r.Time), r.KeyID, r.Team, r.User, r.Endpoint, string(r.API), r.Upstream,
				r.UpstreamModel, r.PromptTokens, r.CompletionTokens, r.TotalTokens, string(r.UsageSource), r.CostMicros,
				r.PriceVersion, r.Status, r.ErrorClass, r.Latency.Microseconds(), r.TTFT.Microseconds(), r.Stream, r.ClientAddr,
			)
			if err != nil {
				return fmt.Errorf("sqlite: insert usage %q: %w", r.RequestID, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("sqlite: insert usage %q: %w", r.RequestID, err)
			} else if n == 1 {
				inserted = append(inserted, *r)
			}
		}
		if err := settleUsage(ctx, tx, inserted); err != nil {
			return fmt.Errorf("sqlite: settle %d usage records: %w", len(inserted), err)
		}
		return nil
	})
}

// Usage returns the record with the given request id, or sluice.ErrNotFound.
func (s *Store) Usage(ctx context.Context, requestID string) (sluice.UsageRecord, error) {
	var (
		r                 sluice.UsageRecord
		at, latency, ttft int64
		api, source       string
	)
	err := s.reader.QueryRowContext(ctx, `SELECT `+usageColumns+` FROM usage WHERE request_id = ?`, requestID).Scan(
		&r.RequestID, &at, &r.KeyID, &r.Team, &r.User, &r.Endpoint, &api, &r.Upstream,
		&r.UpstreamModel, &r.PromptTokens, &r.CompletionTokens, &r.TotalTokens, &source, &r.CostMicros,
		&r.PriceVersion, &r.Status, &r.ErrorClass, &latency, &ttft, &r.Stream, &r.ClientAddr,
	)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("sqlite: usage %q: %w", requestID, sluice.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("sqlite: usage %q: %w", requestID, err)
	}
	r.Time = fromMicros(at)
	r.API = sluice.API(api)
	r.UsageSource = sluice.UsageSource(source)
	r.Latency = time.Duration(latency) * time.Microsecond
	r.TTFT = time.Duration(ttft) * time.Microsecond
	return r, nil
}

// groupExpr maps each grouping to the SQL expression that yields its key.
// A day is the UTC calendar date; the seconds are floored (not truncated
// toward zero) so that instants before 1970 fall on the right day.
var groupExpr = map[sluice.UsageGroup]string{
	sluice.GroupTeam:     "team",
	sluice.GroupEndpoint: "endpoint",
	sluice.GroupKey:      "key_id",
	sluice.GroupUser:     "end_user",
	sluice.GroupModel:    "upstream_model",
	sluice.GroupUpstream: "upstream",
	sluice.GroupDay:      "date(requested_at / 1000000 - (requested_at % 1000000 < 0), 'unixepoch')",
}

// UsageReport sums the records in [q.From, q.To) by q.GroupBy, ordered by
// the group keys (byte order). Groups without records are not returned.
func (s *Store) UsageReport(ctx context.Context, q sluice.UsageQuery) ([]sluice.UsageRow, error) {
	var sel, where []string
	var args []any
	for i, g := range q.GroupBy {
		e, ok := groupExpr[g]
		if !ok {
			return nil, fmt.Errorf("sqlite: usage report: unknown group %q", g)
		}
		sel = append(sel, fmt.Sprintf("%s AS g%d", e, i))
	}
	if !q.From.IsZero() {
		where = append(where, "requested_at >= ?")
		args = append(args, micros(q.From))
	}
	if !q.To.IsZero() {
		where = append(where, "requested_at < ?")
		args = append(args, micros(q.To))
	}
	var b strings.Builder
	b.WriteString("SELECT ")
	for _, e := range sel {
		b.WriteString(e + ", ")
	}
	b.WriteString(`count(*), sum(error_class <> ''), sum(prompt_tokens), sum(completion_tokens),
		sum(total_tokens), sum(cost_micros) FROM usage`)
	if len(where) > 0 {
		b.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
	if len(sel) > 0 {
		var ord []string
		for i := range sel {
			ord = append(ord, fmt.Sprintf("g%d", i))
		}
		b.WriteString(" GROUP BY " + strings.Join(ord, ", "))
		b.WriteString(" ORDER BY " + strings.Join(ord, ", "))
	} else {
		// Without GROUP BY an aggregate yields one row even for no input.
		b.WriteString(" HAVING count(*) > 0")
	}

	rows, err := s.reader.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: usage report: %w", err)
	}
	defer rows.Close()
	var out []sluice.UsageRow
	for rows.Next() {
		r := sluice.UsageRow{Keys: make([]string, len(sel))}
		dest := make([]any, 0, len(sel)+6)
		for i := range r.Keys {
			dest = append(dest, &r.Keys[i])
		}
		dest = append(dest, &r.Requests, &r.Errors, &r.PromptTokens, &r.CompletionTokens, &r.TotalTokens, &r.CostMicros)
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("sqlite: usage report: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: usage report: %w", err)
	}
	return out, nil
}
