package simulator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server timeouts. There is no write timeout: paced streams are long.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = time.Minute
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 1 << 20
	// shutdownGrace is how long in-flight answers may take to finish when
	// the context ends, before their connections are closed.
	shutdownGrace = 5 * time.Second
)

// ListenAndServe serves a simulator on addr (as `sluice simulate --listen
// ADDR` does) until ctx ends, then stops gracefully: it stops accepting,
// lets answers in flight finish for a few seconds and closes what is left.
// It returns nil after a stop caused by ctx, and an error if it cannot
// listen or serving fails. A nil log discards messages.
func ListenAndServe(ctx context.Context, addr string, opts Options, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("simulator: %w", err)
	}
	return serve(ctx, ln, opts, log, shutdownGrace)
}

func serve(ctx context.Context, ln net.Listener, opts Options, log *slog.Logger, grace time.Duration) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler:           New(opts),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("simulator listening", "addr", ln.Addr().String(),
		"ttft", opts.TTFT, "tokens_per_second", opts.TokensPerSecond,
		"output_tokens", opts.OutputTokens, "omit_usage", opts.OmitUsage)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("simulator: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("simulator: answers still in flight after the grace period; closing", "err", err)
		srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("simulator: %w", err)
	}
	log.Info("simulator stopped")
	return nil
}
