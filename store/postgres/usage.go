package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/internal/daily"
)

const usageColumns = `request_id, requested_at, key_id, team, end_user, endpoint, api, upstream,
	upstream_model, prompt_tokens, completion_tokens, total_tokens, usage_source, cost_micros,
	price_version, status, error_class, latency_us, ttft_us, stream, client_addr,
	client_request_id, usage_context, served_entity, attempts, attempt_log`

// insertUsageSQL inserts a whole batch in one statement: each column
// arrives as an array and unnest turns the arrays back into rows.
const insertUsageSQL = `INSERT INTO usage (` + usageColumns + `)
	SELECT * FROM unnest(
		$1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
		$8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::bigint[],
		$15::text[], $16::integer[], $17::text[], $18::bigint[], $19::bigint[], $20::boolean[], $21::text[],
		$22::text[], $23::text[], $24::text[], $25::integer[], $26::text[])
	ON CONFLICT (request_id) DO NOTHING`

// addDailySQL adds the records of the CTE ins to the daily rollup.
const addDailySQL = `INSERT INTO usage_daily AS d
	SELECT (requested_at AT TIME ZONE 'UTC')::date,
		team, endpoint, key_id, end_user, upstream_model, upstream,
		count(*), count(*) FILTER (WHERE error_class <> ''), sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(cost_micros)
	FROM ins GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7
	ON CONFLICT (day, team, endpoint, key_id, end_user, upstream_model, upstream) DO UPDATE SET
		requests = d.requests + excluded.requests,
		errors = d.errors + excluded.errors,
		prompt_tokens = d.prompt_tokens + excluded.prompt_tokens,
		completion_tokens = d.completion_tokens + excluded.completion_tokens,
		total_tokens = d.total_tokens + excluded.total_tokens,
		cost_micros = d.cost_micros + excluded.cost_micros`

// backfillDailySQL builds the daily rollup from the ledger, as migration
// 020 does (a test keeps the two identical).
const backfillDailySQL = `INSERT INTO usage_daily
	SELECT (requested_at AT TIME ZONE 'UTC')::date,
		team, endpoint, key_id, end_user, upstream_model, upstream,
		count(*), count(*) FILTER (WHERE error_class <> ''), sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(cost_micros)
	FROM usage GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7;`

// usageArrays holds a batch column by column.
type usageArrays struct {
	requestID, keyID, team, user, endpoint, api, upstream, model, source, priceVersion, errorClass, clientAddr []string
	clientRequestID, usageContext, servedEntity, attemptLog                                                    []string
	at                                                                                                         []time.Time
	prompt, completion, total, cost, latency, ttft                                                             []int64
	status, attempts                                                                                           []int32
	stream                                                                                                     []bool
}

func (a *usageArrays) add(r *sluice.UsageRecord) {
	a.requestID = append(a.requestID, cleanText(r.RequestID))
	a.at = append(a.at, r.Time)
	a.keyID = append(a.keyID, cleanText(r.KeyID))
	a.team = append(a.team, cleanText(r.Team))
	a.user = append(a.user, cleanText(r.User))
	a.endpoint = append(a.endpoint, cleanText(r.Endpoint))
	a.api = append(a.api, cleanText(string(r.API)))
	a.upstream = append(a.upstream, cleanText(r.Upstream))
	a.model = append(a.model, cleanText(r.UpstreamModel))
	a.prompt = append(a.prompt, r.PromptTokens)
	a.completion = append(a.completion, r.CompletionTokens)
	a.total = append(a.total, r.TotalTokens)
	a.source = append(a.source, cleanText(string(r.UsageSource)))
	a.cost = append(a.cost, r.CostMicros)
	a.priceVersion = append(a.priceVersion, cleanText(r.PriceVersion))
	a.status = append(a.status, int32(r.Status))
	a.errorClass = append(a.errorClass, cleanText(r.ErrorClass))
	a.latency = append(a.latency, r.Latency.Microseconds())
	a.ttft = append(a.ttft, r.TTFT.Microseconds())
	a.stream = append(a.stream, r.Stream)
	a.clientAddr = append(a.clientAddr, cleanText(r.ClientAddr))
	a.clientRequestID = append(a.clientRequestID, cleanText(r.ClientRequestID))
	a.usageContext = append(a.usageContext, cleanText(r.UsageContext))
	a.servedEntity = append(a.servedEntity, cleanText(r.ServedEntity))
	a.attempts = append(a.attempts, int32(r.Attempts))
	a.attemptLog = append(a.attemptLog, cleanText(r.AttemptLog))
}

// args returns the batch as insertUsageSQL's arguments.
func (a *usageArrays) args() []any {
	return []any{a.requestID, a.at, a.keyID, a.team, a.user, a.endpoint, a.api,
		a.upstream, a.model, a.prompt, a.completion, a.total, a.source, a.cost,
		a.priceVersion, a.status, a.errorClass, a.latency, a.ttft, a.stream, a.clientAddr,
		a.clientRequestID, a.usageContext, a.servedEntity, a.attempts, a.attemptLog}
}

// InsertUsage writes recs in one transaction: all or none. The records
// are inserted with one statement, which also takes the reservations of
// the records it inserted; their cost is then settled against their
// budgets (see sluice.BudgetStore) before the transaction commits. A record whose request id is already stored (or appears
// earlier in recs) is skipped. Times and durations are kept to the
// microsecond; text that PostgreSQL cannot hold (NUL, invalid UTF-8) has
// the offending bytes replaced by U+FFFD.
func (s *Store) InsertUsage(ctx context.Context, recs []sluice.UsageRecord) error {
	if len(recs) == 0 {
		return nil
	}
	// The first record with a given id wins, as it would row by row;
	// deduplicating here keeps that independent of the order in which
	// the server happens to process unnest's rows.
	seen := make(map[string]struct{}, len(recs))
	var a usageArrays
	for i := range recs {
		if _, dup := seen[recs[i].RequestID]; dup {
			continue
		}
		seen[recs[i].RequestID] = struct{}{}
		a.add(&recs[i])
	}
	args := a.args()
	err := s.inTx(ctx, func(tx pgx.Tx) error { return insertAndSettle(ctx, tx, args) })
	if err != nil {
		return fmt.Errorf("postgres: insert %d usage records: %w", len(recs), err)
	}
	return nil
}

// Usage returns the record with the given request id, or sluice.ErrNotFound.
func (s *Store) Usage(ctx context.Context, requestID string) (sluice.UsageRecord, error) {
	var (
		r             sluice.UsageRecord
		latency, ttft int64
		api, source   string
		status        int32
		attempts      int32
	)
	err := s.pool.QueryRow(ctx, `SELECT `+usageColumns+` FROM usage WHERE request_id = $1`, requestID).Scan(
		&r.RequestID, &r.Time, &r.KeyID, &r.Team, &r.User, &r.Endpoint, &api, &r.Upstream,
		&r.UpstreamModel, &r.PromptTokens, &r.CompletionTokens, &r.TotalTokens, &source, &r.CostMicros,
		&r.PriceVersion, &status, &r.ErrorClass, &latency, &ttft, &r.Stream, &r.ClientAddr,
		&r.ClientRequestID, &r.UsageContext, &r.ServedEntity, &attempts, &r.AttemptLog,
	)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("postgres: usage %q: %w", requestID, sluice.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("postgres: usage %q: %w", requestID, err)
	}
	r.Time = r.Time.UTC()
	r.API = sluice.API(api)
	r.UsageSource = sluice.UsageSource(source)
	r.Status = int(status)
	r.Attempts = int(attempts)
	r.Latency = time.Duration(latency) * time.Microsecond
	r.TTFT = time.Duration(ttft) * time.Microsecond
	return r, nil
}

// groupExpr maps each grouping to the SQL expression that yields its key
// from a raw record. A day is the UTC calendar date.
var groupExpr = map[sluice.UsageGroup]string{
	sluice.GroupTeam:     "team",
	sluice.GroupEndpoint: "endpoint",
	sluice.GroupKey:      "key_id",
	sluice.GroupUser:     "end_user",
	sluice.GroupModel:    "upstream_model",
	sluice.GroupUpstream: "upstream",
	sluice.GroupDay:      `to_char(requested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') COLLATE "C"`,
}

// dailyGroupExpr is groupExpr for a row of the daily rollup.
var dailyGroupExpr = map[sluice.UsageGroup]string{
	sluice.GroupTeam:     "team",
	sluice.GroupEndpoint: "endpoint",
	sluice.GroupKey:      "key_id",
	sluice.GroupUser:     "end_user",
	sluice.GroupModel:    "upstream_model",
	sluice.GroupUpstream: "upstream",
	sluice.GroupDay:      `to_char(day::timestamp, 'YYYY-MM-DD') COLLATE "C"`,
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
// sum(bigint) is numeric, so it cannot overflow silently; the casts back
// to bigint fail loudly if a total does not fit.
func (s *Store) report(ctx context.Context, q sluice.UsageQuery, p daily.Plan) ([]sluice.UsageRow, error) {
	for _, g := range q.GroupBy {
		if _, ok := groupExpr[g]; !ok {
			return nil, fmt.Errorf("postgres: usage report: unknown group %q", g)
		}
	}
	var (
		parts []string
		args  []any
	)
	ordinals := make([]string, len(q.GroupBy))
	for i := range q.GroupBy {
		ordinals[i] = fmt.Sprint(i + 1)
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
		if len(ordinals) > 0 {
			b.WriteString(" GROUP BY " + strings.Join(ordinals, ", "))
		} else {
			// Without GROUP BY an aggregate yields one row even for no input.
			b.WriteString(" HAVING count(*) > 0")
		}
		parts = append(parts, b.String())
	}
	bounds := func(col, typ string, r daily.Range, conv func(int64) time.Time) string {
		var w []string
		if r.HasFrom {
			args = append(args, conv(r.From))
			w = append(w, fmt.Sprintf("%s >= $%d::%s", col, len(args), typ))
		}
		if r.HasTo {
			args = append(args, conv(r.To))
			w = append(w, fmt.Sprintf("%s < $%d::%s", col, len(args), typ))
		}
		return strings.Join(w, " AND ")
	}
	fromMicros := func(us int64) time.Time { return time.UnixMicro(us).UTC() }
	if p.Daily {
		part(dailyGroupExpr, `sum(requests)::bigint AS n, sum(errors)::bigint AS e, sum(prompt_tokens)::bigint AS p,
			sum(completion_tokens)::bigint AS c, sum(total_tokens)::bigint AS t, sum(cost_micros)::bigint AS m`,
			"usage_daily", bounds("day", "date", p.Days, daily.DayStart))
	}
	for _, r := range p.Raw {
		part(groupExpr, `count(*) AS n, count(*) FILTER (WHERE error_class <> '') AS e, sum(prompt_tokens)::bigint AS p,
			sum(completion_tokens)::bigint AS c, sum(total_tokens)::bigint AS t, sum(cost_micros)::bigint AS m`,
			"usage", bounds("requested_at", "timestamptz", r, fromMicros))
	}
	var b strings.Builder
	if len(parts) == 1 {
		b.WriteString(parts[0])
	} else {
		b.WriteString("SELECT ")
		for i := range q.GroupBy {
			fmt.Fprintf(&b, "g%d, ", i)
		}
		b.WriteString(`sum(n)::bigint, sum(e)::bigint, sum(p)::bigint, sum(c)::bigint, sum(t)::bigint, sum(m)::bigint FROM (`)
		b.WriteString(strings.Join(parts, " UNION ALL "))
		b.WriteString(") AS parts")
		if len(ordinals) > 0 {
			b.WriteString(" GROUP BY " + strings.Join(ordinals, ", "))
		} else {
			// No input rows, no output row (not one of NULLs).
			b.WriteString(" HAVING count(*) > 0")
		}
	}
	if len(ordinals) > 0 {
		b.WriteString(" ORDER BY " + strings.Join(ordinals, ", "))
	}

	rows, _ := s.pool.Query(ctx, b.String(), args...)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (sluice.UsageRow, error) {
		r := sluice.UsageRow{Keys: make([]string, len(q.GroupBy))}
		dest := make([]any, 0, len(q.GroupBy)+6)
		for i := range r.Keys {
			dest = append(dest, &r.Keys[i])
		}
		dest = append(dest, &r.Requests, &r.Errors, &r.PromptTokens, &r.CompletionTokens, &r.TotalTokens, &r.CostMicros)
		return r, row.Scan(dest...)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: usage report: %w", err)
	}
	return out, nil
}
