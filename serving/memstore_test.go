package serving

import (
	"context"
	"sort"
	"sync"

	"github.com/sluice-gateway/sluice"
)

// memStore is an in-memory sluice.ServingStore with the same contract as
// the SQL stores. failUpdates makes that many updates fail with
// ErrConflict first, as if another replica had written in between.
type memStore struct {
	mu          sync.Mutex
	recs        map[string]sluice.ServingEndpointRecord
	failUpdates int
}

var _ sluice.ServingStore = (*memStore)(nil)

func newMemStore() *memStore { return &memStore{recs: map[string]sluice.ServingEndpointRecord{}} }

func (s *memStore) CreateServingEndpoint(_ context.Context, e sluice.ServingEndpointRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.recs[e.Name]; ok {
		return sluice.ErrConflict
	}
	e.Version = 1
	e.Spec = append([]byte(nil), e.Spec...)
	s.recs[e.Name] = e
	return nil
}

func (s *memStore) ServingEndpoint(_ context.Context, name string) (sluice.ServingEndpointRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.recs[name]
	if !ok {
		return e, sluice.ErrNotFound
	}
	return e, nil
}

func (s *memStore) ServingEndpoints(context.Context) ([]sluice.ServingEndpointRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]sluice.ServingEndpointRecord, 0, len(s.recs))
	for _, e := range s.recs {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (s *memStore) UpdateServingEndpoint(_ context.Context, e sluice.ServingEndpointRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.recs[e.Name]
	if !ok {
		return sluice.ErrNotFound
	}
	if s.failUpdates > 0 {
		s.failUpdates--
		cur.Version++ // someone else wrote
		s.recs[e.Name] = cur
		return sluice.ErrConflict
	}
	if cur.Version != e.Version {
		return sluice.ErrConflict
	}
	cur.Spec = append([]byte(nil), e.Spec...)
	cur.Version++
	cur.UpdatedAt = e.UpdatedAt
	s.recs[e.Name] = cur
	return nil
}

func (s *memStore) DeleteServingEndpoint(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.recs[name]; !ok {
		return sluice.ErrNotFound
	}
	delete(s.recs, name)
	return nil
}
