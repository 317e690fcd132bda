package capacity

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/pricing"
)

// Lookback is how far back the accruer charges hours it finds missing, for
// a gateway that was down.
const Lookback = 7 * 24 * time.Hour

// retryAfterError is how soon the accruer tries again after a failure.
const retryAfterError = time.Minute

// Entity is a served entity with hourly-priced capacity.
type Entity struct {
	Endpoint     string
	ServedEntity string
	HourlyMicros int64
	// The capacity paid for, recorded on each charge.
	TokensPerSecond int64
	Concurrency     int64
	// Since is when the capacity was provisioned; the hour it falls in is
	// charged. Zero charges back Lookback.
	Since time.Time
}

// EntityFor returns the entity of a target's declared capacity; ok is
// false when it has no hourly price.
func EntityFor(endpoint, servedEntity string, c *config.Capacity, workloadSize string, since time.Time) (e Entity, ok bool, err error) {
	if c == nil || c.HourlyPrice == "" {
		return Entity{}, false, nil
	}
	price, err := pricing.ParseUSD(c.HourlyPrice)
	if err != nil {
		return Entity{}, false, fmt.Errorf("endpoint %s, served entity %s: hourly price: %w", endpoint, servedEntity, err)
	}
	l, _ := LimitsFor(c, workloadSize)
	return Entity{Endpoint: endpoint, ServedEntity: servedEntity, HourlyMicros: int64(price),
		TokensPerSecond: c.TokensPerSecond, Concurrency: l.Concurrency, Since: since}, price > 0, nil
}

// Accruer charges each entity's capacity by the hour: one charge per UTC
// hour that has ended, used or not. The store skips charges it has, so
// restarts and replicas may accrue the same hours safely.
type Accruer struct {
	Store sluice.CapacityStore
	// Entities returns the entities to charge now (the config's and the
	// serving endpoints'); it must be safe for concurrent use.
	Entities func() []Entity
	// Now is the clock; nil uses time.Now.
	Now    func() time.Time
	Logger *slog.Logger

	mu   sync.Mutex
	done map[[2]string]time.Time // per entity, the end of the last hour stored
}

// AccrueOnce charges every hour that ended by now and after
// max(Since, now-Lookback), for each entity. It returns the number of
// charges sent to the store (the store skips those it has).
func (a *Accruer) AccrueOnce(ctx context.Context, now time.Time) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done == nil {
		a.done = map[[2]string]time.Time{}
	}
	now = now.UTC()
	end := now.Truncate(time.Hour) // hours before it have ended
	sent := 0
	var firstErr error
	for _, e := range a.Entities() {
		if e.HourlyMicros <= 0 {
			continue
		}
		k := [2]string{e.Endpoint, e.ServedEntity}
		from := now.Add(-Lookback)
		if e.Since.After(from) {
			from = e.Since.UTC()
		}
		from = from.Truncate(time.Hour)
		if d, ok := a.done[k]; ok && d.After(from) {
			from = d
		}
		var charges []sluice.CapacityCharge
		for h := from; h.Before(end); h = h.Add(time.Hour) {
			charges = append(charges, sluice.CapacityCharge{Endpoint: e.Endpoint, ServedEntity: e.ServedEntity,
				Hour: h, CostMicros: e.HourlyMicros, TokensPerSecond: e.TokensPerSecond, Concurrency: e.Concurrency})
		}
		if len(charges) == 0 {
			continue
		}
		if err := a.Store.AccrueCapacity(ctx, charges); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("accrue capacity of %s/%s: %w", e.Endpoint, e.ServedEntity, err)
			}
			continue
		}
		sent += len(charges)
		a.done[k] = end
	}
	return sent, firstErr
}

// Run accrues at once and then just after each hour ends, until ctx ends.
// A failed accrual is retried after a minute.
func (a *Accruer) Run(ctx context.Context) {
	now := a.Now
	if now == nil {
		now = time.Now
	}
	log := a.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		at := now()
		wait := at.Truncate(time.Hour).Add(time.Hour).Sub(at)
		if n, err := a.AccrueOnce(ctx, at); err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("capacity accrual failed; retrying", "err", err, "charges", n)
			wait = min(wait, retryAfterError)
		}
		t.Reset(wait)
	}
}
