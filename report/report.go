// Package report renders usage reports (chargeback) as a table, CSV or
// JSON. Money is printed from integer micro-dollars, never through floats.
package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/sluice-gateway/sluice"
)

var groups = []sluice.UsageGroup{sluice.GroupTeam, sluice.GroupEndpoint, sluice.GroupKey, sluice.GroupUser,
	sluice.GroupModel, sluice.GroupUpstream, sluice.GroupDay}

// ParseGroup checks a group name.
func ParseGroup(s string) (sluice.UsageGroup, error) {
	for _, g := range groups {
		if string(g) == s {
			return g, nil
		}
	}
	return "", fmt.Errorf("unknown group %q (use team, endpoint, key, user, model, upstream or day)", s)
}

// USD formats micro-dollars as dollars with six decimals.
func USD(micros int64) string {
	sign := ""
	if micros < 0 {
		sign, micros = "-", -micros
	}
	return fmt.Sprintf("%s%d.%06d", sign, micros/1e6, micros%1e6)
}

// Total sums rows.
func Total(rows []sluice.UsageRow) sluice.UsageRow {
	var t sluice.UsageRow
	for _, r := range rows {
		t.Requests += r.Requests
		t.Errors += r.Errors
		t.PromptTokens += r.PromptTokens
		t.CompletionTokens += r.CompletionTokens
		t.TotalTokens += r.TotalTokens
		t.CostMicros += r.CostMicros
	}
	return t
}

// JSONRow is one row of a JSON report.
type JSONRow struct {
	Group            map[string]string `json:"group"`
	Requests         int64             `json:"requests"`
	Errors           int64             `json:"errors"`
	PromptTokens     int64             `json:"prompt_tokens"`
	CompletionTokens int64             `json:"completion_tokens"`
	TotalTokens      int64             `json:"total_tokens"`
	CostMicros       int64             `json:"cost_micros"`
	CostUSD          string            `json:"cost_usd"`
}

// JSON is a whole JSON report.
type JSON struct {
	GroupBy []sluice.UsageGroup `json:"group_by"`
	Rows    []JSONRow           `json:"rows"`
	Total   JSONRow             `json:"total"`
}

// ToJSON converts rows for JSON output.
func ToJSON(by []sluice.UsageGroup, rows []sluice.UsageRow) JSON {
	conv := func(r sluice.UsageRow) JSONRow {
		j := JSONRow{Group: map[string]string{}, Requests: r.Requests, Errors: r.Errors, PromptTokens: r.PromptTokens,
			CompletionTokens: r.CompletionTokens, TotalTokens: r.TotalTokens, CostMicros: r.CostMicros, CostUSD: USD(r.CostMicros)}
		for i, g := range by {
			if i < len(r.Keys) {
				j.Group[string(g)] = r.Keys[i]
			}
		}
		return j
	}
	out := JSON{GroupBy: by, Rows: make([]JSONRow, 0, len(rows))}
	if out.GroupBy == nil {
		out.GroupBy = []sluice.UsageGroup{}
	}
	for _, r := range rows {
		out.Rows = append(out.Rows, conv(r))
	}
	out.Total = conv(Total(rows))
	return out
}

// Write renders rows grouped by by in format: table, csv or json.
func Write(w io.Writer, format string, by []sluice.UsageGroup, rows []sluice.UsageRow) error {
	head := make([]string, 0, len(by)+7)
	for _, g := range by {
		head = append(head, string(g))
	}
	head = append(head, "requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd")
	line := func(keys []string, r sluice.UsageRow) []string {
		out := append([]string(nil), keys...)
		return append(out, strconv.FormatInt(r.Requests, 10), strconv.FormatInt(r.Errors, 10),
			strconv.FormatInt(r.PromptTokens, 10), strconv.FormatInt(r.CompletionTokens, 10),
			strconv.FormatInt(r.TotalTokens, 10), USD(r.CostMicros))
	}
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(ToJSON(by, rows))
	case "csv":
		cw := csv.NewWriter(w)
		cw.Write(head)
		for _, r := range rows {
			cw.Write(line(r.Keys, r))
		}
		cw.Flush()
		return cw.Error()
	case "table":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		writeRow := func(cells []string) {
			for _, c := range cells {
				fmt.Fprint(tw, c, "\t")
			}
			fmt.Fprintln(tw)
		}
		writeRow(head)
		for _, r := range rows {
			writeRow(line(r.Keys, r))
		}
		total := make([]string, len(by))
		if len(by) > 0 {
			total[0] = "TOTAL"
		}
		writeRow(line(total, Total(rows)))
		return tw.Flush()
	}
	return fmt.Errorf("unknown format %q (use table, csv or json)", format)
}

// ParseTime reads a report bound: a date (2026-11-01, midnight UTC) or an
// RFC 3339 time.
func ParseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date (2026-11-01) or RFC 3339 time", s)
}
