package server

import (
	"errors"
	"net/http"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
)

// requestRecord is one usage record as the admin API shows it.
type requestRecord struct {
	RequestID        string    `json:"request_id"`
	Time             time.Time `json:"time"`
	KeyID            string    `json:"key_id"`
	Team             string    `json:"team"`
	User             string    `json:"user,omitempty"`
	Endpoint         string    `json:"endpoint"`
	API              string    `json:"api"`
	Upstream         string    `json:"upstream,omitempty"`
	UpstreamModel    string    `json:"upstream_model,omitempty"`
	ServedEntity     string    `json:"served_entity,omitempty"`
	Attempts         int       `json:"attempts"`
	AttemptLog       string    `json:"attempt_log,omitempty"`
	PromptTokens     int64     `json:"prompt_tokens"`
	CompletionTokens int64     `json:"completion_tokens"`
	TotalTokens      int64     `json:"total_tokens"`
	UsageSource      string    `json:"usage_source"`
	CostMicros       int64     `json:"cost_micros"`
	PriceVersion     string    `json:"price_version,omitempty"`
	Status           int       `json:"status"`
	ErrorClass       string    `json:"error_class,omitempty"`
	LatencyMs        float64   `json:"latency_ms"`
	TTFTMs           float64   `json:"ttft_ms"`
	Stream           bool      `json:"stream"`
	ClientAddr       string    `json:"client_addr,omitempty"`
	ClientRequestID  string    `json:"client_request_id,omitempty"`
	UsageContext     any       `json:"usage_context,omitempty"`
}

// adminRequest shows one request's usage record: GET /admin/v1/requests/{id}
// with the id from the response's X-Request-Id.
func (s *Server) adminRequest(r *http.Request, _ *sluice.Key) (int, any, error) {
	id := r.PathValue("id")
	rec, err := s.store.Usage(r.Context(), id)
	if errors.Is(err, sluice.ErrNotFound) {
		return 0, nil, apierr.NotFound("id", "request_not_found", "No usage record has the request id '%s'.", id)
	}
	if err != nil {
		return 0, nil, err
	}
	out := requestRecord{rec.RequestID, rec.Time, rec.KeyID, rec.Team, rec.User, rec.Endpoint, string(rec.API), rec.Upstream,
		rec.UpstreamModel, rec.ServedEntity, rec.Attempts, rec.AttemptLog, rec.PromptTokens, rec.CompletionTokens, rec.TotalTokens,
		string(rec.UsageSource), rec.CostMicros, rec.PriceVersion, rec.Status, rec.ErrorClass,
		float64(rec.Latency) / float64(time.Millisecond), float64(rec.TTFT) / float64(time.Millisecond), rec.Stream, rec.ClientAddr,
		rec.ClientRequestID, nil}
	if rec.UsageContext != "" {
		out.UsageContext = rawJSON(rec.UsageContext)
	}
	return 200, out, nil
}

// rawJSON is JSON text kept as it is when encoded.
type rawJSON string

func (j rawJSON) MarshalJSON() ([]byte, error) { return []byte(j), nil }
