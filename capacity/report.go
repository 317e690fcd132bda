package capacity

import (
	"cmp"
	"context"
	"math/bits"
	"slices"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/report"
)

// Utilisation bases.
const (
	BasisTokens   = "tokens"    // tokens over TokensPerSecond × hours
	BasisBusyTime = "busy_time" // call time over Concurrency × hours
)

// ReportResult is the capacity attribution report for [From, To).
type ReportResult struct {
	From            time.Time      `json:"from"`
	To              time.Time      `json:"to"`
	Entities        []EntityReport `json:"entities"`
	TotalCostMicros int64          `json:"total_cost_micros"`
	TotalCostUSD    string         `json:"total_cost_usd"`
}

// EntityReport is one served entity's capacity, what it cost and who used
// it. Usage counts only in charged hours: the current hour's appears once
// it has ended and been charged.
type EntityReport struct {
	Endpoint     string `json:"endpoint"`
	ServedEntity string `json:"served_entity"`
	Hours        int64  `json:"hours"`
	CostMicros   int64  `json:"cost_micros"`
	CostUSD      string `json:"cost_usd"`
	Tokens       int64  `json:"tokens"`
	Requests     int64  `json:"requests"`
	BusyMillis   int64  `json:"busy_millis"`
	// The capacity of the latest charged hour.
	TokensPerSecond int64 `json:"tokens_per_second"`
	Concurrency     int64 `json:"concurrency"`
	// EffectivePricePer1M is the cost per million tokens used, rounded to
	// the micro-dollar; nil when no tokens were used.
	EffectivePricePer1M    *int64 `json:"effective_price_per_1m_micros"`
	EffectivePricePer1MUSD string `json:"effective_price_per_1m_usd,omitempty"`
	// Utilisation is the fraction of the capacity used, on
	// UtilisationBasis: tokens when a tokens-per-second capacity was
	// declared, else busy time over the concurrency.
	Utilisation      float64     `json:"utilisation"`
	UtilisationBasis string      `json:"utilisation_basis"`
	Teams            []TeamShare `json:"teams"`
}

// TeamShare is a team's part of an entity's cost: each hour's charge is
// split in proportion to the teams' tokens in that hour, and an hour with
// no tokens goes to the idle row (Team "", Idle true). The shares sum to
// the entity's cost exactly.
type TeamShare struct {
	Team       string `json:"team"`
	Idle       bool   `json:"idle,omitempty"`
	Hours      int64  `json:"hours"` // hours with a share
	CostMicros int64  `json:"cost_micros"`
	CostUSD    string `json:"cost_usd"`
	Tokens     int64  `json:"tokens"`
	Requests   int64  `json:"requests"`
}

type entityKey struct{ endpoint, entity string }

type hourKey struct {
	entityKey
	hour int64 // Unix seconds
}

// Report attributes the capacity charged for hours in [from, to) to the
// teams that used it.
func Report(ctx context.Context, st sluice.CapacityStore, from, to time.Time) (*ReportResult, error) {
	charges, err := st.CapacityCharges(ctx, from, to)
	if err != nil {
		return nil, err
	}
	usage, err := st.EntityUsage(ctx, from, to)
	if err != nil {
		return nil, err
	}
	byHour := map[hourKey][]sluice.EntityHourUsage{}
	for _, u := range usage {
		k := hourKey{entityKey{u.Endpoint, u.ServedEntity}, u.Hour.Unix()}
		byHour[k] = append(byHour[k], u)
	}

	type acc struct {
		r              *EntityReport
		teams          map[string]*TeamShare
		latest         time.Time
		capTokens      int64 // tokens in hours with a token capacity
		capTokensDenom int64 // token capacity of those hours
		capBusy        int64 // busy ms in hours with only a concurrency
		capBusyDenom   int64
	}
	ents := map[entityKey]*acc{}
	var order []entityKey
	res := &ReportResult{From: from, To: to, Entities: []EntityReport{}}
	for _, c := range charges {
		ek := entityKey{c.Endpoint, c.ServedEntity}
		a := ents[ek]
		if a == nil {
			a = &acc{r: &EntityReport{Endpoint: c.Endpoint, ServedEntity: c.ServedEntity}, teams: map[string]*TeamShare{}}
			ents[ek] = a
			order = append(order, ek)
		}
		r := a.r
		r.Hours++
		r.CostMicros += c.CostMicros
		res.TotalCostMicros += c.CostMicros
		if !c.Hour.Before(a.latest) {
			a.latest, r.TokensPerSecond, r.Concurrency = c.Hour, c.TokensPerSecond, c.Concurrency
		}
		rows := byHour[hourKey{ek, c.Hour.Unix()}]
		var tokens, busy int64
		for _, u := range rows {
			tokens += u.Tokens
			busy += u.BusyMillis
			r.Tokens += u.Tokens
			r.Requests += u.Requests
			r.BusyMillis += u.BusyMillis
		}
		switch {
		case c.TokensPerSecond > 0:
			a.capTokens += tokens
			a.capTokensDenom += c.TokensPerSecond * 3600
		case c.Concurrency > 0:
			a.capBusy += busy
			a.capBusyDenom += c.Concurrency * 3600_000
		}
		team := func(name string) *TeamShare {
			t := a.teams[name]
			if t == nil {
				t = &TeamShare{Team: name, Idle: name == ""}
				a.teams[name] = t
			}
			return t
		}
		for i, share := range split(c.CostMicros, rows) {
			t := team(rows[i].Team)
			if rows[i].Tokens > 0 {
				t.Hours++
			}
			t.CostMicros += share
			t.Tokens += rows[i].Tokens
			t.Requests += rows[i].Requests
		}
		if tokens == 0 {
			t := team("")
			t.Hours++
			t.CostMicros += c.CostMicros
		}
	}

	slices.SortFunc(order, func(a, b entityKey) int {
		return cmp.Or(cmp.Compare(a.endpoint, b.endpoint), cmp.Compare(a.entity, b.entity))
	})
	for _, ek := range order {
		a := ents[ek]
		r := a.r
		r.CostUSD = report.USD(r.CostMicros)
		if r.Tokens > 0 {
			p := perMillion(r.CostMicros, r.Tokens)
			r.EffectivePricePer1M, r.EffectivePricePer1MUSD = &p, report.USD(p)
		}
		if a.capTokensDenom > 0 {
			r.UtilisationBasis = BasisTokens
			r.Utilisation = float64(a.capTokens) / float64(a.capTokensDenom)
		} else if a.capBusyDenom > 0 {
			r.UtilisationBasis = BasisBusyTime
			r.Utilisation = float64(a.capBusy) / float64(a.capBusyDenom)
		}
		r.Teams = make([]TeamShare, 0, len(a.teams))
		for _, t := range a.teams {
			t.CostUSD = report.USD(t.CostMicros)
			r.Teams = append(r.Teams, *t)
		}
		slices.SortFunc(r.Teams, func(x, y TeamShare) int {
			// Teams by name, the idle row last.
			if x.Idle != y.Idle {
				if x.Idle {
					return 1
				}
				return -1
			}
			return cmp.Compare(x.Team, y.Team)
		})
		res.Entities = append(res.Entities, *r)
	}
	res.TotalCostUSD = report.USD(res.TotalCostMicros)
	return res, nil
}

// split divides cost among rows in proportion to their tokens, rounding
// by largest remainder (ties to the team that sorts first) so the shares
// sum to cost exactly. With no tokens every share is 0.
func split(cost int64, rows []sluice.EntityHourUsage) []int64 {
	shares := make([]int64, len(rows))
	var total int64
	for _, u := range rows {
		total += max(u.Tokens, 0)
	}
	if total == 0 || cost <= 0 {
		return shares
	}
	rems := make([]int64, len(rows))
	left := cost
	for i, u := range rows {
		shares[i], rems[i] = mulDiv(cost, max(u.Tokens, 0), total)
		left -= shares[i]
	}
	idx := make([]int, len(rows))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		return cmp.Or(cmp.Compare(rems[b], rems[a]), cmp.Compare(rows[a].Team, rows[b].Team))
	})
	for _, i := range idx[:left] {
		shares[i]++
	}
	return shares
}

// mulDiv returns a*b/c and its remainder for non-negative a, b and
// c > 0 with a*b/c < 2^63, in 128-bit arithmetic.
func mulDiv(a, b, c int64) (q, r int64) {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	qu, ru := bits.Div64(hi, lo, uint64(c))
	return int64(qu), int64(ru)
}

// perMillion is cost×1e6/tokens rounded half up (saturating).
func perMillion(cost, tokens int64) int64 {
	hi, lo := bits.Mul64(uint64(cost), 1_000_000)
	lo, carry := bits.Add64(lo, uint64(tokens/2), 0)
	hi += carry
	if hi >= uint64(tokens) {
		return 1<<63 - 1
	}
	q, _ := bits.Div64(hi, lo, uint64(tokens))
	return int64(min(q, 1<<63-1))
}
