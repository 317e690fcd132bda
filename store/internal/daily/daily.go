// Package daily plans usage reports over the ledger's daily rollup, which
// both stores keep: one row per UTC day and combination of team,
// endpoint, key, user, upstream model and upstream, with the sums of the
// records in it.
//
// A report over [From, To) reads the rollup for the whole UTC days inside
// the range and the raw ledger only for the partial days at its edges, so
// that its sums are exactly those of the matching records:
//
//	p := daily.Split(q.From, q.To)
//	// p.Days (if p.Daily) from usage_daily, each of p.Raw from usage
package daily

import (
	"math"
	"time"
)

// DayMicros is the length of a UTC day in microseconds.
const DayMicros = int64(24 * time.Hour / time.Microsecond)

// Range is a half-open interval [From, To) of int64 values; an end that is
// not Set is open.
type Range struct {
	From, To       int64
	HasFrom, HasTo bool
}

// Plan says where a report's records come from. The parts are disjoint and
// together cover the query's range exactly.
type Plan struct {
	// Daily says whether whole days come from the rollup; Days are those
	// days, in days since the Unix epoch.
	Daily bool
	Days  Range
	// Raw are the ranges, in microseconds since the Unix epoch, that come
	// from the raw ledger.
	Raw []Range
}

// Day returns the UTC day (days since the Unix epoch) that contains the
// instant us (microseconds since the Unix epoch).
func Day(us int64) int64 { return floorDiv(us, DayMicros) }

// Micros is t in microseconds since the Unix epoch, as the stores keep
// times: truncated toward zero.
func Micros(t time.Time) int64 { return t.UnixMicro() }

// DayStart returns the first instant of day d as a UTC time.
func DayStart(d int64) time.Time { return time.Unix(d*86400, 0).UTC() }

// Bound returns the query bound t in microseconds since the Unix epoch:
// the first microsecond at or after t. Records keep microseconds, so a
// record is at or after t exactly when its time is at or after Bound(t).
func Bound(t time.Time) int64 {
	f := t.Truncate(time.Microsecond) // rounds down, even before 1970
	us := f.UnixMicro()
	if f.Before(t) {
		us++
	}
	return us
}

// Split plans a report over [from, to), where a zero time is an open end.
func Split(from, to time.Time) Plan {
	var p Plan
	var f, t int64
	hasF, hasT := !from.IsZero(), !to.IsZero()
	if hasF {
		f = Bound(from)
	}
	if hasT {
		t = Bound(to)
	}
	// The whole days inside the range: [ceil(f), floor(t)) in days.
	firstDay, endDay := int64(math.MinInt64), int64(math.MaxInt64)
	if hasF {
		firstDay = -floorDiv(-f, DayMicros)
	}
	if hasT {
		endDay = floorDiv(t, DayMicros)
	}
	if firstDay >= endDay {
		// No whole day: everything from the raw ledger.
		return Plan{Raw: []Range{{From: f, To: t, HasFrom: hasF, HasTo: hasT}}}
	}
	p.Daily = true
	p.Days = Range{From: firstDay, To: endDay, HasFrom: hasF, HasTo: hasT}
	if hasF && firstDay*DayMicros != f {
		p.Raw = append(p.Raw, Range{From: f, To: firstDay * DayMicros, HasFrom: true, HasTo: true})
	}
	if hasT && endDay*DayMicros != t {
		p.Raw = append(p.Raw, Range{From: endDay * DayMicros, To: t, HasFrom: true, HasTo: true})
	}
	return p
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
