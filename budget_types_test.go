package sluice

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func TestPeriodAt(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	kolkata, _ := time.LoadLocation("Asia/Kolkata")
	utc := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, time.UTC) }
	for _, tc := range []struct {
		period     BudgetPeriod
		zone       string
		at         time.Time
		start, end time.Time
	}{
		{PeriodDay, "", utc(2026, 3, 2, 10, 0), utc(2026, 3, 2, 0, 0), utc(2026, 3, 3, 0, 0)},
		{PeriodDay, "UTC", utc(2026, 3, 2, 0, 0), utc(2026, 3, 2, 0, 0), utc(2026, 3, 3, 0, 0)},
		// Weeks start on Monday: 1 March 2026 is a Sunday.
		{PeriodWeek, "", utc(2026, 3, 1, 23, 59), utc(2026, 2, 23, 0, 0), utc(2026, 3, 2, 0, 0)},
		{PeriodWeek, "", utc(2026, 3, 2, 0, 0), utc(2026, 3, 2, 0, 0), utc(2026, 3, 9, 0, 0)},
		{PeriodMonth, "", utc(2026, 12, 31, 23, 59), utc(2026, 12, 1, 0, 0), utc(2027, 1, 1, 0, 0)},
		{PeriodMonth, "", utc(2028, 2, 29, 12, 0), utc(2028, 2, 1, 0, 0), utc(2028, 3, 1, 0, 0)},
		// New York springs forward on 8 March 2026: that day has 23 hours.
		{PeriodDay, "America/New_York", utc(2026, 3, 8, 12, 0), time.Date(2026, 3, 8, 0, 0, 0, 0, ny), time.Date(2026, 3, 9, 0, 0, 0, 0, ny)},
		{PeriodDay, "America/New_York", utc(2026, 3, 9, 3, 59), time.Date(2026, 3, 8, 0, 0, 0, 0, ny), time.Date(2026, 3, 9, 0, 0, 0, 0, ny)},
		// 20:00 UTC on 31 March is already April in India.
		{PeriodMonth, "Asia/Kolkata", utc(2026, 3, 31, 20, 0), time.Date(2026, 4, 1, 0, 0, 0, 0, kolkata), time.Date(2026, 5, 1, 0, 0, 0, 0, kolkata)},
		{PeriodLifetime, "Asia/Kolkata", utc(1999, 1, 1, 0, 0), LifetimeStart, time.Time{}},
	} {
		b := Budget{ID: "b", Period: tc.period, TimeZone: tc.zone}
		start, end, err := b.PeriodAt(tc.at)
		if err != nil || !start.Equal(tc.start) || !end.Equal(tc.end) || start.Location() != time.UTC {
			t.Errorf("%s in %q at %v: [%v, %v), %v; want [%v, %v)", tc.period, tc.zone, tc.at, start, end, err, tc.start.UTC(), tc.end.UTC())
		}
	}
	if d := time.Date(2026, 3, 9, 0, 0, 0, 0, ny).Sub(time.Date(2026, 3, 8, 0, 0, 0, 0, ny)); d != 23*time.Hour {
		t.Errorf("test assumption: 8 March 2026 lasts %v in New York", d)
	}
	b := Budget{ID: "b", Period: PeriodDay, TimeZone: "Nowhere/Atlantis"}
	if _, _, err := b.PeriodAt(time.Now()); err == nil {
		t.Error("unknown zone accepted")
	}
}

// Periods tile time: each instant is in exactly one period, which ends
// where the next begins, in zones with odd offsets and with daylight
// saving changes at midnight.
func TestPeriodsTileTime(t *testing.T) {
	zones := []string{"", "America/New_York", "America/Santiago", "America/Havana", "Asia/Tehran",
		"Australia/Lord_Howe", "Pacific/Chatham", "Asia/Kathmandu", "Europe/London", "Pacific/Apia"}
	for _, z := range zones {
		if _, err := time.LoadLocation(z); err != nil {
			t.Skipf("no time zone database: %v", err)
		}
	}
	rapid.Check(t, func(t *rapid.T) {
		b := Budget{
			ID:       "b",
			Period:   rapid.SampledFrom([]BudgetPeriod{PeriodDay, PeriodWeek, PeriodMonth}).Draw(t, "period"),
			TimeZone: rapid.SampledFrom(zones).Draw(t, "zone"),
		}
		at := time.Unix(rapid.Int64Range(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC).Unix()).Draw(t, "at"), 0)
		start, end, err := b.PeriodAt(at)
		if err != nil {
			t.Fatal(err)
		}
		if at.Before(start) || !at.Before(end) {
			t.Fatalf("%v is not in its period [%v, %v)", at, start, end)
		}
		if s, _, _ := b.PeriodAt(start); !s.Equal(start) {
			t.Fatalf("the period of its start %v starts at %v", start, s)
		}
		if s, _, _ := b.PeriodAt(end); !s.Equal(end) {
			t.Fatalf("the period after [%v, %v) starts at %v", start, end, s)
		}
		if s, _, _ := b.PeriodAt(end.Add(-time.Nanosecond)); !s.Equal(start) {
			t.Fatalf("the last instant of [%v, %v) is in the period from %v", start, end, s)
		}
		if d := end.Sub(start); d < 22*time.Hour || d > 32*24*time.Hour {
			t.Fatalf("period [%v, %v) lasts %v", start, end, d)
		}
	})
}

func TestBudgetValidate(t *testing.T) {
	good := Budget{ID: "b", Scope: ScopeTeamEndpoint, Subject: "ml/gpt", Period: PeriodWeek, TimeZone: "Europe/Paris",
		LimitMicros: MaxBudgetMicros, AlertThresholds: []int{1, 1000}}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid budget: %v", err)
	}
	for want, change := range map[string]func(*Budget){
		"id must be":      func(b *Budget) { b.ID = "" },
		"unknown scope":   func(b *Budget) { b.Scope = "org" },
		"team/endpoint":   func(b *Budget) { b.Subject = "ml" },
		"empty subject":   func(b *Budget) { b.Scope, b.Subject = ScopeKey, "" },
		"unknown period":  func(b *Budget) { b.Period = "" },
		"time zone":       func(b *Budget) { b.TimeZone = "Europe/Atlantis" },
		"limit must be":   func(b *Budget) { b.LimitMicros = MaxBudgetMicros + 1 },
		"threshold 1001%": func(b *Budget) { b.AlertThresholds = []int{1001} },
		"threshold -5%":   func(b *Budget) { b.AlertThresholds = []int{-5} },
		"without NUL":     func(b *Budget) { b.ID = "a\x00b" },
		"subject must be": func(b *Budget) { b.Subject = "ml/\xff" },
		`must be "team`:   func(b *Budget) { b.Subject = "/gpt" },
	} {
		b := good
		change(&b)
		err := b.Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want an error containing %q, got %v", want, err)
		}
	}
}

func TestThresholdsReached(t *testing.T) {
	b := Budget{LimitMicros: 200, AlertThresholds: []int{50, 80, 100, 150}}
	for settled, want := range map[int64][]int{0: nil, 99: nil, 100: {50}, 159: {50}, 160: {50, 80}, 200: {50, 80, 100}, 1000: {50, 80, 100, 150}} {
		if got := b.ThresholdsReached(settled); !slices.Equal(got, want) {
			t.Errorf("ThresholdsReached(%d) = %v, want %v", settled, got, want)
		}
	}
	big := Budget{LimitMicros: MaxBudgetMicros, AlertThresholds: []int{1000}}
	if got := big.ThresholdsReached(10 * MaxBudgetMicros); !slices.Equal(got, []int{1000}) {
		t.Errorf("ThresholdsReached at the largest values = %v", got)
	}
}

func TestTargets(t *testing.T) {
	got := BudgetSubjects{KeyID: "k", Team: "ml", Endpoint: "gpt"}.Targets()
	want := []BudgetTarget{{ScopeKey, "k"}, {ScopeTeam, "ml"}, {ScopeEndpoint, "gpt"}, {ScopeTeamEndpoint, "ml/gpt"}}
	if !slices.Equal(got, want) {
		t.Errorf("Targets = %v", got)
	}
	if got := (BudgetSubjects{Endpoint: "gpt"}).Targets(); !slices.Equal(got, []BudgetTarget{{ScopeEndpoint, "gpt"}}) {
		t.Errorf("Targets without key and team = %v", got)
	}
	b := Budget{Scope: ScopeTeamEndpoint, Subject: "ml/gpt"}
	if !b.AppliesTo(BudgetSubjects{Team: "ml", Endpoint: "gpt"}) || b.AppliesTo(BudgetSubjects{Team: "ml", Endpoint: "embed"}) {
		t.Error("AppliesTo on a team and endpoint")
	}
}

func TestBudgetExceededError(t *testing.T) {
	e := &BudgetExceededError{BudgetID: "ml-monthly", Scope: ScopeTeamEndpoint, Subject: "ml/gpt", Period: PeriodMonth,
		ResetAt: time.Date(2026, 4, 1, 4, 0, 0, 0, time.UTC), LimitMicros: 100_000_000, SettledMicros: 99_250_000,
		ReservedMicros: 500_000, RequestedMicros: 1_234_567}
	want := `month budget "ml-monthly" on team and endpoint "ml/gpt" is exhausted ($99.75 of $100.00 spent or in flight, this request may cost up to $1.234567); it resets at 2026-04-01T04:00:00Z`
	if e.Error() != want {
		t.Errorf("Error() =\n%s\nwant\n%s", e.Error(), want)
	}
	var err error = e
	if !errors.Is(err, ErrBudgetExceeded) || errors.Is(err, ErrNotFound) {
		t.Error("errors.Is")
	}
	e.ResetAt = time.Time{}
	if !strings.HasSuffix(e.Error(), "; it does not reset") {
		t.Errorf("lifetime: %s", e.Error())
	}
}

func TestFormatUSD(t *testing.T) {
	for micros, want := range map[int64]string{
		0: "$0.00", 1: "$0.000001", 10_000: "$0.01", 1_500_000: "$1.50", 123_456_789: "$123.456789", -2_500_000: "-$2.50",
	} {
		if got := FormatUSD(micros); got != want {
			t.Errorf("FormatUSD(%d) = %q, want %q", micros, got, want)
		}
	}
}
