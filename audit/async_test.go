package audit

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// TestAsyncWritesEverythingInOrder: records appended concurrently are all
// written, in a verifiable chain, and Close flushes the queue.
func TestAsyncWritesEverythingInOrder(t *testing.T) {
	ctx := context.Background()
	st := &MemoryStore{}
	a := NewAsync(NewChain(st, ChainOptions{}), AsyncOptions{})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if _, err := a.Append(ctx, Record{Kind: KindRequest, RequestID: fmt.Sprintf("%d-%d", g, i)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	last, err := VerifyStore(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if last.Seq != 800 {
		t.Fatalf("%d records written, want 800", last.Seq)
	}
	// After Close, appends are written synchronously.
	if _, err := a.Append(ctx, Record{Kind: KindRequest, RequestID: "late"}); err != nil {
		t.Fatal(err)
	}
	if last, _ := VerifyStore(ctx, st); last.Seq != 801 {
		t.Fatalf("late record not written: last %d", last.Seq)
	}
}
