// Package ledger commits usage records to a sluice.UsageStore with group
// commit, so that a request's record is durable before the client sees the
// end of its response without paying one transaction per request.
//
// One goroutine writes. When it is idle, a record is committed at once, on
// its own: there is no linger timer. Records that arrive while a commit is
// running queue up and form the next batch (up to MaxBatch records), so
// batches grow with load and the wait stays near the duration of one
// commit. A batch that fails is retried, with backoff, until it is written;
// it is never dropped, and its waiters keep waiting.
//
// Writing a record also settles its request's budget reservation, in the
// store's insert transaction (see sluice.BudgetStore): until the record is
// committed, the request's worst-case cost stays held against its budgets.
//
//	w := ledger.New(st, ledger.Options{Logger: log})
//	defer w.Close(ctx)
//	...
//	if err := w.Commit(r.Context(), rec); err != nil { ... } // nil: rec is durable
package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice"
)

var (
	// ErrClosed is returned for records offered after Close was called.
	ErrClosed = errors.New("ledger: writer closed")
	// ErrAbandoned is returned to the waiters of records that were still
	// unwritten when Close gave up because its context ended.
	ErrAbandoned = errors.New("ledger: writer closed before the record was written")
	// ErrNoRequestID is returned for a record without a request id, which
	// no store accepts and which would otherwise block the queue forever.
	ErrNoRequestID = errors.New("ledger: record has no request id")
)

// Options tune a Writer. The zero value is ready to use.
type Options struct {
	// MaxBatch caps the records written in one transaction. Zero means 512.
	MaxBatch int
	// Logger receives failed and abandoned writes. Nil means slog.Default().
	Logger *slog.Logger
	// OnCommit, if set, is called after each successful commit with the
	// number of records written and how long the oldest of them waited
	// between being queued and being durable. It runs on the writer
	// goroutine and must not block.
	OnCommit func(n int, wait time.Duration)
	// OnError, if set, is called with each failed write attempt before it
	// is retried. It runs on the writer goroutine and must not block.
	OnError func(err error)
	// RetryBackoff is the wait before the first retry of a failed batch;
	// it doubles with each further failure up to 64 times its value. Zero
	// means 100ms.
	RetryBackoff time.Duration
	// WriteTimeout bounds each write attempt, so that a connection that
	// hangs is given up on and the batch retried. Zero means 30s.
	WriteTimeout time.Duration
	// Now returns the current time, for OnCommit's wait. Nil means time.Now.
	Now func() time.Time
}

// batch is a group of records written in one transaction. Its waiters
// block on done; err is set before done is closed.
type batch struct {
	recs  []sluice.UsageRecord
	first time.Time // when the oldest record was queued
	done  chan struct{}
	err   error
}

// Writer queues usage records and writes them in batches. Its methods are
// safe for concurrent use.
type Writer struct {
	store    sluice.UsageStore
	maxBatch int
	log      *slog.Logger
	onCommit func(int, time.Duration)
	onError  func(error)
	backoff  time.Duration
	timeout  time.Duration
	now      func() time.Time

	mu     sync.Mutex
	queue  []*batch // oldest first; only the last may still grow
	closed bool

	depth atomic.Int64 // records queued or being written
	lost  atomic.Int64 // records abandoned by Close

	wake   chan struct{} // a record was queued, or Close was called
	ctx    context.Context
	cancel context.CancelFunc // abandons the writes in progress
	done   chan struct{}      // closed when the writer goroutine exits
}

// New starts a Writer for store. Call Close to flush and stop it.
func New(store sluice.UsageStore, opts Options) *Writer {
	w := &Writer{
		store:    store,
		maxBatch: opts.MaxBatch,
		log:      opts.Logger,
		onCommit: opts.OnCommit,
		onError:  opts.OnError,
		backoff:  opts.RetryBackoff,
		timeout:  opts.WriteTimeout,
		now:      opts.Now,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	if w.maxBatch <= 0 {
		w.maxBatch = 512
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	if w.backoff <= 0 {
		w.backoff = 100 * time.Millisecond
	}
	if w.timeout <= 0 {
		w.timeout = 30 * time.Second
	}
	if w.now == nil {
		w.now = time.Now
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	go w.run()
	return w
}

// Commit queues rec and waits until it is durably written. If ctx ends
// first, Commit returns ctx.Err() but the record stays queued and will
// still be written. After Close it returns ErrClosed.
func (w *Writer) Commit(ctx context.Context, rec sluice.UsageRecord) error {
	b, err := w.enqueue(rec)
	if err != nil {
		return err
	}
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Enqueue queues rec to be written without waiting for it. It fails only
// for a record without a request id or after Close (ErrClosed).
func (w *Writer) Enqueue(rec sluice.UsageRecord) error {
	_, err := w.enqueue(rec)
	return err
}

// QueueDepth returns the number of records queued or being written.
func (w *Writer) QueueDepth() int { return int(w.depth.Load()) }

func (w *Writer) enqueue(rec sluice.UsageRecord) (*batch, error) {
	if rec.RequestID == "" {
		return nil, ErrNoRequestID
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, ErrClosed
	}
	var b *batch
	if n := len(w.queue); n > 0 && len(w.queue[n-1].recs) < w.maxBatch {
		b = w.queue[n-1]
	} else {
		b = &batch{first: w.now(), done: make(chan struct{})}
		w.queue = append(w.queue, b)
	}
	b.recs = append(b.recs, rec)
	w.depth.Add(1)
	w.mu.Unlock()
	w.signal()
	return b, nil
}

func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Close stops accepting records and waits until everything queued has been
// written. If ctx ends first, Close abandons the unwritten records (their
// Commit calls return ErrAbandoned, and they are logged) and returns an
// error wrapping ErrAbandoned and ctx.Err(). Either way the writer
// goroutine has exited when Close returns.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.signal()
	select {
	case <-w.done:
	case <-ctx.Done():
		w.cancel()
		<-w.done
	}
	n := w.lost.Load()
	switch {
	case n == 0:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%w: %d records: %w", ErrAbandoned, n, ctx.Err())
	default:
		return fmt.Errorf("%w: %d records", ErrAbandoned, n)
	}
}

// run is the writer goroutine. It exits once the writer is closed and the
// queue is empty, or when Close abandons the queue.
func (w *Writer) run() {
	defer close(w.done)
	defer w.cancel()
	for {
		w.mu.Lock()
		for len(w.queue) == 0 && !w.closed {
			w.mu.Unlock()
			<-w.wake
			w.mu.Lock()
		}
		if len(w.queue) == 0 { // closed and flushed
			w.mu.Unlock()
			return
		}
		if len(w.queue) == 1 && len(w.queue[0].recs) < w.maxBatch && !w.closed {
			// Let handlers that are runnable enqueue first: on a gateway
			// with one CPU they cannot run while this goroutine does, and
			// committing at once would give one transaction per record.
			w.mu.Unlock()
			runtime.Gosched()
			w.mu.Lock()
		}
		b := w.queue[0]
		w.queue[0] = nil
		w.queue = w.queue[1:]
		w.mu.Unlock()

		if !w.write(b) {
			w.abandon(b)
			return
		}
	}
}

// write commits b, retrying until it succeeds. It returns false only when
// Close abandons the writer.
func (w *Writer) write(b *batch) bool {
	delay := w.backoff
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(w.ctx, w.timeout)
		err := w.store.InsertUsage(ctx, b.recs)
		cancel()
		if err == nil {
			break
		}
		if w.ctx.Err() != nil {
			return false
		}
		err = fmt.Errorf("ledger: write %d records (attempt %d): %w", len(b.recs), attempt, err)
		w.log.Warn("usage batch not written; retrying", "err", err, "records", len(b.recs), "attempt", attempt, "retry_in", delay)
		if w.onError != nil {
			w.onError(err)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-w.ctx.Done():
			t.Stop()
			return false
		}
		delay = min(2*delay, 64*w.backoff)
	}
	n := len(b.recs)
	w.depth.Add(-int64(n))
	if w.onCommit != nil {
		w.onCommit(n, w.now().Sub(b.first))
	}
	close(b.done)
	return true
}

// abandon fails b and every queued batch with ErrAbandoned, logging the
// request ids so that the records can be reconciled from elsewhere.
func (w *Writer) abandon(b *batch) {
	w.mu.Lock()
	batches := append([]*batch{b}, w.queue...)
	w.queue = nil
	w.mu.Unlock()
	var ids []string
	for _, bb := range batches {
		for _, r := range bb.recs {
			ids = append(ids, r.RequestID)
		}
		w.depth.Add(-int64(len(bb.recs)))
		bb.err = ErrAbandoned
		close(bb.done)
	}
	w.lost.Add(int64(len(ids)))
	w.log.Error("usage records abandoned at shutdown", "records", len(ids), "request_ids", ids)
}
