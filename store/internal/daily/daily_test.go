package daily

import (
	"math/rand/v2"
	"testing"
	"time"
)

func (r Range) contains(v int64) bool {
	return (!r.HasFrom || v >= r.From) && (!r.HasTo || v < r.To)
}

// parts counts the parts of p that hold the instant us.
func (p Plan) parts(us int64) int {
	n := 0
	if p.Daily && p.Days.contains(Day(us)) {
		n++
	}
	for _, r := range p.Raw {
		if r.contains(us) {
			n++
		}
	}
	return n
}

var day0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func TestSplit(t *testing.T) {
	d := func(n int) time.Time { return day0.AddDate(0, 0, n) }
	for _, tc := range []struct {
		name     string
		from, to time.Time
		daily    bool
		raw      int
	}{
		{"open", time.Time{}, time.Time{}, true, 0},
		{"whole days", d(0), d(30), true, 0},
		{"open start, whole end", time.Time{}, d(3), true, 0},
		{"whole start, open end", d(3), time.Time{}, true, 0},
		{"partial both ends", d(0).Add(time.Hour), d(30).Add(time.Hour), true, 2},
		{"partial start", d(0).Add(time.Microsecond), d(30), true, 1},
		{"partial end", d(0), d(30).Add(-time.Microsecond), true, 1},
		{"open start, partial end", time.Time{}, d(2).Add(time.Hour), true, 1},
		{"partial start, open end", d(2).Add(time.Hour), time.Time{}, true, 1},
		{"within a day", d(0).Add(time.Hour), d(0).Add(2 * time.Hour), false, 1},
		{"across one midnight", d(0).Add(time.Hour), d(1).Add(time.Hour), false, 1},
		{"exactly one day", d(1), d(2), true, 0},
		{"empty", d(1), d(1), false, 1},
		{"reversed", d(5), d(1), false, 1},
		{"before 1970", time.Date(1969, 12, 30, 12, 0, 0, 0, time.UTC), time.Date(1970, 1, 2, 12, 0, 0, 0, time.UTC), true, 2},
	} {
		p := Split(tc.from, tc.to)
		if p.Daily != tc.daily || len(p.Raw) != tc.raw {
			t.Errorf("%s: Split = %+v, want daily %v and %d raw ranges", tc.name, p, tc.daily, tc.raw)
		}
	}
}

// Every instant is in exactly one part if it is in [from, to), else in none.
func TestSplitCoversExactly(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	instant := func() time.Time {
		switch rng.IntN(4) {
		case 0:
			return time.Time{}
		case 1: // a midnight
			return day0.AddDate(0, 0, rng.IntN(20)-10)
		default:
			return day0.Add(time.Duration(rng.Int64N(int64(20*24*time.Hour))) - 10*24*time.Hour).Truncate(time.Microsecond)
		}
	}
	for range 2000 {
		from, to := instant(), instant()
		p := Split(from, to)
		for range 200 {
			var us int64
			if rng.IntN(3) == 0 && !from.IsZero() {
				us = Micros(from) + rng.Int64N(3) - 1 // around the bounds
			} else if rng.IntN(2) == 0 && !to.IsZero() {
				us = Micros(to) + rng.Int64N(3) - 1
			} else {
				us = Micros(day0) + rng.Int64N(24*DayMicros) - 12*DayMicros
			}
			in := (from.IsZero() || us >= Micros(from)) && (to.IsZero() || us < Micros(to))
			want := 0
			if in {
				want = 1
			}
			if got := p.parts(us); got != want {
				t.Fatalf("Split(%v, %v) = %+v: instant %v is in %d parts, want %d", from, to, p, time.UnixMicro(us).UTC(), got, want)
			}
		}
	}
}

func TestDay(t *testing.T) {
	for us, want := range map[int64]int64{
		0:              0,
		DayMicros - 1:  0,
		DayMicros:      1,
		-1:             -1,
		-DayMicros:     -1,
		-DayMicros - 1: -2,
	} {
		if got := Day(us); got != want {
			t.Errorf("Day(%d) = %d, want %d", us, got, want)
		}
	}
	if got := DayStart(Day(Micros(day0.Add(5 * time.Hour)))); !got.Equal(day0) {
		t.Errorf("DayStart = %v, want %v", got, day0)
	}
}

func TestBound(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want int64
	}{
		{day0, Micros(day0)},
		{day0.Add(time.Nanosecond), Micros(day0) + 1},
		{day0.Add(999 * time.Nanosecond), Micros(day0) + 1},
		{day0.Add(1001 * time.Nanosecond), Micros(day0) + 2},
		{time.Unix(0, -1), 0},
		{time.Unix(0, -1001), -1},
	} {
		if got := Bound(tc.t); got != tc.want {
			t.Errorf("Bound(%v) = %d, want %d", tc.t, got, tc.want)
		}
	}
}
