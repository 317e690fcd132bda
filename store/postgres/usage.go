package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sluice-gateway/sluice"
)

const usageColumns = `request_id, requested_at, key_id, team, end_user, endpoint, api, upstream,
	upstream_model, prompt_tokens, completion_tokens, total_tokens, usage_source, cost_micros,
	price_version, status, error_class, latency_us, ttft_us, stream, client_addr`

// insertUsageSQL inserts a whole batch in one statement: each column
// arrives as an array and unnest turns the arrays back into rows.
const insertUsageSQL = `INSERT INTO usage (` + usageColumns + `)
	SELECT * FROM unnest(
		$1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
		$8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::bigint[],
		$15::text[], $16::integer[], $17::text[], $18::bigint[], $19::bigint[], $20::boolean[], $21::text[])
	ON CONFLICT (request_id) DO NOTHING`

// usageColumnsArrays holds a batch column by column.
type usageArrays struct {
	requestID, keyID, team, user, endpoint, api, upstream, model, source, priceVersion, errorClass, clientAddr []string
	at                                                                                                         []time.Time
	prompt, completion, total, cost, latency, ttft                                                             []int64
	status                                                                                                     []int32
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
	args := []any{a.requestID, a.at, a.keyID, a.team, a.user, a.endpoint, a.api,
		a.upstream, a.model, a.prompt, a.completion, a.total, a.source, a.cost,
		a.priceVersion, a.status, a.errorClass, a.latency, a.ttft, a.stream, a.clientAddr}
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
	)
	err := s.pool.QueryRow(ctx, `SELECT `+usageColumns+` FROM usage WHERE request_id = $1`, requestID).Scan(
		&r.RequestID, &r.Time, &r.KeyID, &r.Team, &r.User, &r.Endpoint, &api, &r.Upstream,
		&r.UpstreamModel, &r.PromptTokens, &r.CompletionTokens, &r.TotalTokens, &source, &r.CostMicros,
		&r.PriceVersion, &status, &r.ErrorClass, &latency, &ttft, &r.Stream, &r.ClientAddr,
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
	r.Latency = time.Duration(latency) * time.Microsecond
	r.TTFT = time.Duration(ttft) * time.Microsecond
	return r, nil
}

// groupExpr maps each grouping to the SQL expression that yields its key.
// A day is the UTC calendar date.
var groupExpr = map[sluice.UsageGroup]string{
	sluice.GroupTeam:     "team",
	sluice.GroupEndpoint: "endpoint",
	sluice.GroupKey:      "key_id",
	sluice.GroupUser:     "end_user",
	sluice.GroupModel:    "upstream_model",
	sluice.GroupUpstream: "upstream",
	sluice.GroupDay:      `to_char(requested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') COLLATE "C"`,
}

// UsageReport sums the records in [q.From, q.To) by q.GroupBy, ordered by
// the group keys (byte order). Groups without records are not returned.
func (s *Store) UsageReport(ctx context.Context, q sluice.UsageQuery) ([]sluice.UsageRow, error) {
	var sel, where []string
	var args []any
	for _, g := range q.GroupBy {
		e, ok := groupExpr[g]
		if !ok {
			return nil, fmt.Errorf("postgres: usage report: unknown group %q", g)
		}
		sel = append(sel, e)
	}
	if !q.From.IsZero() {
		args = append(args, q.From)
		where = append(where, fmt.Sprintf("requested_at >= $%d", len(args)))
	}
	if !q.To.IsZero() {
		args = append(args, q.To)
		where = append(where, fmt.Sprintf("requested_at < $%d", len(args)))
	}
	var b strings.Builder
	b.WriteString("SELECT ")
	for _, e := range sel {
		b.WriteString(e + ", ")
	}
	// sum(bigint) is numeric, so it cannot overflow silently; the cast
	// back to bigint fails loudly if a total does not fit.
	b.WriteString(`count(*), count(*) FILTER (WHERE error_class <> ''), sum(prompt_tokens)::bigint,
		sum(completion_tokens)::bigint, sum(total_tokens)::bigint, sum(cost_micros)::bigint FROM usage`)
	if len(where) > 0 {
		b.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
	if len(sel) > 0 {
		var ord []string
		for i := range sel {
			ord = append(ord, fmt.Sprint(i+1))
		}
		b.WriteString(" GROUP BY " + strings.Join(ord, ", "))
		b.WriteString(" ORDER BY " + strings.Join(ord, ", "))
	} else {
		// Without GROUP BY an aggregate yields one row even for no input.
		b.WriteString(" HAVING count(*) > 0")
	}

	rows, _ := s.pool.Query(ctx, b.String(), args...)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (sluice.UsageRow, error) {
		r := sluice.UsageRow{Keys: make([]string, len(sel))}
		dest := make([]any, 0, len(sel)+6)
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
