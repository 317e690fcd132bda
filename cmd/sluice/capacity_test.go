package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/capacity"
)

func TestCapacityTable(t *testing.T) {
	price := int64(664_455_814)
	res := &capacity.ReportResult{
		From: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC),
		TotalCostMicros: 2_000_012,
		Entities: []capacity.EntityReport{{
			Endpoint: "chat", ServedEntity: "pt", Hours: 2, CostMicros: 2_000_012, CostUSD: "2.000012",
			Tokens: 3010, Requests: 12, EffectivePricePer1M: &price, EffectivePricePer1MUSD: "664.455814",
			Utilisation: 0.0042, UtilisationBasis: capacity.BasisTokens,
			Teams: []capacity.TeamShare{
				{Team: "a", Hours: 1, CostMicros: 1_000_011, CostUSD: "1.000011", Tokens: 3010, Requests: 12},
				{Idle: true, Hours: 1, CostMicros: 1_000_001, CostUSD: "1.000001"},
			},
		}},
	}
	var b strings.Builder
	if err := writeCapacityTable(&b, res); err != nil {
		t.Fatal(err)
	}
	want := `Capacity from 2026-11-01T00:00:00Z to 2026-11-02T00:00:00Z (UTC)

  endpoint  served_entity    team  hours  requests  tokens  cost_usd  usd_per_1m_tokens     utilisation
      chat             pt              2        12    3010  2.000012         664.455814  0.4% of tokens
                                a      1        12    3010  1.000011
                           (idle)      1         0       0  1.000001
     TOTAL                                                  2.000012
`
	lines := strings.Split(b.String(), "\n")
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], " ")
	}
	if got := strings.Join(lines, "\n"); got != want {
		t.Fatalf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestCapacityCommandFlags(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{{"--from", "yesterday"}, {"--from", "2026-11-02", "--to", "2026-11-01"}, {"extra"}} {
		if _, err := captureStdout(t, func() error { return runCapacity(ctx, args) }); err == nil {
			t.Errorf("capacity %v accepted", args)
		}
	}
}
