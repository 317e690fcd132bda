package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice"
)

// ErrUnauthenticated is returned for a missing, malformed, unknown, revoked
// or expired key. Callers answer all of them the same way, so that a
// response never tells a guesser which keys exist.
var ErrUnauthenticated = errors.New("invalid API key")

// Authenticator checks presented keys against an in-memory copy of the key
// store, refreshed in the background. A store outage does not stop keys that
// were known from working (the copy stays), and a new or revoked key takes
// effect within one refresh interval, or at once for a new key on this
// process's first sight of it.
type Authenticator struct {
	store    sluice.KeyStore
	log      *slog.Logger
	now      func() time.Time
	interval time.Duration

	keys atomic.Pointer[map[string]*sluice.Key]

	mu      sync.Mutex
	misses  map[string]time.Time // ids recently not found in the store
	pending map[string]*pendingLookup
}

// Options tune an Authenticator. Zero values get defaults.
type Options struct {
	Refresh time.Duration    // default 2s
	Now     func() time.Time // default time.Now
	Logger  *slog.Logger
}

// New loads every key from store and returns an Authenticator.
func New(ctx context.Context, store sluice.KeyStore, o Options) (*Authenticator, error) {
	a := &Authenticator{store: store, log: o.Logger, now: o.Now, interval: o.Refresh, misses: map[string]time.Time{}, pending: map[string]*pendingLookup{}}
	if a.now == nil {
		a.now = time.Now
	}
	if a.interval == 0 {
		a.interval = 2 * time.Second
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if err := a.Refresh(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// Refresh reloads the key set from the store.
func (a *Authenticator) Refresh(ctx context.Context) error {
	ks, err := a.store.Keys(ctx)
	if err != nil {
		return err
	}
	m := make(map[string]*sluice.Key, len(ks))
	for i := range ks {
		m[ks[i].ID] = &ks[i]
	}
	a.mu.Lock()
	a.keys.Store(&m)
	clear(a.misses)
	a.mu.Unlock()
	return nil
}

// Run refreshes the key set until ctx ends.
func (a *Authenticator) Run(ctx context.Context) {
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.Refresh(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("key refresh failed; serving with the keys already loaded", "err", err)
			}
		}
	}
}

// FromRequest returns the key presented in the Authorization (Bearer) or
// api-key header, or "".
func FromRequest(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			return strings.TrimSpace(h[7:])
		}
		return ""
	}
	return strings.TrimSpace(r.Header.Get("api-key"))
}

// Authenticate returns the stored key matching the presented secret.
func (a *Authenticator) Authenticate(ctx context.Context, secret string) (*sluice.Key, error) {
	id, err := Parse(secret)
	if err != nil {
		return nil, ErrUnauthenticated
	}
	k := (*a.keys.Load())[id]
	if k == nil {
		if k = a.lookup(ctx, id); k == nil {
			return nil, ErrUnauthenticated
		}
	}
	d := Digest(secret)
	if subtle.ConstantTimeCompare(d[:], k.Hash[:]) != 1 || !k.Active(a.now()) {
		return nil, ErrUnauthenticated
	}
	return k, nil
}

// lookup asks the store for a key this process has not loaded yet (created
// since the last refresh). Concurrent first sights of one id share one
// store lookup. Misses are remembered until the next refresh so that a
// stream of well-formed but unknown ids cannot flood the store.
func (a *Authenticator) lookup(ctx context.Context, id string) *sluice.Key {
	a.mu.Lock()
	if _, missed := a.misses[id]; missed {
		a.mu.Unlock()
		return nil
	}
	if p, ok := a.pending[id]; ok {
		a.mu.Unlock()
		select {
		case <-p.done:
			return p.key
		case <-ctx.Done():
			return nil
		}
	}
	if len(a.misses)+len(a.pending) >= maxMisses {
		a.mu.Unlock()
		return nil
	}
	p := &pendingLookup{done: make(chan struct{})}
	a.pending[id] = p
	a.mu.Unlock()

	k, err := a.store.Key(context.WithoutCancel(ctx), id)
	a.mu.Lock()
	delete(a.pending, id)
	switch {
	case err == nil:
		p.key = &k
		old := *a.keys.Load()
		m := make(map[string]*sluice.Key, len(old)+1)
		for i, v := range old {
			m[i] = v
		}
		m[id] = &k
		a.keys.Store(&m)
	case errors.Is(err, sluice.ErrNotFound):
		a.misses[id] = a.now()
	default:
		a.log.Warn("key lookup failed", "key_id", id, "err", err)
	}
	a.mu.Unlock()
	close(p.done)
	return p.key
}

type pendingLookup struct {
	done chan struct{}
	key  *sluice.Key
}

// maxMisses bounds the memory of unknown ids between refreshes.
const maxMisses = 10000
