package audit

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sluice-gateway/sluice"
)

// Store keeps sealed audit records. Implementations store every field as
// given and return it unchanged (Time to the microsecond; a nil and an empty
// list may come back either way), so that records read back still verify.
// Strings from a Chain are valid UTF-8 without NUL bytes.
// audittest.Run checks an implementation against this contract.
type Store interface {
	// AppendAudit stores recs, which are sealed and in Seq order, in one
	// transaction: all or none. If a record with one of their Seqs exists
	// already (another writer appended first), it stores nothing and
	// returns an error wrapping sluice.ErrConflict.
	AppendAudit(ctx context.Context, recs []Record) error
	// Audit returns the records matching q in ascending Seq order.
	Audit(ctx context.Context, q Query) ([]Record, error)
	// LastAudit returns the record with the highest Seq, or an error
	// wrapping sluice.ErrNotFound when there is none.
	LastAudit(ctx context.Context) (Record, error)
}

// Query selects audit records. Zero fields select everything; a filtered
// result (by time, kind, key or team) has gaps and does not verify as a
// chain — verify with AfterSeq and Limit alone.
type Query struct {
	AfterSeq int64     // only records with Seq > AfterSeq
	From, To time.Time // only records with From <= Time < To
	Kind     string    // only records of this kind
	KeyID    string    // only records of this key
	Team     string    // only records of this team
	Limit    int       // at most this many records, the lowest Seqs
}

// match reports whether r is selected by q, Limit aside.
func (q *Query) match(r *Record) bool {
	return r.Seq > q.AfterSeq &&
		(q.From.IsZero() || !r.Time.Before(q.From)) &&
		(q.To.IsZero() || r.Time.Before(q.To)) &&
		(q.Kind == "" || r.Kind == q.Kind) &&
		(q.KeyID == "" || r.KeyID == q.KeyID) &&
		(q.Team == "" || r.Team == q.Team)
}

// MemoryStore is a Store in memory, for tests and single-process trials.
// The zero value is ready to use.
type MemoryStore struct {
	mu   sync.Mutex
	recs []Record
}

var _ Store = (*MemoryStore)(nil)

// AppendAudit appends recs; they must continue the stored Seqs exactly.
func (s *MemoryStore) AppendAudit(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := int64(1)
	if n := len(s.recs); n > 0 {
		next = s.recs[n-1].Seq + 1
	}
	for i, r := range recs {
		if r.Seq < next+int64(i) {
			return fmt.Errorf("audit: record %d exists: %w", r.Seq, sluice.ErrConflict)
		}
		if r.Seq != next+int64(i) {
			return fmt.Errorf("audit: record %d would leave a gap after %d", r.Seq, next+int64(i)-1)
		}
	}
	for _, r := range recs {
		s.recs = append(s.recs, clone(r))
	}
	return nil
}

// Audit returns copies of the matching records.
func (s *MemoryStore) Audit(ctx context.Context, q Query) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Record
	for i := range s.recs {
		if q.Limit > 0 && len(out) == q.Limit {
			break
		}
		if q.match(&s.recs[i]) {
			out = append(out, clone(s.recs[i]))
		}
	}
	return out, nil
}

// LastAudit returns a copy of the last record.
func (s *MemoryStore) LastAudit(ctx context.Context) (Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.recs) == 0 {
		return Record{}, fmt.Errorf("audit: empty chain: %w", sluice.ErrNotFound)
	}
	return clone(s.recs[len(s.recs)-1]), nil
}

// clone copies r's lists so that callers cannot change stored records.
func clone(r Record) Record {
	r.ClassReasons = slices.Clone(r.ClassReasons)
	r.Candidates = slices.Clone(r.Candidates)
	return r
}
