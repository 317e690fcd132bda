package postgres

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluice-gateway/sluice/store/storetest"
)

// BenchmarkInsertUsage measures one InsertUsage call, as the ledger writer
// makes it, for batches of varied records (from the synthetic ledger, so
// that a batch adds to many rollup rows).
//
//	SLUICE_TEST_POSTGRES=postgres://... go test -run '^$' -bench InsertUsage ./store/postgres/
func BenchmarkInsertUsage(b *testing.B) {
	for _, n := range []int{1, 32} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			st, err := Open(context.Background(), storetest.PostgresDSN(b))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			storetest.BenchInsert(b, st, n)
		})
	}
}
