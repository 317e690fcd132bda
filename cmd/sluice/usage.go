package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/report"
)

func runUsage(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("usage", flag.ContinueOnError)
	path := configFlag(fs)
	by := fs.String("by", "endpoint", "comma-separated groups: team, endpoint, key, user, model, upstream, day")
	from := fs.String("from", "", "start (inclusive): 2026-11-01 or RFC 3339")
	to := fs.String("to", "", "end (exclusive): 2026-12-01 or RFC 3339")
	format := fs.String("format", "table", "table, csv or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	q := sluice.UsageQuery{}
	for _, g := range strings.Split(*by, ",") {
		if g = strings.TrimSpace(g); g == "" {
			continue
		}
		ug, err := report.ParseGroup(g)
		if err != nil {
			return err
		}
		q.GroupBy = append(q.GroupBy, ug)
	}
	var err error
	if q.From, err = parseTime(*from); err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	if q.To, err = parseTime(*to); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	cfg, _, err := loadConfig(*path)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	rows, err := st.UsageReport(ctx, q)
	if err != nil {
		return err
	}
	return report.Write(os.Stdout, *format, q.GroupBy, rows)
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return report.ParseTime(s)
}
