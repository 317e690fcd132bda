package aigateway

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/classify"
	"github.com/sluice-gateway/sluice/proxy"
)

// LoggerOptions configure an InferenceLogger. Zero values get defaults.
type LoggerOptions struct {
	// Classifier finds the values masked in logged payloads; nil uses
	// classify's default detectors.
	Classifier *classify.Classifier
	// Random draws the sampling decision: a float in [0, 1), safe for
	// concurrent use. nil uses math/rand/v2.
	Random func() float64
	Logger *slog.Logger
	// Flush is how often queued rows are written when fewer than a batch
	// are waiting. Default 100ms.
	Flush time.Duration
	// Queue bounds the payloads waiting to be written (default 4096), and
	// QueueBytes their total size (default 64 MiB). Past either, Log
	// drops the payload and counts it in Dropped.
	Queue      int
	QueueBytes int64
}

// Batch bounds: a write takes at most batchRows rows or, past
// batchBytes of payload, the rows gathered so far.
const (
	batchRows  = 512
	batchBytes = 8 << 20
	// attempts is how many times a batch is written before it is given up.
	attempts = 3
)

// InferenceLogger writes the payloads of endpoints with an inference table
// (InferenceTableConfig) to the inference log, in Databricks' columns.
// Log is the proxy's Options.Payload hook and never blocks; one goroutine
// (Run) masks the payloads and writes them in batches. Logging is best
// effort: a payload that finds the queue full is dropped and counted
// (Dropped), a batch the store refuses attempts times is dropped and
// counted (Failed), and both are logged.
type InferenceLogger struct {
	st     sluice.InferenceLogStore
	c      *classify.Classifier
	random func() float64
	log    *slog.Logger
	flush  time.Duration
	max    int64

	queue   chan entry
	queued  atomic.Int64 // bytes of payload in queue
	closing chan struct{}
	done    chan struct{}

	mu      sync.RWMutex // Log holds it shared while it queues
	closed  bool
	running bool
	left    []sluice.InferenceLogRecord // rows Run left when its ctx ended

	dropped, failed atomic.Int64
}

// entry is one payload waiting to be masked and written.
type entry struct {
	rec       sluice.UsageRecord
	endpoint  string
	fraction  float64
	req, resp []byte // nil when over proxy.MaxPayloadBytes
}

func (e *entry) size() int64 { return int64(len(e.req) + len(e.resp)) }

// NewInferenceLogger returns a logger writing to st. Start its writer with
// Run and stop it with Close.
func NewInferenceLogger(st sluice.InferenceLogStore, o LoggerOptions) *InferenceLogger {
	l := &InferenceLogger{st: st, c: o.Classifier, random: o.Random, log: o.Logger, flush: o.Flush, max: o.QueueBytes,
		closing: make(chan struct{}), done: make(chan struct{})}
	if l.c == nil {
		l.c = defaultClassifier()
	}
	if l.random == nil {
		l.random = rand.Float64
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.flush <= 0 {
		l.flush = 100 * time.Millisecond
	}
	if l.max <= 0 {
		l.max = 64 << 20
	}
	n := o.Queue
	if n <= 0 {
		n = 4096
	}
	l.queue = make(chan entry, n)
	return l
}

// Log queues p for the inference log if its endpoint logs payloads and
// the sampling draw keeps it. It never blocks. It keeps p.Request and
// p.Response, which must not be changed afterwards, and copies p.Record.
//
// The sampling fraction is the endpoint's
// InferenceTableConfig.SamplingFraction (0 means 1). An endpoint whose
// InferenceTableConfig is present but not enabled is not logged. A payload
// over proxy.MaxPayloadBytes is not logged: its row has an empty request
// or response, as Databricks writes it.
func (l *InferenceLogger) Log(p *proxy.Payload) {
	if p == nil || p.Record == nil {
		return
	}
	fraction := 1.0
	endpoint := p.Record.Endpoint
	if ep := p.Endpoint; ep != nil {
		if endpoint == "" {
			endpoint = ep.Name
		}
		if ep.Gateway != nil && ep.Gateway.InferenceTableConfig != nil {
			t := ep.Gateway.InferenceTableConfig
			if !t.Enabled {
				return
			}
			if t.SamplingFraction > 0 && t.SamplingFraction < 1 {
				fraction = t.SamplingFraction
			}
		}
	}
	if fraction < 1 && l.random() >= fraction {
		return
	}
	e := entry{rec: *p.Record, endpoint: endpoint, fraction: fraction}
	if len(p.Request) <= proxy.MaxPayloadBytes {
		e.req = p.Request
	}
	if len(p.Response) <= proxy.MaxPayloadBytes {
		e.resp = p.Response
	}
	size := e.size()
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.dropped.Add(1)
		return
	}
	if l.queued.Add(size) > l.max {
		l.queued.Add(-size)
		l.dropped.Add(1)
		return
	}
	select {
	case l.queue <- e:
	default:
		l.queued.Add(-size)
		l.dropped.Add(1)
	}
}

// Dropped is how many payloads were not queued: the queue was full, or
// the logger closed.
func (l *InferenceLogger) Dropped() int64 { return l.dropped.Load() }

// Failed is how many rows were given up after the store refused them.
func (l *InferenceLogger) Failed() int64 { return l.failed.Load() }

// Run masks queued payloads and writes them in batches until Close is
// called (then it returns nil and Close writes what is left) or ctx ends
// (then it returns ctx's error; Close still writes what is left). It
// runs once per logger.
func (l *InferenceLogger) Run(ctx context.Context) error {
	l.mu.Lock()
	if l.running || l.closed {
		l.mu.Unlock()
		return errors.New("aigateway: inference logger already running or closed")
	}
	l.running = true
	l.mu.Unlock()
	defer close(l.done)

	tick := time.NewTicker(l.flush)
	defer tick.Stop()
	var (
		batch  []sluice.InferenceLogRecord
		bytes  int
		failed int // failed writes of batch
	)
	write := func() {
		if err := l.st.InsertInferenceLog(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return // Close writes the batch
			}
			failed++
			if failed < attempts {
				l.log.Warn("inference log rows not written; retrying", "rows", len(batch), "err", err)
				return
			}
			l.failed.Add(int64(len(batch)))
			l.log.Error("inference log rows dropped", "rows", len(batch), "attempts", failed, "err", err)
		}
		batch, bytes, failed = nil, 0, 0
	}
	for {
		// A full batch takes nothing more until it is written.
		in := l.queue
		if len(batch) >= batchRows || bytes >= batchBytes {
			in = nil
		}
		select {
		case e := <-in:
			l.queued.Add(-e.size())
			row := l.row(&e)
			batch = append(batch, row)
			bytes += len(row.Request) + len(row.Response)
			if (len(batch) >= batchRows || bytes >= batchBytes) && failed == 0 {
				write()
			}
		case <-tick.C:
			if len(batch) > 0 {
				write()
			}
		case <-l.closing:
			l.keep(batch)
			return nil
		case <-ctx.Done():
			l.keep(batch)
			return ctx.Err()
		}
	}
}

// keep hands rows Run did not write to Close.
func (l *InferenceLogger) keep(rows []sluice.InferenceLogRecord) {
	l.mu.Lock()
	l.left = append(l.left, rows...)
	l.mu.Unlock()
}

// Close stops Log from queueing, waits for Run to return, and writes
// everything still queued, or gives up when ctx ends. It returns the
// store's error if a write failed.
func (l *InferenceLogger) Close(ctx context.Context) error {
	l.mu.Lock()
	first := !l.closed
	l.closed = true
	running := l.running
	l.mu.Unlock()
	if first {
		close(l.closing)
	}
	if running {
		select {
		case <-l.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	l.mu.Lock()
	rows := l.left
	l.left = nil
	l.mu.Unlock()
	var errs []error
	for {
		drained := false
		for len(rows) < batchRows && !drained {
			select {
			case e := <-l.queue:
				l.queued.Add(-e.size())
				rows = append(rows, l.row(&e))
			default:
				drained = true
			}
		}
		if len(rows) > 0 {
			if err := l.st.InsertInferenceLog(ctx, rows); err != nil {
				l.failed.Add(int64(len(rows)))
				l.log.Error("inference log rows dropped at close", "rows", len(rows), "err", err)
				errs = append(errs, err)
				if ctx.Err() != nil {
					return errors.Join(errs...)
				}
			}
			rows = nil
		}
		if drained {
			return errors.Join(errs...)
		}
	}
}

// row masks e's payloads and fills in the inference table's columns.
func (l *InferenceLogger) row(e *entry) sluice.InferenceLogRecord {
	r := &e.rec
	requester := r.KeyID
	if r.User != "" {
		requester += "/" + r.User
	}
	return sluice.InferenceLogRecord{
		RequestTime:         r.Time.UTC(),
		RequestID:           r.RequestID,
		ClientRequestID:     r.ClientRequestID,
		Endpoint:            e.endpoint,
		ServedEntity:        r.ServedEntity,
		StatusCode:          r.Status,
		ExecutionDurationMs: r.Latency.Milliseconds(),
		Request:             string(maskText(l.c, e.req, requestShape)),
		Response:            string(maskText(l.c, e.resp, responseShape)),
		SamplingFraction:    e.fraction,
		Requester:           requester,
	}
}
