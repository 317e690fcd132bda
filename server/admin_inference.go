package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/report"
)

// inferenceRow is one inference-table row in Databricks' column names.
type inferenceRow struct {
	RequestTime         time.Time `json:"request_time"`
	DatabricksRequestID string    `json:"databricks_request_id"`
	ClientRequestID     string    `json:"client_request_id,omitempty"`
	Endpoint            string    `json:"endpoint"`
	ServedEntity        string    `json:"served_entity_name,omitempty"`
	StatusCode          int       `json:"status_code"`
	ExecutionDurationMs int64     `json:"execution_duration_ms"`
	Request             string    `json:"request"`
	Response            string    `json:"response"`
	SamplingFraction    float64   `json:"sampling_fraction"`
	Requester           string    `json:"requester"`
}

// adminInferenceLog lists an endpoint's inference-table rows, newest
// first: GET /admin/v1/inference-log?endpoint=E[&from=D][&to=D][&limit=N].
func (s *Server) adminInferenceLog(r *http.Request, _ *sluice.Key) (int, any, error) {
	q := r.URL.Query()
	ep := q.Get("endpoint")
	if ep == "" {
		return 0, nil, apierr.BadRequest("endpoint", "missing_required_parameter", "Name the endpoint: ?endpoint=NAME.")
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return 0, nil, apierr.BadRequest("limit", "invalid_value", "limit must be between 1 and 10000")
		}
		limit = n
	}
	var from, to time.Time
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &from}, {"to", &to}} {
		if v := q.Get(p.name); v != "" {
			t, err := report.ParseTime(v)
			if err != nil {
				return 0, nil, apierr.BadRequest(p.name, "invalid_value", "%v", err)
			}
			*p.dst = t
		}
	}
	rows, err := s.store.InferenceLog(r.Context(), ep, from, to, limit)
	if err != nil {
		return 0, nil, err
	}
	out := make([]inferenceRow, len(rows))
	for i, x := range rows {
		out[i] = inferenceRow{x.RequestTime, x.RequestID, x.ClientRequestID, x.Endpoint, x.ServedEntity, x.StatusCode,
			x.ExecutionDurationMs, x.Request, x.Response, x.SamplingFraction, x.Requester}
	}
	return 200, map[string]any{"rows": out}, nil
}
