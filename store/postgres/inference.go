package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sluice-gateway/sluice"
)

var _ sluice.InferenceLogStore = (*Store)(nil)

const inferenceColumns = `request_time, databricks_request_id, client_request_id, endpoint, served_entity,
	status_code, execution_duration_ms, request, response, sampling_fraction, requester`

// InsertInferenceLog writes the rows with one statement, so all or none.
// A row whose RequestID is already stored (or appears earlier in rows) is
// skipped. RequestTime is kept to the microsecond; text PostgreSQL cannot
// hold (NUL, invalid UTF-8) has the offending bytes replaced by U+FFFD.
func (s *Store) InsertInferenceLog(ctx context.Context, rows []sluice.InferenceLogRecord) error {
	if len(rows) == 0 {
		return nil
	}
	var (
		seen                                                                 = make(map[string]bool, len(rows))
		at                                                                   []time.Time
		ids, clientIDs, endpoints, entities, requests, responses, requesters []string
		status                                                               []int32
		durations                                                            []int64
		fractions                                                            []float64
	)
	for i := range rows {
		r := &rows[i]
		id := cleanText(r.RequestID)
		if seen[id] {
			continue
		}
		seen[id] = true
		at = append(at, r.RequestTime)
		ids = append(ids, id)
		clientIDs = append(clientIDs, cleanText(r.ClientRequestID))
		endpoints = append(endpoints, cleanText(r.Endpoint))
		entities = append(entities, cleanText(r.ServedEntity))
		status = append(status, int32(r.StatusCode))
		durations = append(durations, r.ExecutionDurationMs)
		requests = append(requests, cleanText(r.Request))
		responses = append(responses, cleanText(r.Response))
		fractions = append(fractions, r.SamplingFraction)
		requesters = append(requesters, cleanText(r.Requester))
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO inference_log (`+inferenceColumns+`)
		SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
			$6::integer[], $7::bigint[], $8::text[], $9::text[], $10::float8[], $11::text[])
		ON CONFLICT (databricks_request_id) DO NOTHING`,
		at, ids, clientIDs, endpoints, entities, status, durations, requests, responses, fractions, requesters)
	if err != nil {
		return fmt.Errorf("postgres: insert %d inference log rows: %w", len(rows), err)
	}
	return nil
}

// InferenceLog returns up to limit rows of endpoint with RequestTime in
// [from, to) (a zero bound is open), newest first; rows of the same
// instant come in descending request id order. A limit below 1 returns
// no rows.
func (s *Store) InferenceLog(ctx context.Context, endpoint string, from, to time.Time, limit int) ([]sluice.InferenceLogRecord, error) {
	if limit < 1 {
		return nil, nil
	}
	q, args := inferenceLogQuery(endpoint, from, to, limit)
	rows, _ := s.pool.Query(ctx, q, args...)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (sluice.InferenceLogRecord, error) {
		var (
			r      sluice.InferenceLogRecord
			status int32
		)
		err := row.Scan(&r.RequestTime, &r.RequestID, &r.ClientRequestID, &r.Endpoint, &r.ServedEntity, &status,
			&r.ExecutionDurationMs, &r.Request, &r.Response, &r.SamplingFraction, &r.Requester)
		r.RequestTime = r.RequestTime.UTC()
		r.StatusCode = int(status)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: inference log of %q: %w", endpoint, err)
	}
	return out, nil
}

// inferenceLogQuery is InferenceLog's statement and its arguments. The
// order is that of the inference_log_endpoint index, read backwards.
func inferenceLogQuery(endpoint string, from, to time.Time, limit int) (string, []any) {
	conds, args := timeRange("request_time", from, to, 2)
	conds = append([]string{"endpoint = $1"}, conds...)
	return `SELECT ` + inferenceColumns + ` FROM inference_log` + where(conds) + `
		ORDER BY request_time DESC, databricks_request_id DESC LIMIT $2`, append([]any{cleanText(endpoint), limit}, args...)
}
