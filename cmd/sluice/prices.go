package main

import (
	"context"
	"flag"
	"os"

	"github.com/sluice-gateway/sluice/pricing"
	"github.com/sluice-gateway/sluice/server"
)

func runPrices(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("prices", flag.ContinueOnError)
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, _, err := loadConfig(*path)
	if err != nil {
		return err
	}
	c, err := server.Catalog(cfg)
	if err != nil {
		return err
	}
	return pricing.Fprint(os.Stdout, c)
}
