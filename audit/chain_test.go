package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
)

// testStore wraps a MemoryStore to observe and steer AppendAudit.
type testStore struct {
	MemoryStore
	mu      sync.Mutex
	batches []int         // records per AppendAudit call
	gate    chan struct{} // if non-nil, the first AppendAudit waits for it
	entered chan struct{} // closed when the first AppendAudit starts
	fail    []error       // errors for the next calls, in order
	land    bool          // store the records even when failing
}

func (s *testStore) AppendAudit(ctx context.Context, recs []Record) error {
	s.mu.Lock()
	first := len(s.batches) == 0
	s.batches = append(s.batches, len(recs))
	var err error
	if len(s.fail) > 0 {
		err, s.fail = s.fail[0], s.fail[1:]
	}
	s.mu.Unlock()
	if first && s.gate != nil {
		close(s.entered)
		<-s.gate
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err != nil && !s.land {
		return err
	}
	if werr := s.MemoryStore.AppendAudit(ctx, recs); werr != nil {
		return werr
	}
	return err
}

func (s *testStore) batchSizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.batches)
}

func gated() *testStore {
	return &testStore{gate: make(chan struct{}), entered: make(chan struct{})}
}

// waitQueued waits until n appends are queued behind the running write.
func waitQueued(t *testing.T, c *Chain, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		q := 0
		for _, p := range c.queue {
			q += len(p.recs)
		}
		c.mu.Unlock()
		if q == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestChainAppend(t *testing.T) {
	ctx := context.Background()
	s := &MemoryStore{}
	now := time.Date(2026, 3, 1, 12, 0, 0, 987654321, time.UTC)
	c := NewChain(s, ChainOptions{Now: func() time.Time { return now }})
	stamped := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		r := Record{Kind: KindRequest, RequestID: fmt.Sprint(i)}
		if i == 2 {
			r.Time = stamped
		}
		got, err := c.Append(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if got[0].Seq != int64(i+1) {
			t.Errorf("record %d got Seq %d", i, got[0].Seq)
		}
		want := now.Truncate(time.Microsecond)
		if i == 2 {
			want = stamped
		}
		if !got[0].Time.Equal(want) {
			t.Errorf("record %d Time = %v, want %v", i, got[0].Time, want)
		}
	}
	last, err := VerifyStore(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if seq, hash := c.Head(); seq != 5 || hash != last.Hash {
		t.Errorf("Head() = %d, %x; want 5, %x", seq, hash, last.Hash)
	}
	// A new Chain on the same store continues it.
	if got, err := NewChain(s, ChainOptions{}).Append(ctx, Record{Kind: KindRequest}); err != nil || got[0].Seq != 6 {
		t.Fatalf("new Chain appended Seq %v, %v; want 6", got, err)
	}
	if _, err := VerifyStore(ctx, s); err != nil {
		t.Fatal(err)
	}
}

func TestChainBatchesQueuedAppends(t *testing.T) {
	ctx := context.Background()
	s := gated()
	c := NewChain(s, ChainOptions{MaxBatch: 4})
	var wg sync.WaitGroup
	wg.Go(func() { c.Append(ctx, Record{RequestID: "first"}) })
	<-s.entered
	for i := range 10 {
		wg.Go(func() { c.Append(ctx, Record{RequestID: fmt.Sprint(i)}) })
	}
	waitQueued(t, c, 10)
	close(s.gate)
	wg.Wait()
	if got := s.batchSizes(); !slices.Equal(got, []int{1, 4, 4, 2}) {
		t.Errorf("store writes carried %v records, want [1 4 4 2]", got)
	}
	if last, err := VerifyStore(ctx, s); err != nil || last.Seq != 11 {
		t.Errorf("VerifyStore = %d, %v; want 11 records intact", last.Seq, err)
	}
}

func TestChainConcurrentAppendsStayTogether(t *testing.T) {
	ctx := context.Background()
	s := &MemoryStore{}
	c := NewChain(s, ChainOptions{MaxBatch: 16})
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("%d-%d", w, i)
				got, err := c.Append(ctx, Record{RequestID: id}, Record{RequestID: id})
				if err != nil {
					t.Error(err)
					return
				}
				if got[1].Seq != got[0].Seq+1 || got[1].PrevHash != got[0].Hash {
					t.Errorf("one Append's records were split: Seqs %d, %d", got[0].Seq, got[1].Seq)
				}
			}
		})
	}
	wg.Wait()
	last, err := VerifyStore(ctx, s)
	if err != nil || last.Seq != 2*writers*each {
		t.Fatalf("VerifyStore = %d, %v; want %d records intact", last.Seq, err, 2*writers*each)
	}
	recs, _ := s.Audit(ctx, Query{})
	for i := 0; i < len(recs); i += 2 {
		if recs[i].RequestID != recs[i+1].RequestID {
			t.Fatalf("records %d and %d belong to different Appends", recs[i].Seq, recs[i+1].Seq)
		}
	}
}

func TestChainCancelWhileQueued(t *testing.T) {
	s := gated()
	c := NewChain(s, ChainOptions{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Append(context.Background(), Record{RequestID: "first"})
	}()
	<-s.entered
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Append(ctx, Record{RequestID: "withdrawn"})
		errc <- err
	}()
	waitQueued(t, c, 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context = %v, want context.Canceled", err)
	}
	close(s.gate)
	<-done
	recs, _ := s.Audit(context.Background(), Query{})
	if len(recs) != 1 || recs[0].RequestID != "first" {
		t.Fatalf("store holds %d records, want only the first", len(recs))
	}
}

func TestChainWriteCarriesOnAfterCallerCancels(t *testing.T) {
	s := gated()
	c := NewChain(s, ChainOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Append(ctx, Record{RequestID: "writer"})
		errc <- err
	}()
	<-s.entered
	cancel() // the store call must not see this
	close(s.gate)
	if err := <-errc; err != nil {
		t.Fatalf("Append = %v, want the write to finish", err)
	}
}

func TestChainStoreErrors(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("disk full")
	t.Run("failed write", func(t *testing.T) {
		s := &testStore{fail: []error{boom}}
		c := NewChain(s, ChainOptions{})
		if _, err := c.Append(ctx, Record{RequestID: "a"}); !errors.Is(err, boom) {
			t.Fatalf("Append = %v, want %v", err, boom)
		}
		if got, err := c.Append(ctx, Record{RequestID: "b"}); err != nil || got[0].Seq != 1 {
			t.Fatalf("Append after a failed write = %v, %v; want Seq 1", got, err)
		}
	})
	t.Run("write landed but reported failure", func(t *testing.T) {
		s := &testStore{fail: []error{boom}, land: true}
		c := NewChain(s, ChainOptions{})
		if _, err := c.Append(ctx, Record{RequestID: "a"}); !errors.Is(err, boom) {
			t.Fatalf("Append = %v, want %v", err, boom)
		}
		if got, err := c.Append(ctx, Record{RequestID: "b"}); err != nil || got[0].Seq != 2 {
			t.Fatalf("Append after an ambiguous write = %v, %v; want Seq 2", got, err)
		}
		if _, err := VerifyStore(ctx, s); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("conflicts retried within the window", func(t *testing.T) {
		conflict := fmt.Errorf("seq taken: %w", sluice.ErrConflict)
		s := &testStore{fail: slices.Repeat([]error{conflict}, conflictRetries+3)}
		if _, err := NewChain(s, ChainOptions{}).Append(ctx, Record{}); err != nil {
			t.Fatalf("Append = %v, want success after the conflicts", err)
		}
		if got := len(s.batchSizes()); got != conflictRetries+4 {
			t.Errorf("%d attempts, want %d", got, conflictRetries+4)
		}
	})
	t.Run("conflicts past the window give up", func(t *testing.T) {
		defer func(w time.Duration) { conflictWindow = w }(conflictWindow)
		conflictWindow = 20 * time.Millisecond
		conflict := fmt.Errorf("seq taken: %w", sluice.ErrConflict)
		s := &testStore{fail: slices.Repeat([]error{conflict}, 1000)}
		if _, err := NewChain(s, ChainOptions{}).Append(ctx, Record{}); !errors.Is(err, sluice.ErrConflict) {
			t.Fatalf("Append = %v, want ErrConflict", err)
		}
	})
}
