// Package memory is an in-process ratelimit.Limiter for a single gateway
// replica. Buckets live in a sharded map; an Admit locks the shards of its
// buckets in a fixed order, so admissions touching different shards run in
// parallel and a multi-bucket admission is still all or none. Idle buckets
// are dropped by one sweeper goroutine that stops on Close.
//
// Several replicas each running a memory Limiter would each admit the
// full limit: use the redis package when more than one replica serves.
package memory

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/sluice-gateway/sluice/ratelimit"
	"github.com/sluice-gateway/sluice/ratelimit/internal/gcra"
)

// Options configure a Limiter. The zero value is ready to use.
type Options struct {
	// Now returns the current time. If nil, time.Now is used.
	Now func() time.Time
	// SweepInterval is how often idle buckets are dropped. If zero, one
	// minute; if negative, never (call Sweep yourself).
	SweepInterval time.Duration
	// Shards is the number of lock shards, rounded up to a power of two.
	// If zero, 64.
	Shards int
}

// Limiter is an in-process ratelimit.Limiter. Create it with New and stop
// its sweeper with Close.
type Limiter struct {
	now    func() time.Time
	seed   maphash.Seed
	shards []shard
	mask   uint64
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

var _ ratelimit.Limiter = (*Limiter)(nil)

type shard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	_       [40]byte // keep neighbouring shards' locks off one cache line
}

// bucket is one key's state: levels in unit·ms as of at (Unix ms).
type bucket struct {
	at, req, tok int64
	expires      int64 // Unix ms after which both levels are empty
}

// New returns a Limiter and starts its sweeper unless opts disable it.
func New(opts Options) *Limiter {
	n := 64
	if opts.Shards > 0 {
		n = 1
		for n < opts.Shards {
			n <<= 1
		}
	}
	l := &Limiter{
		now:    opts.Now,
		seed:   maphash.MakeSeed(),
		shards: make([]shard, n),
		mask:   uint64(n - 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if l.now == nil {
		l.now = time.Now
	}
	for i := range l.shards {
		l.shards[i].buckets = make(map[string]*bucket)
	}
	interval := opts.SweepInterval
	if interval == 0 {
		interval = time.Minute
	}
	if interval < 0 {
		close(l.done)
		return l
	}
	go l.sweeper(interval)
	return l
}

// Close stops the sweeper and waits for it to exit. The Limiter still
// works afterwards, without sweeping. Close always returns nil.
func (l *Limiter) Close() error {
	l.once.Do(func() { close(l.stop) })
	<-l.done
	return nil
}

func (l *Limiter) sweeper(interval time.Duration) {
	defer close(l.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.Sweep()
		}
	}
}

// Sweep drops every bucket whose levels have drained to zero, one shard
// at a time, and returns how many it dropped. Dropping an empty bucket
// changes no decision.
func (l *Limiter) Sweep() int {
	now := l.now().UnixMilli()
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for k, b := range s.buckets {
			if b.expires <= now {
				delete(s.buckets, k)
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

// Len returns the number of buckets held.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return n
}

// stackBuckets is how many buckets an Admit handles without allocating.
const stackBuckets = 8

// pending is one request's bucket during an Admit or Correct.
type pending struct {
	s        *shard
	si       uint64  // index of s
	b        *bucket // nil if the key has no state yet
	dup      int     // index of an earlier request with the same key, or -1
	req, tok int64   // drained levels before the take
	newReq   int64
	newTok   int64
}

// Admit implements ratelimit.Limiter. It never returns ErrUnavailable.
func (l *Limiter) Admit(_ context.Context, reqs []ratelimit.Request) (ratelimit.Decision, error) {
	if err := ratelimit.Validate(reqs); err != nil {
		return ratelimit.Decision{}, err
	}
	now := l.now().UnixMilli()
	var buf [stackBuckets]pending
	ps := buf[:0]
	if len(reqs) > stackBuckets {
		ps = make([]pending, 0, len(reqs))
	}
	ps = l.lock(reqs, ps)
	defer l.unlock(ps)

	ok := true
	for i := range reqs {
		r, p := &reqs[i], &ps[i]
		l.load(reqs, ps, i, now)
		nr, nt := gcra.Need(p.req, r.RPM, 1), gcra.Need(p.tok, r.TPM, r.Tokens)
		if nr != 0 || nt != 0 {
			ok = false
		}
		p.newReq, p.newTok = p.req, p.tok
		if r.RPM > 0 {
			p.newReq = gcra.Add(p.req, 1)
		}
		if r.TPM > 0 {
			p.newTok = gcra.Add(p.tok, r.Tokens)
		}
	}
	var agg gcra.Agg
	for i := range reqs {
		r, p := &reqs[i], &ps[i]
		if ok {
			agg.Add(r, p.newReq, p.newTok, 0, 0)
			l.store(r, p, now)
			continue
		}
		agg.Add(r, p.req, p.tok, gcra.Need(p.req, r.RPM, 1), gcra.Need(p.tok, r.TPM, r.Tokens))
	}
	return agg.Decision(), nil
}

// Correct implements ratelimit.Limiter.
func (l *Limiter) Correct(_ context.Context, reqs []ratelimit.Request, actualTokens int64) error {
	if err := ratelimit.Validate(reqs); err != nil {
		return err
	}
	if err := ratelimit.ValidateActual(actualTokens); err != nil {
		return err
	}
	now := l.now().UnixMilli()
	var buf [stackBuckets]pending
	ps := buf[:0]
	if len(reqs) > stackBuckets {
		ps = make([]pending, 0, len(reqs))
	}
	ps = l.lock(reqs, ps)
	defer l.unlock(ps)
	for i := range reqs {
		r, p := &reqs[i], &ps[i]
		l.load(reqs, ps, i, now)
		p.newReq, p.newTok = p.req, p.tok
		if r.TPM > 0 {
			p.newTok = gcra.Add(p.tok, actualTokens-r.Tokens)
		}
		l.store(r, p, now)
	}
	return nil
}

// lock finds each request's shard and locks the distinct shards in
// increasing index order, so that concurrent calls cannot deadlock.
func (l *Limiter) lock(reqs []ratelimit.Request, ps []pending) []pending {
	for i := range reqs {
		si := maphash.String(l.seed, reqs[i].Key) & l.mask
		ps = append(ps, pending{s: &l.shards[si], si: si, dup: -1})
	}
	last := -1 // the index of the last shard locked
	for {
		next := -1
		for i := range ps {
			if si := int(ps[i].si); si > last && (next < 0 || si < next) {
				next = si
			}
		}
		if next < 0 {
			return ps
		}
		l.shards[next].mu.Lock()
		last = next
	}
}

func (l *Limiter) unlock(ps []pending) {
	for i := range ps {
		if !sharedWithEarlier(ps, i) {
			ps[i].s.mu.Unlock()
		}
	}
}

func sharedWithEarlier(ps []pending, i int) bool {
	for j := 0; j < i; j++ {
		if ps[j].si == ps[i].si {
			return true
		}
	}
	return false
}

// load fills ps[i] with its bucket's levels drained to now, taking the
// tentative state of an earlier request for the same key into account.
func (l *Limiter) load(reqs []ratelimit.Request, ps []pending, i int, now int64) {
	r, p := &reqs[i], &ps[i]
	for j := 0; j < i; j++ {
		if reqs[j].Key == r.Key {
			p.dup = j
		}
	}
	if p.dup >= 0 {
		q := &ps[p.dup]
		p.b, p.req, p.tok = q.b, gcra.Drain(q.newReq, r.RPM, 0), gcra.Drain(q.newTok, r.TPM, 0)
		return
	}
	p.b = p.s.buckets[r.Key]
	if p.b == nil {
		return
	}
	elapsed := now - p.b.at
	p.req, p.tok = gcra.Drain(p.b.req, r.RPM, elapsed), gcra.Drain(p.b.tok, r.TPM, elapsed)
}

// store writes ps[i]'s new levels back, creating or dropping the bucket.
func (l *Limiter) store(r *ratelimit.Request, p *pending, now int64) {
	if p.newReq == 0 && p.newTok == 0 {
		if p.b != nil {
			delete(p.s.buckets, r.Key)
			p.b = nil
		}
		return
	}
	if p.b == nil {
		p.b = &bucket{}
		p.s.buckets[r.Key] = p.b
	}
	at := max(now, p.b.at) // a clock stepping back does not refill buckets
	p.b.at, p.b.req, p.b.tok = at, p.newReq, p.newTok
	p.b.expires = at + gcra.TTL(p.newReq, r.RPM, p.newTok, r.TPM)
}
