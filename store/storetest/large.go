package storetest

import (
	"context"
	"fmt"
	"iter"
	"math/rand/v2"
	"os"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
)

// LargeLedgerEnv gates the large-ledger report measurement: set it to 1 to
// load ten million synthetic records, or to another count. CI leaves it
// unset, and the measurement is skipped.
//
//	SLUICE_BENCH_10M=1 go test -run LargeLedger -v -timeout 2h ./store/sqlite/
//	SLUICE_BENCH_10M=1 SLUICE_TEST_POSTGRES=postgres://... go test -run LargeLedger -v -timeout 2h ./store/postgres/
const LargeLedgerEnv = "SLUICE_BENCH_10M"

// LargeLedgerSize returns how many records the large-ledger measurement
// loads, or skips tb if LargeLedgerEnv is unset.
func LargeLedgerSize(tb testing.TB) int {
	tb.Helper()
	v := os.Getenv(LargeLedgerEnv)
	switch v {
	case "":
		tb.Skip(LargeLedgerEnv + " is not set; skipping the large-ledger measurement")
	case "1":
		return 10_000_000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1000 {
		tb.Fatalf("%s=%q: want 1 (ten million) or a record count of at least 1000", LargeLedgerEnv, v)
	}
	return n
}

// Synthetic describes a deterministic synthetic ledger: N records in time
// order over Days UTC days from Start, from Keys keys spread evenly over
// Teams teams, on Endpoints endpoints. Traffic is skewed as it is in
// practice: a few keys send most requests, each key uses three endpoints,
// most requests name no end user, and each endpoint has a main and a
// fallback upstream.
type Synthetic struct {
	N                            int
	Start                        time.Time
	Days, Teams, Endpoints, Keys int
	UsersPerTeam                 int
	Seed                         uint64
}

// NewSynthetic returns the shape the large-ledger measurement uses: n
// records over 90 days from 2026-01-01, 50 teams, 20 endpoints, 2000 keys.
func NewSynthetic(n int) Synthetic {
	return Synthetic{N: n, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Days: 90, Teams: 50, Endpoints: 20, Keys: 2000, UsersPerTeam: 10, Seed: 42}
}

// All yields every record in time order. The record is reused: keep
// nothing of it after the loop body.
func (s Synthetic) All() iter.Seq[*sluice.UsageRecord] {
	return func(yield func(*sluice.UsageRecord) bool) {
		rng := rand.New(rand.NewPCG(s.Seed, s.Seed^0x9e3779b97f4a7c15))
		span := time.Duration(s.Days) * 24 * time.Hour
		step := span / time.Duration(s.N)
		var r sluice.UsageRecord
		for i := range s.N {
			u := rng.Float64()
			key := int(float64(s.Keys) * u * u * u) // heavily skewed toward low ids
			team := key * s.Teams / s.Keys
			ep := (key*7 + rng.IntN(3)) % s.Endpoints
			up := ep % 5
			if rng.IntN(10) == 0 {
				up = (up + 1) % 5 // fallback
			}
			user := ""
			if rng.IntN(10) < 3 {
				user = fmt.Sprintf("user-%02d-%02d", team, rng.IntN(s.UsersPerTeam))
			}
			prompt, completion := 50+rng.Int64N(4000), rng.Int64N(1500)
			r = sluice.UsageRecord{
				RequestID:        fmt.Sprintf("syn-%010d", i),
				Time:             s.Start.Add(time.Duration(i)*step + time.Duration(rng.Int64N(int64(step)+1))).Truncate(time.Microsecond),
				KeyID:            fmt.Sprintf("k_%04d", key),
				Team:             fmt.Sprintf("team-%02d", team),
				User:             user,
				Endpoint:         fmt.Sprintf("endpoint-%02d", ep),
				API:              sluice.APIChat,
				Upstream:         fmt.Sprintf("upstream-%d", up),
				UpstreamModel:    fmt.Sprintf("model-%02d", ep),
				PromptTokens:     prompt,
				CompletionTokens: completion,
				TotalTokens:      prompt + completion,
				UsageSource:      sluice.UsageUpstream,
				CostMicros:       prompt*(1+int64(ep%4)) + completion*(4+int64(ep%4)*2),
				PriceVersion:     "2026-01-01",
				Status:           200,
				Latency:          time.Duration(200+rng.IntN(5000)) * time.Millisecond,
				TTFT:             time.Duration(50+rng.IntN(500)) * time.Millisecond,
				Stream:           rng.IntN(2) == 0,
				ClientAddr:       "127.0.0.1:40000",
			}
			if rng.IntN(20) == 0 {
				r.Status, r.ErrorClass, r.CompletionTokens, r.TotalTokens = 502, sluice.ErrClassUpstreamError, 0, prompt
			}
			if !yield(&r) {
				return
			}
		}
	}
}

// Reporter runs a usage report one way or another.
type Reporter func(ctx context.Context, q sluice.UsageQuery) ([]sluice.UsageRow, error)

// TimeLargeReports times the reports the large-ledger measurement makes on
// a ledger loaded from s: by team, by team and endpoint, by day and by
// key over a month of whole days, by team over a month with partial days
// at both ends, and by team over everything. Each is run with report (the
// store's UsageReport) and, if raw is not nil, with the raw ledger only,
// and the two answers must be equal.
func TimeLargeReports(t *testing.T, s Synthetic, report, raw Reporter) {
	t.Helper()
	ctx := context.Background()
	month := s.Start.AddDate(0, 1, 0) // the second month of the ledger
	g := func(gs ...sluice.UsageGroup) []sluice.UsageGroup { return gs }
	for _, c := range []struct {
		name string
		q    sluice.UsageQuery
	}{
		{"by=team, one month", sluice.UsageQuery{From: month, To: month.AddDate(0, 1, 0), GroupBy: g(sluice.GroupTeam)}},
		{"by=team,endpoint, one month", sluice.UsageQuery{From: month, To: month.AddDate(0, 1, 0), GroupBy: g(sluice.GroupTeam, sluice.GroupEndpoint)}},
		{"by=day, one month", sluice.UsageQuery{From: month, To: month.AddDate(0, 1, 0), GroupBy: g(sluice.GroupDay)}},
		{"by=key, one month", sluice.UsageQuery{From: month, To: month.AddDate(0, 1, 0), GroupBy: g(sluice.GroupKey)}},
		{"by=team, month with partial days", sluice.UsageQuery{From: month.Add(9*time.Hour + 30*time.Minute), To: month.AddDate(0, 1, 0).Add(17*time.Hour + 45*time.Minute), GroupBy: g(sluice.GroupTeam)}},
		{"by=team, everything", sluice.UsageQuery{GroupBy: g(sluice.GroupTeam)}},
	} {
		start := time.Now()
		got, err := report(ctx, c.q)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var requests int64
		for _, r := range got {
			requests += r.Requests
		}
		line := fmt.Sprintf("%-34s %4d rows %9d records  report %8.1f ms", c.name, len(got), requests, ms(took))
		if raw != nil {
			start = time.Now()
			want, err := raw(ctx, c.q)
			rawTook := time.Since(start)
			if err != nil {
				t.Fatalf("%s (raw): %v", c.name, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: report differs from the raw ledger's", c.name)
			}
			line += fmt.Sprintf("  raw ledger only %9.1f ms", ms(rawTook))
		}
		t.Log(line)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// AssertSameReports checks that got and want give the same answer to
// reports by every grouping, over everything and over ranges with whole
// and partial days between from and to.
func AssertSameReports(t *testing.T, got, want Reporter, from, to time.Time) {
	t.Helper()
	ctx := context.Background()
	mid := from.Add(to.Sub(from) / 2)
	ranges := [][2]time.Time{
		{},
		{from, to},
		{from.Truncate(24 * time.Hour).Add(24 * time.Hour), to.Truncate(24 * time.Hour)},
		{from.Add(5 * time.Hour), to.Add(-5 * time.Hour)},
		{mid, mid.Add(3 * time.Hour)},
		{mid, time.Time{}},
		{time.Time{}, mid},
	}
	for _, r := range ranges {
		for _, g := range groupings {
			q := sluice.UsageQuery{From: r[0], To: r[1], GroupBy: g}
			a, err := got(ctx, q)
			if err != nil {
				t.Fatalf("report %v from %v to %v: %v", g, q.From, q.To, err)
			}
			b, err := want(ctx, q)
			if err != nil {
				t.Fatalf("report %v from %v to %v: %v", g, q.From, q.To, err)
			}
			if len(a) == 0 && r == [2]time.Time{} {
				t.Fatalf("report %v over everything is empty", g)
			}
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("report %v from %v to %v differs\n got %+v\nwant %+v", g, q.From, q.To, a, b)
			}
		}
	}
}

// AssertUpgradedLedger checks a store opened on a ledger that an older
// Sluice wrote with s's records: every step-th record reads back as it
// was, with the fields added since (” and 0) empty; none of them is
// attributed to a served entity; and the store takes new records with
// every field.
func AssertUpgradedLedger(t *testing.T, st CapacityStore, s Synthetic, step int) {
	t.Helper()
	ctx := context.Background()
	i := 0
	for r := range s.All() {
		if i++; (i-1)%step != 0 {
			continue
		}
		got, err := st.Usage(ctx, r.RequestID)
		if err != nil {
			t.Fatalf("record %s after the upgrade: %v", r.RequestID, err)
		}
		if !got.Time.Equal(r.Time) {
			t.Fatalf("record %s after the upgrade: time %v, want %v", r.RequestID, got.Time, r.Time)
		}
		got.Time = r.Time
		if got != *r {
			t.Fatalf("record after the upgrade\n got %+v\nwant %+v", got, *r)
		}
	}
	if rows, err := st.EntityUsage(ctx, time.Time{}, time.Time{}); err != nil || len(rows) != 0 {
		t.Fatalf("entity usage of records without served entities = %+v, %v; want none", rows, err)
	}
	rec := fullRecord("after-upgrade")
	if err := st.InsertUsage(ctx, []sluice.UsageRecord{rec}); err != nil {
		t.Fatal(err)
	}
	got, err := st.Usage(ctx, rec.RequestID)
	if want := wantStored(rec); err != nil || !got.Time.Equal(want.Time) ||
		got.ServedEntity != want.ServedEntity || got.AttemptLog != want.AttemptLog || got.Attempts != want.Attempts ||
		got.UsageContext != want.UsageContext || got.ClientRequestID != want.ClientRequestID {
		t.Fatalf("record inserted after the upgrade = %+v, %v; want %+v", got, err, want)
	}
}

// SyntheticBatch returns n records of one day of the synthetic ledger's
// traffic, for benchmarks of the insert path.
func SyntheticBatch(n int) []sluice.UsageRecord {
	s := NewSynthetic(n)
	s.Days = 1
	out := make([]sluice.UsageRecord, 0, n)
	for r := range s.All() {
		out = append(out, *r)
	}
	return out
}

// BenchInsert measures InsertUsage of batches of n records of the
// synthetic ledger's traffic, each with a new request id, and reports the
// time per record besides the time per batch.
func BenchInsert(b *testing.B, st sluice.UsageStore, n int) {
	pool := SyntheticBatch(1 << 14)
	batch := make([]sluice.UsageRecord, n)
	ctx := context.Background()
	seq := 0
	for b.Loop() {
		for i := range batch {
			batch[i] = pool[seq%len(pool)]
			batch[i].RequestID = fmt.Sprintf("bench-%d", seq)
			seq++
		}
		if err := st.InsertUsage(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(seq), "ns/record")
}
