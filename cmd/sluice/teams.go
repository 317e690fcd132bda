package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/classify"
)

const teamsUsage = "usage: sluice teams create NAME [--description TEXT] [--class-floor CLASS] | list [--format table|json] | delete NAME"

func runTeams(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New(teamsUsage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("teams "+sub, flag.ContinueOnError)
	path := configFlag(fs)
	var description, floor, format *string
	switch sub {
	case "create":
		description = fs.String("description", "", "what the team is, for people reading reports")
		floor = fs.String("class-floor", "", "lowest data class of every request made with the team's keys (default: the lowest class)")
	case "list":
		format = fs.String("format", "table", "table or json")
	case "delete":
	default:
		return fmt.Errorf("unknown teams subcommand %q; %s", sub, teamsUsage)
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if want := map[string]int{"create": 1, "list": 0, "delete": 1}[sub]; len(pos) != want {
		return errors.New(teamsUsage)
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
		t := sluice.Team{Name: pos[0], Description: *description, CreatedAt: now.UTC()}
		if *floor != "" {
			levels, err := classify.NewLevels(cfg.DataClasses.Levels)
			if err != nil {
				return err
			}
			if t.ClassFloor, err = levels.Parse(*floor); err != nil {
				return fmt.Errorf("--class-floor: %q is not one of the classes %v", *floor, levels.Names())
			}
		}
		if err := st.CreateTeam(ctx, t); err != nil {
			if errors.Is(err, sluice.ErrConflict) {
				return fmt.Errorf("a team named %q exists already", t.Name)
			}
			return err
		}
		fmt.Printf("created team %q\n", t.Name)
		return nil
	case "list":
		ts, err := st.Teams(ctx)
		if err != nil {
			return err
		}
		ks, err := st.Keys(ctx)
		if err != nil {
			return err
		}
		return printTeams(ts, activeKeysByTeam(ks, now), *format)
	default: // delete
		if err := st.DeleteTeam(ctx, pos[0], now); err != nil {
			if errors.Is(err, sluice.ErrNotFound) {
				return fmt.Errorf("no team named %q", pos[0])
			}
			return err
		}
		fmt.Printf("deleted team %q\n", pos[0])
		return nil
	}
}

// parseInterspersed parses fs's flags wherever they appear among args and
// returns the other arguments, so that both "create ml --description x"
// and "create --description x ml" work.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

func activeKeysByTeam(ks []sluice.Key, now time.Time) map[string]int {
	n := map[string]int{}
	for i := range ks {
		if ks[i].Active(now) {
			n[ks[i].Team]++
		}
	}
	return n
}

func printTeams(ts []sluice.Team, active map[string]int, format string) error {
	switch format {
	case "json":
		type row struct {
			Name        string    `json:"name"`
			Description string    `json:"description"`
			ClassFloor  string    `json:"class_floor"`
			ActiveKeys  int       `json:"active_keys"`
			CreatedAt   time.Time `json:"created_at"`
		}
		rows := make([]row, len(ts))
		for i, t := range ts {
			rows[i] = row{t.Name, t.Description, t.ClassFloor, active[t.Name], t.CreatedAt}
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	case "table":
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tACTIVE KEYS\tCLASS FLOOR\tCREATED\tDESCRIPTION")
		for _, t := range ts {
			floor := t.ClassFloor
			if floor == "" {
				floor = "-"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", t.Name, active[t.Name], floor, t.CreatedAt.Format(time.RFC3339), t.Description)
		}
		return tw.Flush()
	}
	return fmt.Errorf("--format %q: use table or json", format)
}
