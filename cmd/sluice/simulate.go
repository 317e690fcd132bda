package main

import (
	"context"
	"flag"

	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/simulator"
)

func runSimulate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9090", "address to serve the simulator on")
	ttft := fs.Duration("ttft", 0, "time to first token")
	tps := fs.Float64("tokens-per-second", 0, "output pacing (0: as fast as possible)")
	out := fs.Int("output-tokens", 16, "tokens per answer (capped by max_tokens)")
	dims := fs.Int("embedding-dims", 8, "embedding vector length")
	omit := fs.Bool("omit-usage", false, "never report usage (exercises Sluice's token estimation)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger(config.Log{Level: "info", Format: "json"})
	return simulator.ListenAndServe(ctx, *listen, simulator.Options{
		TTFT: *ttft, TokensPerSecond: *tps, OutputTokens: *out, EmbeddingDims: *dims, OmitUsage: *omit,
	}, log)
}
