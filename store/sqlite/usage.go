package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/internal/daily"
)

const usageColumns = `request_id, requested_at, key_id, team, end_user, endpoint, api, upstream,
	upstream_model, prompt_tokens, completion_tokens, total_tokens, usage_source, cost_micros,
	price_version, status, error_class, latency_us, ttft_us, stream, client_addr,
	client_request_id, usage_context, served_entity, attempts, attempt_log`

const insertUsageSQL = `INSERT INTO usage (` + usageColumns + `)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (request_id) DO NOTHING`

// addDailySQL adds a group of newly inserted records to their row of the
// daily rollup.
const addDailySQL = `INSERT INTO usage_daily VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (day, team, endpoint, key_id, end_user, upstream_model, upstream) DO UPDATE SET
		requests = requests + excluded.requests,
		errors = errors + excluded.errors,
		prompt_tokens = prompt_tokens + excluded.prompt_tokens,
		completion_tokens = completion_tokens + excluded.completion_tokens,
		total_tokens = total_tokens + excluded.total_tokens,
		cost_micros = cost_micros + excluded.cost_micros`

// backfillDailySQL builds the daily rollup from the ledger, as migration
// 020 does (a test keeps the two identical).
const backfillDailySQL = `INSERT INTO usage_daily
	SELECT (requested_at - ((requested_at % 86400000000) + 86400000000) % 86400000000) / 86400000000,
		team, endpoint, key_id, end_user, upstream_model, upstream,
		count(*), sum(error_class <> ''), sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(cost_micros)
	FROM usage GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7;`

// dailyKey identifies a row of the daily rollup.
type dailyKey struct {
	day                                          int64
	team, endpoint, keyID, user, model, upstream string
}

// dailySums are the sums a rollup row keeps.
type dailySums struct {
	requests, errors, prompt, completion, total, cost int64
}

// dailyBatch sums the records of one batch by rollup row, in the order
// each row was first seen.
type dailyBatch struct {
	index map[dailyKey]int
	keys  []dailyKey
	sums  []dailySums
}

func (b *dailyBatch) add(r *sluice.UsageRecord) {
	k := dailyKey{daily.Day(micros(r.Time)), r.Team, r.Endpoint, r.KeyID, r.User, r.UpstreamModel, r.Upstream}
	i, ok := b.index[k]
	if !ok {
		if b.index == nil {
			b.index = map[dailyKey]int{}
		}
		i = len(b.keys)
		b.index[k] = i
		b.keys = append(b.keys, k)
		b.sums = append(b.sums, dailySums{})
	}
	s := &b.sums[i]
	s.requests++
	if r.ErrorClass != "" {
		s.errors++
	}
	s.prompt += r.PromptTokens
	s.completion += r.CompletionTokens
	s.total += r.TotalTokens
	s.cost += r.CostMicros
}

// InsertUsage writes recs in one transaction: all or none. A record whose
// request id is already stored (or appears earlier in recs) is skipped.
// Times and durations are kept to the microsecond, truncating the rest.
// Each record inserted is added to the daily rollup and settled against
// its budgets (see sluice.BudgetStore) in the same transaction.
func (s *Store) InsertUsage(ctx context.Context, recs []sluice.UsageRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return s.write(ctx, len(recs), func(tx *sql.Tx) error {
		stmt := tx.StmtContext(ctx, s.insertUsage)
		defer stmt.Close()
		var (
			inserted []sluice.UsageRecord
			days     dailyBatch
		)
		for i := range recs {
			r := &recs[i]
			res, err := stmt.ExecContext(ctx,
				r.RequestID, micros(r.Time), r.KeyID, r.Team, r.User, r.Endpoint, string(r.API), r.Upstream,
				r.UpstreamModel, r.PromptTokens, r.CompletionTokens, r.TotalTokens, string(r.UsageSource), r.CostMicros,
				r.PriceVersion, r.Status, r.ErrorClass, r.Latency.Microseconds(), r.TTFT.Microseconds(), r.Stream, r.ClientAddr,
				r.ClientRequestID, r.UsageContext, r.ServedEntity, r.Attempts, r.AttemptLog,
			)
			if err != nil {
				return fmt.Errorf("sqlite: insert usage %q: %w", r.RequestID, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("sqlite: insert usage %q: %w", r.RequestID, err)
			} else if n == 1 {
				inserted = append(inserted, *r)
				days.add(r)
			}
		}
		add := tx.StmtContext(ctx, s.addDaily)
		defer add.Close()
		for i, k := range days.keys {
			d := &days.sums[i]
			if _, err := add.ExecContext(ctx, k.day, k.team, k.endpoint, k.keyID, k.user, k.model, k.upstream,
				d.requests, d.errors, d.prompt, d.completion, d.total, d.cost); err != nil {
				return fmt.Errorf("sqlite: add usage to daily rollup: %w", err)
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
		&r.ClientRequestID, &r.UsageContext, &r.ServedEntity, &r.Attempts, &r.AttemptLog,
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

// groupExpr maps each grouping to the SQL expression that yields its key
// from a raw record. A day is the UTC calendar date; the seconds are
// floored (not truncated toward zero) so that instants before 1970 fall on
// the right day.
var groupExpr = map[sluice.UsageGroup]string{
	sluice.GroupTeam:     "team",
	sluice.GroupEndpoint: "endpoint",
	sluice.GroupKey:      "key_id",
	sluice.GroupUser:     "end_user",
	sluice.GroupModel:    "upstream_model",
	sluice.GroupUpstream: "upstream",
	sluice.GroupDay:      "date(requested_at / 1000000 - (requested_at % 1000000 < 0), 'unixepoch')",
}

// dailyGroupExpr is groupExpr for a row of the daily rollup.
var dailyGroupExpr = map[sluice.UsageGroup]string{
	sluice.GroupTeam:     "team",
	sluice.GroupEndpoint: "endpoint",
	sluice.GroupKey:      "key_id",
	sluice.GroupUser:     "end_user",
	sluice.GroupModel:    "upstream_model",
	sluice.GroupUpstream: "upstream",
	sluice.GroupDay:      "date(day * 86400, 'unixepoch')",
}

// UsageReport sums the records in [q.From, q.To) by q.GroupBy, ordered by
// the group keys (byte order). Groups without records are not returned.
// Whole UTC days in the range are read from the daily rollup; only the
// partial days at its edges are read from the ledger.
func (s *Store) UsageReport(ctx context.Context, q sluice.UsageQuery) ([]sluice.UsageRow, error) {
	return s.report(ctx, q, daily.Split(q.From, q.To))
}

// rawPlan reads the whole range from the ledger; tests compare it with
// the rollup.
func rawPlan(q sluice.UsageQuery) daily.Plan {
	var r daily.Range
	if !q.From.IsZero() {
		r.From, r.HasFrom = daily.Bound(q.From), true
	}
	if !q.To.IsZero() {
		r.To, r.HasTo = daily.Bound(q.To), true
	}
	return daily.Plan{Raw: []daily.Range{r}}
}

// report runs q with the records coming from where p says. Each part is
// summed on its own; several parts are summed again over their union.
func (s *Store) report(ctx context.Context, q sluice.UsageQuery, p daily.Plan) ([]sluice.UsageRow, error) {
	for _, g := range q.GroupBy {
		if _, ok := groupExpr[g]; !ok {
			return nil, fmt.Errorf("sqlite: usage report: unknown group %q", g)
		}
	}
	var (
		parts []string
		args  []any
	)
	groups := make([]string, len(q.GroupBy))
	for i := range q.GroupBy {
		groups[i] = fmt.Sprintf("g%d", i)
	}
	part := func(exprs map[sluice.UsageGroup]string, sums, from, where string) {
		var b strings.Builder
		b.WriteString("SELECT ")
		for i, g := range q.GroupBy {
			fmt.Fprintf(&b, "%s AS g%d, ", exprs[g], i)
		}
		b.WriteString(sums + " FROM " + from)
		if where != "" {
			b.WriteString(" WHERE " + where)
		}
		if len(groups) > 0 {
			b.WriteString(" GROUP BY " + strings.Join(groups, ", "))
		} else {
			// Without GROUP BY an aggregate yields one row even for no input.
			b.WriteString(" HAVING count(*) > 0")
		}
		parts = append(parts, b.String())
	}
	bounds := func(col string, r daily.Range) string {
		var w []string
		if r.HasFrom {
			w = append(w, col+" >= ?")
			args = append(args, r.From)
		}
		if r.HasTo {
			w = append(w, col+" < ?")
			args = append(args, r.To)
		}
		return strings.Join(w, " AND ")
	}
	if p.Daily {
		part(dailyGroupExpr, `sum(requests) AS n, sum(errors) AS e, sum(prompt_tokens) AS p,
			sum(completion_tokens) AS c, sum(total_tokens) AS t, sum(cost_micros) AS m`, "usage_daily", bounds("day", p.Days))
	}
	for _, r := range p.Raw {
		part(groupExpr, `count(*) AS n, sum(error_class <> '') AS e, sum(prompt_tokens) AS p,
			sum(completion_tokens) AS c, sum(total_tokens) AS t, sum(cost_micros) AS m`, "usage", bounds("requested_at", r))
	}
	var b strings.Builder
	if len(parts) == 1 {
		b.WriteString(parts[0])
	} else {
		b.WriteString("SELECT ")
		for _, g := range groups {
			b.WriteString(g + ", ")
		}
		b.WriteString("sum(n), sum(e), sum(p), sum(c), sum(t), sum(m) FROM (")
		b.WriteString(strings.Join(parts, " UNION ALL "))
		b.WriteString(")")
		if len(groups) > 0 {
			b.WriteString(" GROUP BY " + strings.Join(groups, ", "))
		} else {
			// As above: no input rows, no output row (not one of NULLs).
			b.WriteString(" HAVING count(*) > 0")
		}
	}
	if len(groups) > 0 {
		b.WriteString(" ORDER BY " + strings.Join(groups, ", "))
	}

	rows, err := s.reader.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: usage report: %w", err)
	}
	defer rows.Close()
	var out []sluice.UsageRow
	for rows.Next() {
		r := sluice.UsageRow{Keys: make([]string, len(groups))}
		dest := make([]any, 0, len(groups)+6)
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
