package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/capacity"
	"github.com/sluice-gateway/sluice/report"
)

func runCapacity(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("capacity", flag.ContinueOnError)
	path := configFlag(fs)
	from := fs.String("from", "", "start (inclusive): 2026-11-01 or RFC 3339 (default: the start of this month, UTC)")
	to := fs.String("to", "", "end (exclusive): 2026-12-01 or RFC 3339 (default: now)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	f, t, err := capacity.ParseRange(*from, *to, time.Now())
	if err != nil {
		return err
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
	cs, ok := st.(sluice.CapacityStore)
	if !ok {
		return errors.New("this ledger store does not keep capacity charges")
	}
	res, err := capacity.Report(ctx, cs, f, t)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	return writeCapacityTable(os.Stdout, res)
}

// writeCapacityTable prints each served entity's row followed by its
// teams' shares, and a total.
func writeCapacityTable(w io.Writer, res *capacity.ReportResult) error {
	fmt.Fprintf(w, "Capacity from %s to %s (UTC)\n\n", res.From.UTC().Format(time.RFC3339), res.To.UTC().Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	row := func(cells ...string) {
		for _, c := range cells {
			fmt.Fprint(tw, c, "\t")
		}
		fmt.Fprintln(tw)
	}
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	row("endpoint", "served_entity", "team", "hours", "requests", "tokens", "cost_usd", "usd_per_1m_tokens", "utilisation")
	for _, e := range res.Entities {
		price, util := "-", "-"
		if e.EffectivePricePer1M != nil {
			price = e.EffectivePricePer1MUSD
		}
		if e.UtilisationBasis != "" {
			util = strconv.FormatFloat(100*e.Utilisation, 'f', 1, 64) + "% of " + e.UtilisationBasis
		}
		row(e.Endpoint, e.ServedEntity, "", n(e.Hours), n(e.Requests), n(e.Tokens), e.CostUSD, price, util)
		for _, t := range e.Teams {
			team := t.Team
			if t.Idle {
				team = "(idle)"
			}
			row("", "", team, n(t.Hours), n(t.Requests), n(t.Tokens), t.CostUSD, "", "")
		}
	}
	row("TOTAL", "", "", "", "", "", report.USD(res.TotalCostMicros), "", "")
	return tw.Flush()
}
