package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/sluice-gateway/sluice"
)

var _ sluice.InferenceLogStore = (*Store)(nil)

const inferenceColumns = `request_time, databricks_request_id, client_request_id, endpoint, served_entity,
	status_code, execution_duration_ms, request, response, sampling_fraction, requester`

// InsertInferenceLog writes the rows in one transaction: all or none. A
// row whose RequestID is already stored (or appears earlier in rows) is
// skipped. RequestTime is kept to the microsecond.
func (s *Store) InsertInferenceLog(ctx context.Context, rows []sluice.InferenceLogRecord) error {
	if len(rows) == 0 {
		return nil
	}
	return s.write(ctx, len(rows), func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO inference_log (`+inferenceColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (databricks_request_id) DO NOTHING`)
		if err != nil {
			return fmt.Errorf("sqlite: insert inference log: %w", err)
		}
		defer stmt.Close()
		for i := range rows {
			r := &rows[i]
			if _, err := stmt.ExecContext(ctx, micros(r.RequestTime), r.RequestID, r.ClientRequestID, r.Endpoint,
				r.ServedEntity, r.StatusCode, r.ExecutionDurationMs, r.Request, r.Response, r.SamplingFraction,
				r.Requester); err != nil {
				return fmt.Errorf("sqlite: insert inference log %q: %w", r.RequestID, err)
			}
		}
		return nil
	})
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
	rows, err := s.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: inference log of %q: %w", endpoint, err)
	}
	defer rows.Close()
	var out []sluice.InferenceLogRecord
	for rows.Next() {
		var (
			r  sluice.InferenceLogRecord
			at int64
		)
		if err := rows.Scan(&at, &r.RequestID, &r.ClientRequestID, &r.Endpoint, &r.ServedEntity, &r.StatusCode,
			&r.ExecutionDurationMs, &r.Request, &r.Response, &r.SamplingFraction, &r.Requester); err != nil {
			return nil, fmt.Errorf("sqlite: inference log of %q: %w", endpoint, err)
		}
		r.RequestTime = fromMicros(at)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: inference log of %q: %w", endpoint, err)
	}
	return out, nil
}

// inferenceLogQuery is InferenceLog's statement and its arguments. The
// order is that of the inference_log_endpoint index, read backwards.
func inferenceLogQuery(endpoint string, from, to time.Time, limit int) (string, []any) {
	conds, args := timeRange("request_time", from, to)
	conds = append([]string{"endpoint = ?"}, conds...)
	args = append(append([]any{endpoint}, args...), limit)
	return `SELECT ` + inferenceColumns + ` FROM inference_log` + where(conds) + `
		ORDER BY request_time DESC, databricks_request_id DESC LIMIT ?`, args
}
