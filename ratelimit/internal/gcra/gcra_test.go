package gcra

import (
	"math"
	"testing"
	"time"
)

func TestDrain(t *testing.T) {
	for _, tc := range []struct{ level, limit, elapsed, want int64 }{
		{600, 10, 0, 600},
		{600, 10, 59, 10},
		{600, 10, 60, 0},
		{600, 10, 61, 0},
		{600, 10, -5, 600},                 // time running backwards refills nothing
		{600, 0, 1, 0},                     // unlimited
		{MaxLevel, 1, math.MaxInt64, 0},    // no overflow on huge gaps
		{MaxLevel, 1e11, math.MaxInt64, 0}, //
		{MaxLevel, 1, 1, MaxLevel - 1},
	} {
		if got := Drain(tc.level, tc.limit, tc.elapsed); got != tc.want {
			t.Errorf("Drain(%d, %d, %d) = %d, want %d", tc.level, tc.limit, tc.elapsed, got, tc.want)
		}
	}
}

func TestNeed(t *testing.T) {
	for _, tc := range []struct{ level, limit, units, want int64 }{
		{0, 3, 3, 0},
		{0, 3, 4, -1},
		{120_000, 3, 1, 0},
		{120_001, 3, 1, 1},
		{180_000, 3, 1, 20_000},
		{180_000, 7, 1, 0},
		{420_000, 7, 1, 8572},         // 60000/7 rounded up
		{MaxLevel, 1e11, 1e11, 45036}, // ceil(2^52 / 1e11)
		{5, 0, 1e11, 0},               // unlimited
	} {
		if got := Need(tc.level, tc.limit, tc.units); got != tc.want {
			t.Errorf("Need(%d, %d, %d) = %d, want %d", tc.level, tc.limit, tc.units, got, tc.want)
		}
	}
}

func TestAddRemainingResetTTL(t *testing.T) {
	if got := Add(0, 2); got != 120_000 {
		t.Errorf("Add(0, 2) = %d", got)
	}
	if got := Add(60_000, -5); got != 0 {
		t.Errorf("Add below zero = %d", got)
	}
	if got := Add(MaxLevel-1, 1e11); got != MaxLevel {
		t.Errorf("Add above MaxLevel = %d", got)
	}
	if got := Remaining(0, 1e11); got != 1e11 {
		t.Errorf("Remaining(0, 1e11) = %d", got)
	}
	if got := Remaining(119_999, 3); got != 1 {
		t.Errorf("Remaining(119999, 3) = %d", got)
	}
	if got := Remaining(MaxLevel, 3); got != 0 {
		t.Errorf("Remaining in debt = %d", got)
	}
	if got := Reset(120_001, 3); got != 40_001*time.Millisecond {
		t.Errorf("Reset(120001, 3) = %v", got)
	}
	if got := TTL(0, 0, 0, 0); got != 1 {
		t.Errorf("TTL of nothing = %d", got)
	}
	if got := TTL(60_000, 1, 600_000, 1000); got != 60_000 {
		t.Errorf("TTL = %d", got)
	}
}
