package audit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sluice-gateway/sluice"
)

// DefaultMaxBatch is the most records one store write carries when
// ChainOptions.MaxBatch is zero.
const DefaultMaxBatch = 512

// conflictWindow is how long a write that lost a race for its Seqs keeps
// retrying (with jittered backoff) before it gives up. Between busy
// replicas a count of retries starves the loser; a time budget does not.
var conflictWindow = 10 * time.Second

// conflictRetries is how many times a write that lost a race for its Seqs
// (sluice.ErrConflict) is re-sealed on the new head and tried again.
const conflictRetries = 5

// ChainOptions configure a Chain.
type ChainOptions struct {
	// Now stamps records whose Time is zero; nil means time.Now.
	Now func() time.Time
	// MaxBatch bounds the records per store write; zero means
	// DefaultMaxBatch. One Append's records are never split.
	MaxBatch int
}

// Chain appends records to a Store one batch at a time, giving each the
// next Seq and sealing it onto the one before. Appends that arrive while a
// write is in progress are queued and written together by the next caller
// to find the store free, so a busy gateway pays one store round trip per
// batch, not per record. It starts no goroutines.
//
// Several Chains (gateway replicas) may share one store: a write that finds
// its Seqs taken gets sluice.ErrConflict from the store, and the Chain
// re-reads the head and tries again.
type Chain struct {
	store    Store
	now      func() time.Time
	maxBatch int

	mu      sync.Mutex
	queue   []*pending
	writing bool
	idle    chan struct{} // closed and replaced whenever a write ends

	// The head of the chain. Only the writer changes these, under mu.
	loaded   bool
	headSeq  int64
	headHash [32]byte
}

// pending is one Append call waiting for its records to be written.
type pending struct {
	recs []Record
	err  error
	done chan struct{} // closed once recs (now sealed) and err are set
}

// NewChain returns a Chain that appends to s.
func NewChain(s Store, opts ChainOptions) *Chain {
	c := &Chain{store: s, now: opts.Now, maxBatch: opts.MaxBatch, idle: make(chan struct{})}
	if c.now == nil {
		c.now = time.Now
	}
	if c.maxBatch <= 0 {
		c.maxBatch = DefaultMaxBatch
	}
	return c
}

// Append seals recs (in order, with consecutive Seqs) and writes them to the
// store, and returns the sealed copies. A zero Time is set to the current
// time, and invalid UTF-8 and NUL bytes in strings (which arrive from
// clients, and which SQL text columns refuse) become U+FFFD, so that one odd
// record cannot fail a whole batch. Append returns once the store has the
// records or the write failed.
//
// The store write may carry other callers' records, so it is not cancelled
// with ctx; the store must bound its own operations. If ctx ends while recs
// are still queued, they are withdrawn and ctx's error is returned; if it
// ends while they are being written, the error says the outcome is unknown.
// A store error can also hide a write that landed (a timeout at commit);
// the chain stays intact either way, but retrying may record an event twice.
func (c *Chain) Append(ctx context.Context, recs ...Record) ([]Record, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	p := &pending{recs: make([]Record, len(recs)), done: make(chan struct{})}
	for i, r := range recs {
		p.recs[i] = sanitize(clone(r))
	}
	c.mu.Lock()
	c.queue = append(c.queue, p)
	for {
		select {
		case <-p.done:
			c.mu.Unlock()
			return p.recs, p.err
		default:
		}
		if !c.writing {
			c.writing = true
			batch := c.takeBatch()
			c.mu.Unlock()
			c.write(context.WithoutCancel(ctx), batch)
			c.mu.Lock()
			c.writing = false
			close(c.idle)
			c.idle = make(chan struct{})
			continue
		}
		idle := c.idle
		c.mu.Unlock()
		select {
		case <-p.done:
			return p.recs, p.err
		case <-idle:
			c.mu.Lock()
		case <-ctx.Done():
			c.mu.Lock()
			if i := indexOf(c.queue, p); i >= 0 {
				c.queue = append(c.queue[:i], c.queue[i+1:]...)
				c.mu.Unlock()
				return nil, ctx.Err()
			}
			c.mu.Unlock()
			return nil, fmt.Errorf("audit: append outcome unknown: %w", ctx.Err())
		}
	}
}

// sanitize makes r's strings valid UTF-8 without NUL bytes.
func sanitize(r Record) Record {
	for _, s := range []*string{&r.Kind, &r.RequestID, &r.KeyID, &r.Team, &r.Endpoint, &r.Class,
		&r.Upstream, &r.EgressClass, &r.DialedAddr, &r.ClientAddr, &r.Decision, &r.Reason} {
		*s = cleanString(*s)
	}
	for _, l := range [][]string{r.ClassReasons, r.Candidates} {
		for i := range l {
			l[i] = cleanString(l[i])
		}
	}
	return r
}

func cleanString(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

func indexOf(q []*pending, p *pending) int {
	for i, x := range q {
		if x == p {
			return i
		}
	}
	return -1
}

// takeBatch removes from the queue the oldest appends that fit in one
// write (at least one, however large). Called with mu held.
func (c *Chain) takeBatch() []*pending {
	n, size := 0, 0
	for n < len(c.queue) && (n == 0 || size+len(c.queue[n].recs) <= c.maxBatch) {
		size += len(c.queue[n].recs)
		n++
	}
	batch := c.queue[:n:n]
	c.queue = append([]*pending(nil), c.queue[n:]...)
	return batch
}

// write seals and stores one batch and tells its callers the outcome.
func (c *Chain) write(ctx context.Context, batch []*pending) {
	var recs []Record
	for _, p := range batch {
		recs = append(recs, p.recs...)
	}
	err := c.sealAndStore(ctx, recs)
	off := 0
	for _, p := range batch {
		copy(p.recs, recs[off:off+len(p.recs)])
		off += len(p.recs)
		p.err = err
		close(p.done)
	}
}

// sealAndStore seals recs on the current head and writes them, re-reading the
// head and retrying when another writer took the Seqs.
func (c *Chain) sealAndStore(ctx context.Context, recs []Record) error {
	now := c.now()
	for i := range recs {
		if recs[i].Time.IsZero() {
			recs[i].Time = now
		}
	}
	start := time.Now()
	for attempt := 0; ; attempt++ {
		if !c.loaded {
			if err := c.loadHead(ctx); err != nil {
				return err
			}
		}
		seq, prev := c.headSeq, c.headHash
		for i := range recs {
			seq++
			recs[i].Seq = seq
			recs[i].Seal(prev)
			prev = recs[i].Hash
		}
		err := c.store.AppendAudit(ctx, recs)
		c.mu.Lock()
		if err == nil {
			c.headSeq, c.headHash = seq, prev
		} else {
			c.loaded = false // the write may have landed; re-read the head
		}
		c.mu.Unlock()
		if err == nil {
			return nil
		}
		if !errors.Is(err, sluice.ErrConflict) || (attempt >= conflictRetries && time.Since(start) > conflictWindow) {
			return fmt.Errorf("audit: appending records: %w", err)
		}
		if attempt >= 1 {
			// Back off so the winner's next batch does not take the Seqs
			// again before this one is re-sealed.
			d := time.Duration(1+rand.IntN(1<<min(attempt, 6))) * time.Millisecond
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return fmt.Errorf("audit: appending records: %w", ctx.Err())
			}
		}
	}
}

func (c *Chain) loadHead(ctx context.Context) error {
	last, err := c.store.LastAudit(ctx)
	if err != nil && !errors.Is(err, sluice.ErrNotFound) {
		return fmt.Errorf("audit: reading the chain head: %w", err)
	}
	c.mu.Lock()
	c.loaded, c.headSeq, c.headHash = true, last.Seq, last.Hash
	c.mu.Unlock()
	return nil
}

// Head returns the Seq and Hash of the last record this Chain knows to be
// stored; zero values before its first write. Publishing the hash outside
// the store lets a later check detect records cut from the chain's end.
func (c *Chain) Head() (seq int64, hash [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.headSeq, c.headHash
}
