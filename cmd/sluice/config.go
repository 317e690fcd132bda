package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"

	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/store"
	"github.com/sluice-gateway/sluice/store/sqlite"
)

// configFlag adds the shared --config flag.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "config file (default: $SLUICE_CONFIG, else ./"+config.DefaultPath+" if present, else the embedded default)")
}

// loadConfig resolves and loads the configuration.
func loadConfig(path string) (*config.Config, string, error) {
	if path == "" {
		path = os.Getenv("SLUICE_CONFIG")
	}
	if path == "" {
		if _, err := os.Stat(config.DefaultPath); err == nil {
			path = config.DefaultPath
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", err
		}
	}
	if path == "" {
		return config.Default(), "embedded default", nil
	}
	c, err := config.Load(path)
	return c, path, err
}

func openStore(ctx context.Context, cfg *config.Config) (store.Store, error) {
	return store.Open(ctx, cfg.Ledger.DSN, sqlite.Options{Synchronous: cfg.Ledger.Synchronous})
}

func runConfig(_ context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: sluice config check [FILE] | sluice config default")
	}
	switch args[0] {
	case "default":
		os.Stdout.Write(config.DefaultYAML())
		return nil
	case "check":
		fs := flag.NewFlagSet("config check", flag.ContinueOnError)
		path := configFlag(fs)
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		p := *path
		if fs.NArg() > 0 {
			p = fs.Arg(0)
		}
		cfg, from, err := loadConfig(p)
		if err != nil {
			return err
		}
		fmt.Printf("%s: ok (%d upstreams, %d endpoints, ledger %s)\n", from, len(cfg.Upstreams), len(cfg.Endpoints), ledgerKind(cfg.Ledger.DSN))
		return nil
	}
	return fmt.Errorf("unknown config subcommand %q", args[0])
}

func ledgerKind(dsn string) string {
	if store.IsPostgres(dsn) {
		return "postgres"
	}
	return "sqlite " + dsn
}
