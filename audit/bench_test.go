package audit

import (
	"context"
	"testing"

	"github.com/sluice-gateway/sluice"
)

func BenchmarkSeal(b *testing.B) {
	r := sampleChain(1)[0]
	b.ReportAllocs()
	for b.Loop() {
		r.Seal(r.PrevHash)
	}
}

func BenchmarkVerify(b *testing.B) {
	recs := sampleChain(1000)
	b.ReportAllocs()
	for b.Loop() {
		if err := verify(recs, [32]byte{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
}

// discardStore accepts every append and keeps nothing.
type discardStore struct{}

func (discardStore) AppendAudit(context.Context, []Record) error { return nil }
func (discardStore) Audit(context.Context, Query) ([]Record, error) {
	return nil, nil
}
func (discardStore) LastAudit(context.Context) (Record, error) {
	return Record{}, sluice.ErrNotFound
}

// BenchmarkChainAppendParallel measures the Chain's own overhead (queueing,
// sealing, batching) over a store that keeps nothing.
func BenchmarkChainAppendParallel(b *testing.B) {
	c := NewChain(discardStore{}, ChainOptions{})
	r := sampleChain(1)[0]
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Append(context.Background(), r); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
