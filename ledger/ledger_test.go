package ledger

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/sqlite"
)

// fakeStore records every batch it accepts. If hook is set, it runs first
// and a non-nil result fails the insert.
type fakeStore struct {
	hook func(ctx context.Context, recs []sluice.UsageRecord) error

	mu      sync.Mutex
	batches [][]string // request ids of each accepted batch
}

func (f *fakeStore) InsertUsage(ctx context.Context, recs []sluice.UsageRecord) error {
	if f.hook != nil {
		if err := f.hook(ctx, recs); err != nil {
			return err
		}
	}
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.RequestID
	}
	f.mu.Lock()
	f.batches = append(f.batches, ids)
	f.mu.Unlock()
	return nil
}

func (f *fakeStore) Usage(ctx context.Context, id string) (sluice.UsageRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.batches {
		if slices.Contains(b, id) {
			return sluice.UsageRecord{RequestID: id}, nil
		}
	}
	return sluice.UsageRecord{}, sluice.ErrNotFound
}

func (f *fakeStore) UsageReport(context.Context, sluice.UsageQuery) ([]sluice.UsageRow, error) {
	return nil, errors.New("fake store: reports not supported")
}

// written counts how often each request id was accepted.
func (f *fakeStore) written() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := map[string]int{}
	for _, b := range f.batches {
		for _, id := range b {
			n[id]++
		}
	}
	return n
}

func (f *fakeStore) sizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s []int
	for _, b := range f.batches {
		s = append(s, len(b))
	}
	return s
}

// gate makes a store's inserts wait until release is called; entered
// receives the size of each batch as its insert begins.
type gate struct {
	open    chan struct{}
	entered chan int
}

func newGate() *gate { return &gate{open: make(chan struct{}), entered: make(chan int, 1000)} }

func (g *gate) hook(ctx context.Context, recs []sluice.UsageRecord) error {
	g.entered <- len(recs)
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) release() { close(g.open) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func rec(id string) sluice.UsageRecord {
	return sluice.UsageRecord{RequestID: id, Time: time.Unix(1, 0), Team: "t", CostMicros: 1}
}

func mustClose(t *testing.T, w *Writer) {
	t.Helper()
	if err := w.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestConcurrentCommits(t *testing.T) {
	st := &fakeStore{}
	w := New(st, Options{Logger: quiet, MaxBatch: 64})
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if err := w.Commit(context.Background(), rec(fmt.Sprintf("r%d", i))); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Commit: %v", err)
	}
	// Every Commit returned, so every record must already be stored.
	got := st.written()
	for i := range n {
		if c := got[fmt.Sprintf("r%d", i)]; c != 1 {
			t.Fatalf("record r%d written %d times, want once", i, c)
		}
	}
	if len(got) != n {
		t.Fatalf("%d distinct records written, want %d", len(got), n)
	}
	for _, s := range st.sizes() {
		if s > 64 {
			t.Fatalf("batch of %d records exceeds MaxBatch 64", s)
		}
	}
	if d := w.QueueDepth(); d != 0 {
		t.Errorf("QueueDepth = %d after every commit returned", d)
	}
	t.Logf("%d records in %d batches", n, len(st.sizes()))
	mustClose(t, w)
}

func TestConcurrentCommitsSQLite(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "ledger.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w := New(st, Options{Logger: quiet})
	const n = 1000
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := w.Commit(context.Background(), rec(fmt.Sprintf("r%d", i))); err != nil {
				t.Errorf("Commit: %v", err)
			}
		})
	}
	wg.Wait()
	rows, err := st.UsageReport(context.Background(), sluice.UsageQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Requests != n || rows[0].CostMicros != n {
		t.Fatalf("report %+v, want %d requests", rows, n)
	}
	if _, err := st.Usage(context.Background(), "r999"); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)
}

func TestBatchesFormWhileCommitRuns(t *testing.T) {
	g := newGate()
	st := &fakeStore{hook: g.hook}
	w := New(st, Options{Logger: quiet, MaxBatch: 4})

	// An idle writer starts a commit for the first record at once, alone.
	if err := w.Enqueue(rec("first")); err != nil {
		t.Fatal(err)
	}
	if n := <-g.entered; n != 1 {
		t.Fatalf("first batch has %d records, want 1", n)
	}
	// Records arriving while it runs queue up.
	for i := range 10 {
		if err := w.Enqueue(rec(fmt.Sprintf("r%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if d := w.QueueDepth(); d != 11 {
		t.Errorf("QueueDepth = %d, want 11", d)
	}
	g.release()
	mustClose(t, w)
	if got, want := st.sizes(), []int{1, 4, 4, 2}; !slices.Equal(got, want) {
		t.Errorf("batch sizes = %v, want %v", got, want)
	}
	if d := w.QueueDepth(); d != 0 {
		t.Errorf("QueueDepth = %d after Close", d)
	}
}

func TestRetryUntilWritten(t *testing.T) {
	injected := errors.New("injected failure")
	var calls atomic.Int64
	st := &fakeStore{hook: func(context.Context, []sluice.UsageRecord) error {
		if calls.Add(1) <= 3 {
			return injected
		}
		return nil
	}}
	var returned atomic.Bool
	var reported []error
	w := New(st, Options{
		Logger:       quiet,
		RetryBackoff: time.Millisecond,
		OnError: func(err error) {
			// The writer calls OnError before it retries, so the waiter
			// must still be waiting.
			if returned.Load() {
				t.Error("Commit returned before its batch was written")
			}
			reported = append(reported, err)
		},
	})
	err := w.Commit(context.Background(), rec("retried"))
	returned.Store(true)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	mustClose(t, w) // orders the writer's appends to reported before the reads below
	if len(reported) != 3 {
		t.Fatalf("OnError called %d times, want 3", len(reported))
	}
	for _, err := range reported {
		if !errors.Is(err, injected) {
			t.Errorf("OnError got %v, want it to wrap the store's error", err)
		}
	}
	if got := st.written(); got["retried"] != 1 || len(got) != 1 {
		t.Errorf("written = %v, want the record once", got)
	}
}

func TestHungWriteIsRetried(t *testing.T) {
	var calls atomic.Int64
	st := &fakeStore{hook: func(ctx context.Context, _ []sluice.UsageRecord) error {
		if calls.Add(1) == 1 {
			<-ctx.Done() // the first attempt hangs until its deadline
			return ctx.Err()
		}
		return nil
	}}
	var reported []error
	w := New(st, Options{
		Logger:       quiet,
		WriteTimeout: time.Millisecond,
		RetryBackoff: time.Millisecond,
		OnError:      func(err error) { reported = append(reported, err) },
	})
	if err := w.Commit(context.Background(), rec("slow")); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)
	if len(reported) != 1 || !errors.Is(reported[0], context.DeadlineExceeded) {
		t.Errorf("OnError calls = %v, want one deadline exceeded", reported)
	}
}

func TestCloseFlushesQueue(t *testing.T) {
	g := newGate()
	st := &fakeStore{hook: g.hook}
	w := New(st, Options{Logger: quiet})
	for i := range 100 {
		if err := w.Enqueue(rec(fmt.Sprintf("r%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	<-g.entered
	closed := make(chan error, 1)
	go func() { closed <- w.Close(context.Background()) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while the first batch was still being written", err)
	default:
	}
	g.release()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := st.written(); len(got) != 100 {
		t.Fatalf("%d records written by the time Close returned, want 100", len(got))
	}
	if err := w.Enqueue(rec("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after Close: %v, want ErrClosed", err)
	}
	if err := w.Commit(context.Background(), rec("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit after Close: %v, want ErrClosed", err)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseGivesUpWhenContextEnds(t *testing.T) {
	st := &fakeStore{hook: func(ctx context.Context, _ []sluice.UsageRecord) error {
		return errors.New("database down")
	}}
	errored := make(chan struct{}, 100)
	w := New(st, Options{
		Logger:       quiet,
		RetryBackoff: time.Hour, // the writer is waiting to retry when Close gives up
		OnError:      func(error) { errored <- struct{}{} },
	})
	committed := make(chan error, 1)
	go func() { committed <- w.Commit(context.Background(), rec("stuck")) }()
	<-errored // "stuck" is being retried
	if err := w.Enqueue(rec("queued")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := w.Close(ctx)
	if !errors.Is(err, ErrAbandoned) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, want ErrAbandoned and context.Canceled", err)
	}
	if err := <-committed; !errors.Is(err, ErrAbandoned) {
		t.Errorf("waiter got %v, want ErrAbandoned", err)
	}
	select {
	case <-w.done:
	default:
		t.Error("writer goroutine still running after Close returned")
	}
	if d := w.QueueDepth(); d != 0 {
		t.Errorf("QueueDepth = %d after Close", d)
	}
}

func TestCanceledCommitIsStillWritten(t *testing.T) {
	g := newGate()
	st := &fakeStore{hook: g.hook}
	w := New(st, Options{Logger: quiet})
	if err := w.Enqueue(rec("blocking")); err != nil {
		t.Fatal(err)
	}
	<-g.entered
	ctx, cancel := context.WithCancel(context.Background())
	committed := make(chan error, 1)
	go func() { committed <- w.Commit(ctx, rec("impatient")) }()
	cancel()
	if err := <-committed; !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit = %v, want context.Canceled", err)
	}
	g.release()
	mustClose(t, w)
	if got := st.written(); got["impatient"] != 1 {
		t.Errorf("canceled record written %d times, want once", got["impatient"])
	}
}

func TestOnCommitReportsWait(t *testing.T) {
	var clock atomic.Int64 // nanoseconds since an arbitrary epoch
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	st := &fakeStore{hook: func(context.Context, []sluice.UsageRecord) error {
		clock.Add(int64(5 * time.Millisecond)) // the commit takes 5ms
		return nil
	}}
	type commit struct {
		n    int
		wait time.Duration
	}
	var commits []commit
	w := New(st, Options{Logger: quiet, Now: now, OnCommit: func(n int, wait time.Duration) {
		commits = append(commits, commit{n, wait})
	}})
	if err := w.Commit(context.Background(), rec("a")); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)
	if want := []commit{{1, 5 * time.Millisecond}}; !slices.Equal(commits, want) {
		t.Errorf("OnCommit calls = %v, want %v", commits, want)
	}
}

func TestRecordWithoutRequestID(t *testing.T) {
	st := &fakeStore{}
	w := New(st, Options{Logger: quiet})
	if err := w.Commit(context.Background(), sluice.UsageRecord{Team: "t"}); !errors.Is(err, ErrNoRequestID) {
		t.Errorf("Commit without request id: %v, want ErrNoRequestID", err)
	}
	if err := w.Enqueue(sluice.UsageRecord{}); !errors.Is(err, ErrNoRequestID) {
		t.Errorf("Enqueue without request id: %v, want ErrNoRequestID", err)
	}
	mustClose(t, w)
	if n := len(st.sizes()); n != 0 {
		t.Errorf("%d batches written, want none", n)
	}
}
