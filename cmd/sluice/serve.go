package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"time"

	"github.com/sluice-gateway/sluice/auth"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/server"
)

func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := configFlag(fs)
	listen := fs.String("listen", "", "override the config's listen address")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (for profiling)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, from, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	log := newLogger(cfg.Log)
	srv, err := server.New(ctx, cfg, server.Options{Logger: log})
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := firstKey(ctx, srv); err != nil {
		return err
	}
	lns, err := srv.Listeners()
	if err != nil {
		return err
	}
	addrs := make([]string, len(lns))
	for i, ln := range lns {
		addrs[i] = ln.Addr().String()
	}
	log.Info("sluice serving", "addrs", addrs, "config", from, "ledger", ledgerKind(cfg.Ledger.DSN),
		"endpoints", len(cfg.Endpoints), "version", version())
	return srv.Serve(ctx, lns...)
}

// firstKey creates and prints an admin key when the store has none, so a
// new install can be used at once. It is shown this once only.
func firstKey(ctx context.Context, srv *server.Server) error {
	ks, err := srv.Store().Keys(ctx)
	if err != nil || len(ks) > 0 {
		return err
	}
	secret, k, err := auth.NewKey("admin", "first admin key", true, nil, time.Time{}, time.Now())
	if err != nil {
		return err
	}
	if err := srv.Store().CreateKey(ctx, k); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "\nFirst start: created an admin key (team %q, id %s). It is shown only now; keep it safe:\n\n    %s\n\n", k.Team, k.ID, secret)
	return nil
}

func newLogger(c config.Log) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}
