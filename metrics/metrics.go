// Package metrics defines Sluice's Prometheus metrics. Collectors are
// registered on a registry passed in by the caller; nothing is global.
package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gateway/sluice"
)

// Metrics holds the gateway's collectors.
type Metrics struct {
	requests       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	ttft           *prometheus.HistogramVec
	tokens         *prometheus.CounterVec
	cost           *prometheus.CounterVec
	commitWait     prometheus.Histogram
	commitTimeouts prometheus.Counter
	ledgerErrors   prometheus.Counter
	rateLimited    *prometheus.CounterVec
	batchSize      prometheus.Histogram

	mu     sync.Mutex
	series map[seriesKey]*series
}

type seriesKey struct {
	endpoint, team, status, class string
}

// series caches the curried children of one label combination so that the
// hot path does no label hashing.
type series struct {
	requests                 prometheus.Counter
	latency, ttft            prometheus.Observer
	prompt, completion, cost prometheus.Counter
}

var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

// New registers Sluice's metrics on reg. queueDepth reports the ledger's
// queue of records waiting to be committed.
func New(reg prometheus.Registerer, queueDepth func() int) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_requests_total", Help: "Data-plane requests by endpoint, team, HTTP status and error class.",
		}, []string{"endpoint", "team", "status", "error_class"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_request_duration_seconds", Help: "Total request latency as seen by Sluice.", Buckets: latencyBuckets,
		}, []string{"endpoint"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_time_to_first_token_seconds", Help: "Time from request arrival to the first response byte sent.", Buckets: latencyBuckets,
		}, []string{"endpoint"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_tokens_total", Help: "Tokens metered, by endpoint, team and kind (prompt, completion).",
		}, []string{"endpoint", "team", "kind"}),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_cost_microdollars_total", Help: "Cost metered in micro-dollars, by endpoint and team.",
		}, []string{"endpoint", "team"}),
		commitWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_ledger_commit_wait_seconds", Help: "Time a response waited for its usage record to be committed.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, 1},
		}),
		commitTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_ledger_commit_timeouts_total", Help: "Responses sent before their record committed because the ledger was too slow (the record stays queued).",
		}),
		ledgerErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_ledger_write_errors_total", Help: "Failed ledger batch writes (each is retried).",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ratelimit_rejections_total", Help: "Requests refused by a rate limit, by limit (scope/rpm or scope/tpm).",
		}, []string{"limit"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_ledger_batch_records", Help: "Usage records per ledger commit (group commit).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
		}),
		series: map[seriesKey]*series{},
	}
	reg.MustRegister(m.requests, m.latency, m.ttft, m.tokens, m.cost, m.commitWait, m.commitTimeouts, m.ledgerErrors, m.rateLimited, m.batchSize,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_ledger_queue_depth", Help: "Usage records waiting to be committed.",
		}, func() float64 { return float64(queueDepth()) }))
	return m
}

// Observe counts one finished request.
func (m *Metrics) Observe(r *sluice.UsageRecord) {
	k := seriesKey{r.Endpoint, r.Team, strconv.Itoa(r.Status), r.ErrorClass}
	m.mu.Lock()
	s := m.series[k]
	if s == nil {
		if len(m.series) > 10000 {
			// Unbounded label values (unknown model names) must not grow memory.
			k.endpoint = "other"
			s = m.series[k]
		}
		if s == nil {
			s = &series{
				requests:   m.requests.WithLabelValues(k.endpoint, k.team, k.status, k.class),
				latency:    m.latency.WithLabelValues(k.endpoint),
				ttft:       m.ttft.WithLabelValues(k.endpoint),
				prompt:     m.tokens.WithLabelValues(k.endpoint, k.team, "prompt"),
				completion: m.tokens.WithLabelValues(k.endpoint, k.team, "completion"),
				cost:       m.cost.WithLabelValues(k.endpoint, k.team),
			}
			m.series[k] = s
		}
	}
	m.mu.Unlock()
	s.requests.Inc()
	s.latency.Observe(r.Latency.Seconds())
	if r.TTFT > 0 {
		s.ttft.Observe(r.TTFT.Seconds())
	}
	if r.PromptTokens > 0 {
		s.prompt.Add(float64(r.PromptTokens))
	}
	if r.CompletionTokens > 0 {
		s.completion.Add(float64(r.CompletionTokens))
	}
	if r.CostMicros > 0 {
		s.cost.Add(float64(r.CostMicros))
	}
}

// CommitWait records how long a response waited for the ledger.
func (m *Metrics) CommitWait(d time.Duration, timedOut bool) {
	m.commitWait.Observe(d.Seconds())
	if timedOut {
		m.commitTimeouts.Inc()
	}
}

// LedgerError counts one failed batch write.
func (m *Metrics) LedgerError(error) { m.ledgerErrors.Inc() }

// RateLimited counts one request refused by limit.
func (m *Metrics) RateLimited(limit string) { m.rateLimited.WithLabelValues(limit).Inc() }

// LedgerBatch records one ledger commit of n records.
func (m *Metrics) LedgerBatch(n int, _ time.Duration) { m.batchSize.Observe(float64(n)) }
