package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/sluice-gateway/sluice/bench"
)

func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o bench.Options
	fs.StringVar(&o.Sluice, "sluice", "", "sluice binary to benchmark (default: this one)")
	fs.StringVar(&o.GatewayCPU, "gateway-cpu", bench.DefaultGatewayCPU, "CPU list for the gateway (taskset -c)")
	fs.StringVar(&o.LoadCPU, "load-cpu", bench.DefaultLoadCPU, "CPU list for the simulator and the load generator (taskset -c)")
	fs.BoolVar(&o.NoPin, "no-pin", false, "run unpinned (figures not comparable with pinned runs)")
	conc := fs.String("conc", "1,16,64", "connections for non-streaming chat (empty: none)")
	streamConc := fs.String("stream-conc", "1,16", "connections for streaming chat (empty: none)")
	fs.IntVar(&o.Requests, "requests", bench.DefaultRequests, "measured requests per side per point")
	fs.DurationVar(&o.MaxDuration, "max-duration", bench.DefaultMaxDuration, "cap on one point's measured phases")
	fs.IntVar(&o.Warmup, "warmup", bench.DefaultWarmup, "unmeasured requests per side per point (-1: none)")
	fs.IntVar(&o.Rounds, "rounds", bench.DefaultRounds, "times the two sides alternate per point")
	fs.IntVar(&o.OutputTokens, "output-tokens", bench.DefaultOutputTokens, "tokens per simulated answer")
	fs.StringVar(&o.ExtraConfig, "extra-config", "", `YAML appended to the gateway's generated config, e.g. "audit: {enabled: false}"`)
	fs.StringVar(&o.TempDir, "tmp", "", "directory for the run's files (default: the system's)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the run's files (config, ledger, logs)")
	fs.BoolVar(&o.JSON, "json", false, "print the report as JSON (the table goes to stderr)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if o.Concurrency, err = intList(*conc); err != nil {
		return fmt.Errorf("--conc: %w", err)
	}
	if o.StreamConcurrency, err = intList(*streamConc); err != nil {
		return fmt.Errorf("--stream-conc: %w", err)
	}
	if !o.NoPin {
		if err := bench.PinSelf(o.LoadCPU); err != nil {
			return err
		}
	}
	o.Progress = os.Stderr
	return bench.Run(ctx, o, os.Stdout)
}

// intList parses "1,16,64"; an empty string is an empty, non-nil list.
func intList(s string) ([]int, error) {
	out := []int{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
