package capacity

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
)

func charge(ep, ent string, hour time.Time, micros, tps, conc int64) sluice.CapacityCharge {
	return sluice.CapacityCharge{Endpoint: ep, ServedEntity: ent, Hour: hour, CostMicros: micros, TokensPerSecond: tps, Concurrency: conc}
}

func use(ep, ent string, hour time.Time, team string, tokens, requests, busy int64) sluice.EntityHourUsage {
	return sluice.EntityHourUsage{Endpoint: ep, ServedEntity: ent, Hour: hour, Team: team, Tokens: tokens, Requests: requests, BusyMillis: busy}
}

func reportStore(t *testing.T) *memStore {
	st := newMemStore()
	if err := st.AccrueCapacity(context.Background(), []sluice.CapacityCharge{
		// An odd amount split three ways.
		charge("chat", "pt", at(10, 0), 1_000_001, 100, 0),
		// Nobody used hour 11.
		charge("chat", "pt", at(11, 0), 1_000_001, 100, 0),
		charge("chat", "pt", at(12, 0), 10, 100, 0),
		// A custom model measured by busy time.
		charge("vision", "custom", at(10, 0), 3_000_000, 0, 4),
	}); err != nil {
		t.Fatal(err)
	}
	st.usage = []sluice.EntityHourUsage{
		use("chat", "pt", at(10, 0), "a", 1000, 2, 500),
		use("chat", "pt", at(10, 0), "b", 1000, 3, 500),
		use("chat", "pt", at(10, 0), "c", 1000, 1, 500),
		use("chat", "pt", at(12, 0), "a", 7, 1, 10),
		use("chat", "pt", at(12, 0), "b", 3, 1, 10),
		// Failed calls use no tokens: they get no share.
		use("chat", "pt", at(12, 0), "d", 0, 4, 10),
		// The running hour has no charge yet: left out.
		use("chat", "pt", at(13, 0), "a", 5000, 1, 10),
		use("vision", "custom", at(10, 0), "b", 900, 9, 3_600_000),
		// Pay-per-token entities have usage and no charges: left out.
		use("chat", "gpt", at(10, 0), "a", 42, 1, 1),
	}
	return st
}

func TestReportAttribution(t *testing.T) {
	st := reportStore(t)
	res, err := Report(context.Background(), st, day, day.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Entities) != 2 || res.TotalCostMicros != 2_000_012+3_000_000 || res.TotalCostUSD != "5.000012" {
		t.Fatalf("report: %d entities, total %d (%s)", len(res.Entities), res.TotalCostMicros, res.TotalCostUSD)
	}
	pt := res.Entities[0]
	if pt.Endpoint != "chat" || pt.ServedEntity != "pt" || pt.Hours != 3 || pt.CostMicros != 2_000_012 ||
		pt.Tokens != 3010 || pt.Requests != 12 || pt.TokensPerSecond != 100 {
		t.Fatalf("pt = %+v", pt)
	}
	// 2,000,012 micro-dollars over 3,010 tokens is 664,455,813.95... per 1M.
	if pt.EffectivePricePer1M == nil || *pt.EffectivePricePer1M != 664_455_814 || pt.EffectivePricePer1MUSD != "664.455814" {
		t.Fatalf("effective price = %v %q", pt.EffectivePricePer1M, pt.EffectivePricePer1MUSD)
	}
	if want := 3010.0 / (100 * 3600 * 3); pt.UtilisationBasis != BasisTokens || pt.Utilisation != want {
		t.Fatalf("utilisation = %v on %s, want %v", pt.Utilisation, pt.UtilisationBasis, want)
	}
	want := []TeamShare{
		// Hour 10: 333,333.67 each; the two remainders go to a and b.
		// Hour 12: 7 and 3 of 10.
		{Team: "a", Hours: 2, CostMicros: 333_334 + 7, Tokens: 1007, Requests: 3},
		{Team: "b", Hours: 2, CostMicros: 333_334 + 3, Tokens: 1003, Requests: 4},
		{Team: "c", Hours: 1, CostMicros: 333_333, Tokens: 1000, Requests: 1},
		{Team: "d", Hours: 0, CostMicros: 0, Tokens: 0, Requests: 4},
		{Team: "", Idle: true, Hours: 1, CostMicros: 1_000_001},
	}
	var sum int64
	for i, w := range want {
		got := pt.Teams[i]
		got.CostUSD = ""
		if got != w {
			t.Fatalf("team row %d = %+v, want %+v", i, got, w)
		}
		sum += got.CostMicros
	}
	if len(pt.Teams) != len(want) || sum != pt.CostMicros {
		t.Fatalf("%d team rows summing to %d, want %d summing to %d", len(pt.Teams), sum, len(want), pt.CostMicros)
	}

	cu := res.Entities[1]
	if cu.UtilisationBasis != BasisBusyTime || cu.Utilisation != 0.25 || cu.Concurrency != 4 {
		t.Fatalf("custom utilisation = %v on %s", cu.Utilisation, cu.UtilisationBasis)
	}
	if len(cu.Teams) != 1 || cu.Teams[0].Team != "b" || cu.Teams[0].CostMicros != 3_000_000 || cu.Teams[0].CostUSD != "3.000000" {
		t.Fatalf("custom teams = %+v", cu.Teams)
	}
}

func TestReportIdleEntityHasNoPrice(t *testing.T) {
	st := newMemStore()
	st.AccrueCapacity(context.Background(), []sluice.CapacityCharge{charge("e", "s", at(1, 0), 7, 10, 0)})
	res, err := Report(context.Background(), st, day, day.Add(time.Hour*24))
	if err != nil {
		t.Fatal(err)
	}
	e := res.Entities[0]
	if e.EffectivePricePer1M != nil || e.Utilisation != 0 || len(e.Teams) != 1 || !e.Teams[0].Idle || e.Teams[0].CostMicros != 7 {
		t.Fatalf("idle entity = %+v", e)
	}
	b, _ := json.Marshal(e)
	if !strings.Contains(string(b), `"effective_price_per_1m_micros":null`) {
		t.Fatalf("JSON %s", b)
	}
}

// TestSplitSumsExactly checks the largest-remainder split on many random
// hours: the shares sum to the charge and each is within one micro-dollar
// of its exact proportion.
func TestSplitSumsExactly(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		cost := r.Int64N(1 << 40)
		if r.IntN(4) == 0 {
			cost = r.Int64N(10)
		}
		rows := make([]sluice.EntityHourUsage, 1+r.IntN(12))
		var total int64
		for i := range rows {
			rows[i] = sluice.EntityHourUsage{Team: string(rune('a' + i)), Tokens: r.Int64N(1 << 34)}
			if r.IntN(5) == 0 {
				rows[i].Tokens = r.Int64N(3)
			}
			total += rows[i].Tokens
		}
		shares := split(cost, rows)
		var sum int64
		for i, s := range shares {
			sum += s
			if total > 0 {
				exact := float64(cost) * float64(rows[i].Tokens) / float64(total)
				if d := float64(s) - exact; d < -1.001 || d > 1.001 {
					t.Fatalf("share %d of %d = %d, exact %f", i, cost, s, exact)
				}
			}
		}
		if total > 0 && sum != cost {
			t.Fatalf("shares of %d over %v sum to %d", cost, rows, sum)
		}
	}
	// Large enough that cost×tokens overflows 64 bits.
	big := split(1<<50, []sluice.EntityHourUsage{{Team: "a", Tokens: 1 << 40}, {Team: "b", Tokens: 1<<40 + 1}})
	if big[0]+big[1] != 1<<50 {
		t.Fatalf("overflowing split = %v", big)
	}
}

func TestHandler(t *testing.T) {
	st := reportStore(t)
	now := func() time.Time { return at(15, 0) }
	srv := httptest.NewServer(Handler(st, now))
	defer srv.Close()
	get := func(query string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/?" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		if _, err := io.Copy(&b, resp.Body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b.String()
	}
	code, body := get("")
	var res ReportResult
	if err := json.Unmarshal([]byte(body), &res); code != 200 || err != nil {
		t.Fatalf("default range: %d %s (%v)", code, body, err)
	}
	if !res.From.Equal(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)) || !res.To.Equal(at(15, 0)) || res.TotalCostMicros != 5_000_012 {
		t.Fatalf("month to date: %v to %v, total %d", res.From, res.To, res.TotalCostMicros)
	}
	// to is exclusive: the day before has nothing.
	if code, body := get("from=2026-11-01&to=2026-11-02"); code != 200 || !strings.Contains(body, `"entities": []`) {
		t.Fatalf("previous day: %d %s", code, body)
	}
	for _, q := range []string{"from=yesterday", "from=2026-11-03&to=2026-11-02", "from=2020-01-01&to=2026-01-01"} {
		if code, body := get(q); code != 400 || !strings.Contains(body, "invalid_value") {
			t.Fatalf("%s: %d %s", q, code, body)
		}
	}
	resp, err := http.Post(srv.URL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	st.fail = errors.New("connect to db.internal:5432 failed: password=hunter2")
	if code, body := get(""); code != 500 || strings.Contains(body, "hunter2") || strings.Contains(body, "db.internal") {
		t.Fatalf("store failure: %d %s", code, body)
	}
}
