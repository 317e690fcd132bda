package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/auth"
	"github.com/sluice-gateway/sluice/classify"
	"github.com/sluice-gateway/sluice/config"
)

func runKeys(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: sluice keys create|list|revoke [flags]")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("keys "+sub, flag.ContinueOnError)
	path := configFlag(fs)
	var (
		team, name, endpoints, expires, format *string
		sources, floor                         *string
		admin                                  *bool
	)
	switch sub {
	case "create":
		team = fs.String("team", "", "team the key belongs to (required)")
		name = fs.String("name", "", "a label for the key")
		endpoints = fs.String("endpoints", "", "comma-separated endpoints the key may use (default: all)")
		expires = fs.String("expires", "", "expiry: a duration from now (720h) or a date (2027-01-31 or RFC 3339)")
		admin = fs.Bool("admin", false, "grant admin rights")
		sources = fs.String("source-cidrs", "", "comma-separated networks the key may be used from (default: anywhere)")
		floor = fs.String("class-floor", "", "lowest data class of every request made with the key (default: the lowest class)")
	case "list":
		format = fs.String("format", "table", "table or json")
	case "revoke":
	default:
		return fmt.Errorf("unknown keys subcommand %q", sub)
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
		exp, err := parseExpiry(*expires, now)
		if err != nil {
			return err
		}
		var eps []string
		for _, e := range strings.Split(*endpoints, ",") {
			if e = strings.TrimSpace(e); e != "" {
				eps = append(eps, e)
			}
		}
		secret, k, err := auth.NewKey(*team, *name, *admin, eps, exp, now)
		if err != nil {
			return err
		}
		if k.SourceCIDRs, err = config.ParsePrefixes(splitList(*sources)); err != nil {
			return fmt.Errorf("--source-cidrs: %w", err)
		}
		if *floor != "" {
			levels, err := classify.NewLevels(cfg.DataClasses.Levels)
			if err != nil {
				return err
			}
			if k.ClassFloor, err = levels.Parse(*floor); err != nil {
				return fmt.Errorf("--class-floor: %q is not one of the classes %v", *floor, levels.Names())
			}
		}
		if err := st.CreateKey(ctx, k); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "created key %s for team %q; the secret is shown only now:\n", k.ID, k.Team)
		fmt.Println(secret)
		return nil
	case "list":
		ks, err := st.Keys(ctx)
		if err != nil {
			return err
		}
		return printKeys(ks, *format, now)
	default: // revoke
		if fs.NArg() != 1 {
			return errors.New("usage: sluice keys revoke KEY_ID")
		}
		id := fs.Arg(0)
		if strings.HasPrefix(id, auth.Prefix) {
			if id, err = auth.Parse(id); err != nil {
				return err
			}
		}
		if err := st.RevokeKey(ctx, id, now); err != nil {
			if errors.Is(err, sluice.ErrNotFound) {
				return fmt.Errorf("no key with id %q", id)
			}
			return err
		}
		fmt.Printf("revoked %s (running gateways stop accepting it within seconds)\n", id)
		return nil
	}
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func parseExpiry(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, errors.New("--expires must be in the future")
		}
		return now.Add(d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			if !t.After(now) {
				return time.Time{}, errors.New("--expires must be in the future")
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--expires %q: use a duration (720h) or a date (2027-01-31)", s)
}

func keyStatus(k *sluice.Key, now time.Time) string {
	switch {
	case !k.RevokedAt.IsZero():
		return "revoked"
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return "expired"
	}
	return "active"
}

func printKeys(ks []sluice.Key, format string, now time.Time) error {
	switch format {
	case "json":
		type row struct {
			ID        string     `json:"id"`
			Name      string     `json:"name"`
			Team      string     `json:"team"`
			Admin     bool       `json:"admin"`
			Endpoints []string   `json:"endpoints"`
			Status    string     `json:"status"`
			CreatedAt time.Time  `json:"created_at"`
			ExpiresAt *time.Time `json:"expires_at"`
			RevokedAt *time.Time `json:"revoked_at"`
		}
		rows := make([]row, len(ks))
		for i := range ks {
			k := &ks[i]
			rows[i] = row{ID: k.ID, Name: k.Name, Team: k.Team, Admin: k.Admin, Endpoints: k.Endpoints,
				Status: keyStatus(k, now), CreatedAt: k.CreatedAt}
			if !k.ExpiresAt.IsZero() {
				rows[i].ExpiresAt = &k.ExpiresAt
			}
			if !k.RevokedAt.IsZero() {
				rows[i].RevokedAt = &k.RevokedAt
			}
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	case "table":
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTEAM\tNAME\tADMIN\tENDPOINTS\tSTATUS\tCREATED\tEXPIRES")
		for i := range ks {
			k := &ks[i]
			eps := strings.Join(k.Endpoints, ",")
			if eps == "" {
				eps = "*"
			}
			exp := "-"
			if !k.ExpiresAt.IsZero() {
				exp = k.ExpiresAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\t%s\n", k.ID, k.Team, k.Name, k.Admin, eps, keyStatus(k, now),
				k.CreatedAt.Format(time.RFC3339), exp)
		}
		return tw.Flush()
	}
	return fmt.Errorf("--format %q: use table or json", format)
}
