package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/server"
)

func runBudgets(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: sluice budgets create|list|delete [flags]")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("budgets "+sub, flag.ContinueOnError)
	path := configFlag(fs)
	var in server.BudgetInput
	var soft bool
	var alerts, format string
	switch sub {
	case "create":
		fs.StringVar(&in.ID, "id", "", "budget id, e.g. ml-monthly (required)")
		fs.StringVar(&in.Scope, "scope", "", "key, team, endpoint or team_endpoint (required)")
		fs.StringVar(&in.Subject, "subject", "", "the key id, team, endpoint, or team/endpoint (required)")
		fs.StringVar(&in.Period, "period", "month", "day, week (from Monday), month or lifetime")
		fs.StringVar(&in.TimeZone, "tz", "UTC", "IANA time zone the periods follow")
		fs.StringVar(&in.LimitUSD, "limit", "", "limit in USD per period, e.g. 250.00 (required)")
		fs.BoolVar(&soft, "soft", false, "only alert; never refuse requests")
		fs.StringVar(&alerts, "alerts", "50,80,100", "alert thresholds in percent")
	case "list":
		fs.StringVar(&format, "format", "table", "table or json")
	case "delete":
	default:
		return fmt.Errorf("unknown budgets subcommand %q", sub)
	}
	if err := fs.Parse(args); err != nil {
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
	now := time.Now()
	switch sub {
	case "create":
		hard := !soft
		in.Hard = &hard
		for _, a := range strings.Split(alerts, ",") {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			n, err := strconv.Atoi(a)
			if err != nil {
				return fmt.Errorf("--alerts: %q is not a percentage", a)
			}
			in.AlertThresholds = append(in.AlertThresholds, n)
		}
		b, err := in.Budget(now)
		if err != nil {
			return err
		}
		if err := st.CreateBudget(ctx, b); err != nil {
			return err
		}
		fmt.Printf("created budget %s: %s %s, %s USD per %s (%s)\n", b.ID, b.Scope, b.Subject, in.LimitUSD, b.Period,
			map[bool]string{true: "hard", false: "soft"}[b.Hard])
		return nil
	case "delete":
		if fs.NArg() != 1 {
			return errors.New("usage: sluice budgets delete ID")
		}
		if err := st.DeleteBudget(ctx, fs.Arg(0)); err != nil {
			return err
		}
		fmt.Printf("deleted budget %s\n", fs.Arg(0))
		return nil
	}
	sts, err := st.BudgetStatuses(ctx, now)
	if err != nil {
		return err
	}
	views := make([]server.BudgetView, len(sts))
	for i, s := range sts {
		views[i] = server.BudgetViewOf(s)
	}
	if format == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(views)
	}
	if format != "table" {
		return fmt.Errorf("--format %q: use table or json", format)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSCOPE\tSUBJECT\tPERIOD\tKIND\tLIMIT_USD\tSETTLED_USD\tRESERVED_USD\tREMAINING_USD\tRESETS")
	for _, v := range views {
		kind, resets := "hard", "never"
		if !v.Hard {
			kind = "soft"
		}
		if v.ResetAt != nil {
			resets = v.ResetAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, v.Scope, v.Subject, v.Period, kind, v.LimitUSD,
			sluice.FormatUSD(v.SettledMicros), sluice.FormatUSD(v.ReservedMicros), v.RemainingUSD, resets)
	}
	return tw.Flush()
}
