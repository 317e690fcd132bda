// Package server assembles a running Sluice from its configuration: the
// store, the ledger writer, key authentication, the upstreams and
// endpoints, the HTTP routes, and graceful shutdown.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/admission"
	"github.com/sluice-gateway/sluice/auth"
	"github.com/sluice-gateway/sluice/budget"
	"github.com/sluice-gateway/sluice/capacity"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/ledger"
	"github.com/sluice-gateway/sluice/metrics"
	"github.com/sluice-gateway/sluice/pricing"
	"github.com/sluice-gateway/sluice/proxy"
	"github.com/sluice-gateway/sluice/store"
	"github.com/sluice-gateway/sluice/store/sqlite"
	"github.com/sluice-gateway/sluice/usage"
)

// Server is one running Sluice process.
type Server struct {
	cfg     *config.Config
	log     *slog.Logger
	store   store.Store
	budgets *budget.Manager
	// budgetList is the admitter's cached budget list, refreshed after
	// admin changes.
	budgetList *admission.Budgets
	ledger     *ledger.Writer
	auth       *auth.Authenticator
	proxy      *proxy.Proxy
	reg        *prometheus.Registry
	handler    http.Handler
	net        *network
	upstreams  *upstreamSet
	caps       *capacities
	serving    *servingPlane
	smetrics   *servingMetrics
	now        func() time.Time

	draining atomic.Bool
	inflight sync.WaitGroup // handlers running, so shutdown can wait for their records
	cancel   context.CancelFunc
	closers  []func()
	// background tasks run while serving, until shutdown.
	background []func(ctx context.Context)
}

// Options are the parts of a Server that come from outside the config.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time
}

// New opens the store and builds the gateway described by cfg.
func New(ctx context.Context, cfg *config.Config, o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	st, err := store.Open(ctx, cfg.Ledger.DSN, sqlite.Options{Synchronous: cfg.Ledger.Synchronous})
	if err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", redactDSN(cfg.Ledger.DSN), err)
	}
	s := &Server{cfg: cfg, log: o.Logger, store: st, reg: prometheus.NewRegistry()}
	if err := s.build(ctx, o); err != nil {
		st.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) build(ctx context.Context, o Options) error {
	cfg := s.cfg
	catalog, err := Catalog(cfg)
	if err != nil {
		return err
	}
	var m *metrics.Metrics
	s.ledger = ledger.New(s.store, ledger.Options{
		MaxBatch: cfg.Ledger.MaxBatch,
		Logger:   s.log,
		OnError:  func(err error) { m.LedgerError(err) },
		OnCommit: func(n int, d time.Duration) { m.LedgerBatch(n, d) },
	})
	m = metrics.New(s.reg, s.ledger.QueueDepth)
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	s.auth, err = auth.New(ctx, s.store, auth.Options{Logger: s.log, Now: o.Now})
	if err != nil {
		s.ledger.Close(ctx)
		return fmt.Errorf("load keys: %w", err)
	}
	counter := &usage.Counter{}
	// The tokenizer's vocabularies (tens of MB) load on first use, only
	// if a request needs an estimate, a TPM limit or a budget.
	s.net, err = newNetwork(ctx, cfg, s.store, s.log, s.reg)
	if err != nil {
		s.ledger.Close(ctx)
		return err
	}
	if f := s.net.floors; f != nil {
		s.background = append(s.background, func(ctx context.Context) { f.run(ctx, 2*time.Second, s.log) })
	}
	s.now = o.Now
	s.caps = &capacities{gates: map[string]*capacityGate{}, now: o.Now}
	s.registerServingMetrics()
	s.upstreams, err = buildUpstreams(cfg, s.net.transport, s.upstreamState)
	if err != nil {
		s.ledger.Close(ctx)
		return err
	}
	for _, c := range s.upstreams.checkers {
		s.background = append(s.background, c.Run)
	}
	eps, err := endpoints(cfg, s.upstreams, catalog, s.log, s.gate)
	if err != nil {
		s.ledger.Close(ctx)
		return err
	}
	guardrails, output, inferenceLog := s.aiGateway()
	// Guardrails first, so routing classifies the masked body and blocked
	// calls use no rate or budget; then data-class routing, the serving
	// endpoints' permissions, rate limits and budgets.
	admitters := append([]proxy.Admitter{guardrails}, s.net.admitters()...)
	rl, rlClose, err := rateLimits(ctx, cfg.RateLimits, s.log, m.RateLimited)
	if err != nil {
		s.ledger.Close(ctx)
		return err
	}
	s.closers = append(s.closers, rlClose)
	ba, err := s.budgetAdmitter(ctx, cfg, m)
	if err != nil {
		s.ledger.Close(ctx)
		return err
	}
	s.serving = s.newServingPlane(cfg, catalog, eps)
	admitters = append(admitters, s.serving.mgr.Admitter(), rl, ba)
	s.proxy = proxy.New(proxy.Options{
		Auth:               s.auth,
		Ledger:             s.ledger,
		Counter:            counter,
		Catalog:            catalog,
		Logger:             s.log,
		Now:                o.Now,
		MaxBodyBytes:       cfg.Server.MaxBodyBytes,
		BodyReadTimeout:    cfg.Server.BodyReadTimeout.D(),
		StreamWriteTimeout: cfg.Server.StreamWriteTimeout.D(),
		Observe:            func(r *sluice.UsageRecord) { m.Observe(r); s.net.observe(r) },
		CommitWait:         m.CommitWait,
		ClientAddr:         s.net.clientAddr,
		TraceDial:          s.net.traceDial(),
		Admitters:          admitters,
		Output:             output,
		Payload:            inferenceLog.Log,
	}, eps)
	if err := s.serving.mgr.Load(ctx); err != nil {
		s.ledger.Close(ctx)
		return fmt.Errorf("serving endpoints: %w", err)
	}
	s.background = append(s.background, s.serving.mgr.Run)
	accr := &capacity.Accruer{Store: s.store, Entities: s.capacityEntities, Now: o.Now, Logger: s.log}
	s.background = append(s.background, accr.Run)
	s.handler = s.routes()
	return nil
}

// Catalog returns the price catalog cfg selects: the built-in one with the
// operator's DBU rate and overrides.
func Catalog(cfg *config.Config) (*pricing.Catalog, error) {
	c := pricing.Default()
	var err error
	if cfg.Prices.USDPerDBU != "" {
		rate, perr := pricing.ParseUSD(cfg.Prices.USDPerDBU)
		if perr != nil {
			return nil, fmt.Errorf("prices.usd_per_dbu: %w", perr)
		}
		if c, err = c.WithDBURate(int64(rate)); err != nil {
			return nil, err
		}
	}
	if len(cfg.Prices.Overrides) > 0 {
		ovs := make([]pricing.Override, len(cfg.Prices.Overrides))
		for i, o := range cfg.Prices.Overrides {
			ovs[i] = pricing.Override{Provider: o.Provider, Model: o.Model, Input: o.Input, Output: o.Output}
		}
		if c, err = c.WithOverrides(c.Version()+"+config", ovs); err != nil {
			return nil, fmt.Errorf("prices.overrides: %w", err)
		}
	}
	return c, nil
}

// Handler is the server's whole HTTP surface.
func (s *Server) Handler() http.Handler { return s.handler }

// Store is the server's store.
func (s *Server) Store() store.Store { return s.store }

// Registry is the server's metrics registry.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Listeners opens the configured listeners.
func (s *Server) Listeners() ([]net.Listener, error) { return s.net.listeners() }

// Serve serves on the listeners until ctx ends, then shuts down
// gracefully: new connections stop, requests and streams in flight get the
// configured grace period to finish, and the ledger is flushed before
// Serve returns.
func (s *Server) Serve(ctx context.Context, lns ...net.Listener) error {
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	go s.auth.Run(bg)
	for _, run := range s.background {
		go run(bg)
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.Server.ReadHeaderTimeout.D(),
		IdleTimeout:       s.cfg.Server.IdleTimeout.D(),
		MaxHeaderBytes:    s.cfg.Server.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return bg },
		ConnContext:       s.net.connContext,
	}
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errc <- srv.Serve(ln) }()
	}
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.log.Info("shutting down", "grace", s.cfg.Server.ShutdownGrace.D().String())
	sctx, scancel := context.WithTimeout(context.Background(), s.cfg.Server.ShutdownGrace.D())
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("grace period over; closing remaining connections", "err", err)
		srv.Close()
	}
	// Close does not wait for handlers: wait (bounded) until the calls cut
	// off have committed their records, so Close flushes them.
	handlersDone := make(chan struct{})
	go func() { s.inflight.Wait(); close(handlersDone) }()
	select {
	case <-handlersDone:
	case <-time.After(30 * time.Second):
		s.log.Error("handlers still running 30s after shutdown; their records may be written late")
	}
	// Write the audit records still queued.
	actx, acancel := context.WithTimeout(context.Background(), 30*time.Second)
	if err := s.net.close(actx); err != nil {
		s.log.Error("audit records not written at shutdown", "err", err)
	}
	acancel()
	cancel()
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// Close flushes the ledger and closes the store.
func (s *Server) Close() error {
	if s.cancel != nil {
		s.cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	aerr := s.net.close(ctx)
	lerr := s.ledger.Close(ctx)
	for _, c := range s.closers {
		c()
	}
	serr := s.store.Close()
	return errors.Join(aerr, lerr, serr)
}

func redactDSN(dsn string) string {
	if i := indexAt(dsn); i >= 0 {
		if j := indexScheme(dsn); j >= 0 && j < i {
			return dsn[:j] + "***" + dsn[i:]
		}
	}
	return dsn
}

func indexAt(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '@' {
			return i
		}
	}
	return -1
}

func indexScheme(s string) int {
	for i := 0; i+2 < len(s); i++ {
		if s[i] == ':' && s[i+1] == '/' && s[i+2] == '/' {
			return i + 3
		}
	}
	return -1
}
