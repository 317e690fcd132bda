package audit

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Async queues records for a Chain and writes them in batches from one
// goroutine, so a request never waits for the audit store. Records are
// sealed in the order they are written. A record still queued when the
// process dies is lost (the chain stays intact: Seqs are assigned at
// write time); Close writes everything queued.
type Async struct {
	chain *Chain
	log   *slog.Logger
	onErr func(error)

	mu     sync.Mutex
	queue  []Record
	closed bool
	wake   chan struct{}
	done   chan struct{}
	max    int
}

// linger is how long the writer gathers records before a write, unless
// lingerBatch are already queued.
const (
	linger      = 5 * time.Millisecond
	lingerBatch = 256
)

// AsyncOptions tune an Async. Zero values get defaults.
type AsyncOptions struct {
	// MaxQueue bounds the records waiting; past it Append blocks until
	// the writer catches up. Zero means 65536.
	MaxQueue int
	Logger   *slog.Logger
	// OnError is called with each failed batch write (the batch is
	// retried after a second).
	OnError func(error)
}

// NewAsync starts a writer for c.
func NewAsync(c *Chain, o AsyncOptions) *Async {
	a := &Async{chain: c, log: o.Logger, onErr: o.OnError, wake: make(chan struct{}, 1), done: make(chan struct{}), max: o.MaxQueue}
	if a.max <= 0 {
		a.max = 65536
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	go a.run()
	return a
}

// Append queues recs and returns at once; the returned slice is nil
// because the records are sealed later. After Close it writes them
// synchronously.
func (a *Async) Append(ctx context.Context, recs ...Record) ([]Record, error) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return a.chain.Append(ctx, recs...)
	}
	for len(a.queue) >= a.max {
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
		a.mu.Lock()
	}
	a.queue = append(a.queue, recs...)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
	return nil, nil
}

func (a *Async) run() {
	defer close(a.done)
	for {
		a.mu.Lock()
		for len(a.queue) == 0 && !a.closed {
			a.mu.Unlock()
			<-a.wake
			a.mu.Lock()
		}
		if len(a.queue) == 0 {
			a.mu.Unlock()
			return
		}
		if len(a.queue) < lingerBatch && !a.closed {
			// Nobody waits for these records: gather more for a moment
			// so a busy gateway writes one transaction per many requests.
			a.mu.Unlock()
			time.Sleep(linger)
			a.mu.Lock()
		}
		batch := a.queue
		a.queue = nil
		a.mu.Unlock()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := a.chain.Append(ctx, batch...)
			cancel()
			if err == nil {
				break
			}
			a.log.Error("audit batch not written; retrying", "records", len(batch), "err", err)
			if a.onErr != nil {
				a.onErr(err)
			}
			time.Sleep(time.Second)
		}
	}
}

// Close writes everything queued and stops the writer, or gives up when
// ctx ends.
func (a *Async) Close(ctx context.Context) error {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
