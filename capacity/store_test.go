package capacity

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/sluice-gateway/sluice"
)

// memStore is an in-memory sluice.CapacityStore.
type memStore struct {
	mu       sync.Mutex
	charges  map[hourKey]sluice.CapacityCharge
	usage    []sluice.EntityHourUsage
	sent     int   // charges passed to AccrueCapacity
	inserted int   // charges it stored
	fail     error // returned by every call while set
}

var _ sluice.CapacityStore = (*memStore)(nil)

func newMemStore() *memStore { return &memStore{charges: map[hourKey]sluice.CapacityCharge{}} }

func (m *memStore) AccrueCapacity(_ context.Context, charges []sluice.CapacityCharge) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	for _, c := range charges {
		m.sent++
		k := hourKey{entityKey{c.Endpoint, c.ServedEntity}, c.Hour.Unix()}
		if _, ok := m.charges[k]; !ok {
			m.charges[k] = c
			m.inserted++
		}
	}
	return nil
}

func (m *memStore) CapacityCharges(_ context.Context, from, to time.Time) ([]sluice.CapacityCharge, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	var out []sluice.CapacityCharge
	for _, c := range m.charges {
		if !c.Hour.Before(from) && c.Hour.Before(to) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b sluice.CapacityCharge) int {
		return cmp.Or(cmp.Compare(a.Endpoint, b.Endpoint), cmp.Compare(a.ServedEntity, b.ServedEntity), a.Hour.Compare(b.Hour))
	})
	return out, nil
}

func (m *memStore) EntityUsage(_ context.Context, from, to time.Time) ([]sluice.EntityHourUsage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	var out []sluice.EntityHourUsage
	for _, u := range m.usage {
		if !u.Hour.Before(from) && u.Hour.Before(to) {
			out = append(out, u)
		}
	}
	slices.SortFunc(out, func(a, b sluice.EntityHourUsage) int {
		return cmp.Or(cmp.Compare(a.Endpoint, b.Endpoint), cmp.Compare(a.ServedEntity, b.ServedEntity),
			a.Hour.Compare(b.Hour), cmp.Compare(a.Team, b.Team))
	})
	return out, nil
}
