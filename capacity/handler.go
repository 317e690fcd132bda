package capacity

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/report"
)

// MaxReportRange bounds a report's range, and so its work.
const MaxReportRange = 400 * 24 * time.Hour

// MonthToDate returns the start of now's UTC month and now.
func MonthToDate(now time.Time) (from, to time.Time) {
	now = now.UTC()
	return time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC), now
}

// ParseRange reads a report's bounds: dates (2026-11-01, midnight UTC) or
// RFC 3339 times, to exclusive. Empty bounds default to the month to date.
func ParseRange(fromS, toS string, now time.Time) (from, to time.Time, err error) {
	from, to = MonthToDate(now)
	for _, p := range []struct {
		name, v string
		dst     *time.Time
	}{{"from", fromS, &from}, {"to", toS, &to}} {
		if p.v == "" {
			continue
		}
		t, err := report.ParseTime(p.v)
		if err != nil {
			return from, to, apierr.BadRequest(p.name, "invalid_value", "%v", err)
		}
		*p.dst = t
	}
	if !from.Before(to) {
		return from, to, apierr.BadRequest("from", "invalid_value", "from must be before to")
	}
	if to.Sub(from) > MaxReportRange {
		return from, to, apierr.BadRequest("to", "invalid_value", "a report covers at most 400 days")
	}
	return from, to, nil
}

// Handler serves the capacity report as JSON for
// GET ?from=YYYY-MM-DD&to=YYYY-MM-DD (to exclusive; default the month to
// date). It does no authentication: mount it behind the admin API's.
func Handler(st sluice.CapacityStore, now func() time.Time) http.Handler {
	if now == nil {
		now = time.Now
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			apierr.WriteOpenAI(w, &apierr.Error{Status: 405, Type: "invalid_request_error", Code: "method_not_allowed",
				Msg: "Use GET.", Class: sluice.ErrClassInvalidRequest})
			return
		}
		q := r.URL.Query()
		from, to, err := ParseRange(q.Get("from"), q.Get("to"), now())
		if err == nil {
			var res *ReportResult
			if res, err = Report(r.Context(), st, from, to); err == nil {
				w.Header().Set("Content-Type", "application/json")
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				enc.Encode(res)
				return
			}
		}
		// Store errors become a bare 500: their text stays out of the answer.
		apierr.WriteOpenAI(w, apierr.As(err))
	})
}
