// Command sluice is the Sluice LLM gateway. It only wires: each subcommand
// lives in its own file and calls the packages that do the work.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run the gateway", runServe},
		{"teams", "create, list and delete teams", runTeams},
		{"keys", "create, list and revoke API keys", runKeys},
		{"budgets", "create, list and delete spending budgets", runBudgets},
		{"usage", "report metered usage and cost from the ledger", runUsage},
		{"capacity", "report provisioned capacity cost and which teams used it", runCapacity},
		{"prices", "print the effective price table", runPrices},
		{"audit", "verify the audit trail and list traffic by data class", runAudit},
		{"config", "check a config file, or print the default one", runConfig},
		{"simulate", "run the simulator model as its own OpenAI-compatible server", runSimulate},
		{"bench", "measure Sluice against the simulator, side by side", runBench},
		{"version", "print the version", runVersion},
	}
}

func usageText() string {
	s := "Sluice: an LLM gateway that meters every token.\n\nUsage: sluice <command> [flags]\n\nCommands:\n"
	for _, c := range commands() {
		s += fmt.Sprintf("  %-9s %s\n", c.name, c.summary)
	}
	return s + "\nRun 'sluice <command> -h' for a command's flags.\n"
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usageText())
		os.Exit(2)
	}
	name := os.Args[1]
	if name == "-h" || name == "--help" || name == "help" {
		fmt.Print(usageText())
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands() {
		if c.name == name {
			if err := c.run(ctx, os.Args[2:]); err != nil {
				fmt.Fprintf(os.Stderr, "sluice %s: %v\n", name, err)
				os.Exit(1)
			}
			return
		}
	}
	fmt.Fprintf(os.Stderr, "sluice: unknown command %q\n\n%s", name, usageText())
	os.Exit(2)
}
