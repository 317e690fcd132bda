package server

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/capacity"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/pricing"
	"github.com/sluice-gateway/sluice/provider"
	"github.com/sluice-gateway/sluice/proxy"
	"github.com/sluice-gateway/sluice/resilience"
	"github.com/sluice-gateway/sluice/simulator"
)

// upstreamSet is the built upstreams with their guards (circuit breaker
// and health check), by upstream name.
type upstreamSet struct {
	ups      map[string]*proxy.Upstream
	guards   map[string]proxy.Guard
	checkers map[string]*resilience.Checker
}

// newUpstream builds one upstream, its guard and its health checker (nil
// when it has no health check).
func newUpstream(u config.Upstream, transport func(config.Upstream) (http.RoundTripper, error), onState func(upstream, kind, state string)) (*proxy.Upstream, proxy.Guard, *resilience.Checker, error) {
	up := &proxy.Upstream{Name: u.Name, Provider: u.Provider, Timeout: u.Timeout.D()}
	var err error
	switch u.Type {
	case config.TypeOpenAI:
		up.Adapter, err = provider.NewOpenAI(u.BaseURL, u.APIKey, u.Headers)
		if err == nil {
			up.Transport, err = transport(u)
		}
	case config.TypeAzure:
		up.Adapter, err = provider.NewAzure(u.BaseURL, u.APIKey, u.APIVersion, u.Headers)
		if err == nil {
			up.Transport, err = transport(u)
		}
	case config.TypeMLflow:
		up.Passthrough = true
		up.Adapter, err = provider.NewMLflow(u.BaseURL, u.APIKey, u.Headers)
		if err == nil {
			up.Transport, err = transport(u)
		}
	case config.TypeSimulator:
		sc := u.Simulator
		if sc == nil {
			sc = &config.Simulator{}
		}
		h := simulator.New(simulator.Options{
			TTFT: sc.TTFT.D(), TokensPerSecond: sc.TokensPerSecond,
			OutputTokens: sc.OutputTokens, EmbeddingDims: sc.EmbeddingDims,
		})
		up.Simulator = true
		up.Adapter, err = provider.NewOpenAI("http://simulator.invalid/v1", "", u.Headers)
		up.Transport = simulator.Transport(h)
	default:
		err = fmt.Errorf("unknown type %q", u.Type)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("upstream %s: %w", u.Name, err)
	}
	var checker *resilience.Checker
	if u.HealthCheck != nil && u.Type != config.TypeSimulator {
		if checker, err = resilience.NewChecker(u.BaseURL, u.HealthCheck, up.Transport); err != nil {
			return nil, nil, nil, fmt.Errorf("upstream %s: %w", u.Name, err)
		}
		// A custom model server may still be starting: it is not ready
		// (and its endpoints not READY) until its first check passes.
		checker.StartUnhealthy = u.Type == config.TypeMLflow
		if onState != nil {
			checker.OnChange = func(status string) { onState(u.Name, "health", status) }
		}
	}
	cb := u.CircuitBreaker
	if cb == nil {
		cb = &config.CircuitBreaker{Failures: 5, Cooldown: config.Duration(30 * time.Second)}
	}
	b := resilience.NewBreaker(cb)
	if onState != nil {
		b.OnChange = func(state string) { onState(u.Name, "breaker", state) }
	}
	return up, resilience.NewGuard(b, checker), checker, nil
}

// buildUpstreams builds the configured upstreams.
func buildUpstreams(cfg *config.Config, transport func(config.Upstream) (http.RoundTripper, error), onState func(upstream, kind, state string)) (*upstreamSet, error) {
	set := &upstreamSet{ups: map[string]*proxy.Upstream{}, guards: map[string]proxy.Guard{}, checkers: map[string]*resilience.Checker{}}
	for _, u := range cfg.Upstreams {
		up, g, c, err := newUpstream(u, transport, onState)
		if err != nil {
			return nil, err
		}
		set.ups[u.Name], set.guards[u.Name] = up, g
		if c != nil {
			set.checkers[u.Name] = c
		}
	}
	return set, nil
}

// plainTransport is a transport for calls to external upstreams when no
// egress policy applies: no proxy from the environment, a connection pool
// sized for a gateway, and no transparent compression (Sluice reads every
// body it meters).
func plainTransport() *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 0,
		DisableCompression:    true,
	}
}

// endpoints builds the configured endpoints with their prices, served
// entities, traffic splits, guards and capacity gates.
func endpoints(cfg *config.Config, set *upstreamSet, catalog *pricing.Catalog, log *slog.Logger, gate func(endpoint, entity string, c config.Capacity) proxy.Gate) ([]*proxy.Endpoint, error) {
	eps := make([]*proxy.Endpoint, 0, len(cfg.Endpoints))
	for _, e := range cfg.Endpoints {
		ep := &proxy.Endpoint{Name: e.Name, MaxOutputTokens: e.MaxOutputTokens, Kind: e.Kind,
			Fallback: e.FallbackEnabled(), Gateway: e.AIGateway}
		if g := e.AIGateway; g != nil && g.InferenceTableConfig != nil && g.InferenceTableConfig.Enabled {
			ep.CapturePayloads = true
		}
		for _, a := range e.APIs {
			ep.APIs = append(ep.APIs, sluice.API(a))
		}
		var err error
		if ep.Targets, err = endpointTargets(e, set.ups, catalog, log); err != nil {
			return nil, err
		}
		names := e.EntityNames()
		for i, t := range e.EndpointTargets() {
			pt := ep.Targets[i]
			pt.Name, pt.Guard = names[i], set.guards[t.Upstream]
			capc := t.Capacity
			if capc == nil && t.WorkloadSize != "" {
				capc = &config.Capacity{Concurrency: config.WorkloadConcurrency(t.WorkloadSize),
					MaxQueueWait: config.Duration(10 * time.Second), MaxQueue: 64}
			}
			if capc != nil && gate != nil {
				pt.Gate = gate(e.Name, names[i], *capc)
			}
			if t.TrafficPercentage != nil {
				ep.Split = append(ep.Split, *t.TrafficPercentage)
			}
		}
		// A traffic split is Databricks' model: fallback follows the
		// served entities' order.
		ep.Ordered = len(ep.Split) > 0
		eps = append(eps, ep)
	}
	return eps, nil
}

// target builds one endpoint target with its price: the configured one,
// else the catalog's for the upstream's provider and model.
func target(up *proxy.Upstream, model string, price *config.EndpointPrice, catalog *pricing.Catalog, log *slog.Logger, endpoint string) (*proxy.Target, error) {
	t := &proxy.Target{Upstream: up, Model: model}
	if price != nil {
		in, err := pricing.ParseUSD(price.Input)
		if err != nil {
			return nil, fmt.Errorf("endpoint %s: price.input_per_1m: %w", endpoint, err)
		}
		out, err := pricing.ParseUSD(price.Output)
		if err != nil {
			return nil, fmt.Errorf("endpoint %s: price.output_per_1m: %w", endpoint, err)
		}
		t.Price = pricing.Price{InputPer1M: int64(in), OutputPer1M: int64(out), Source: "config"}
		t.Priced, t.PriceVersion = true, "config:"+catalog.Version()
		return t, nil
	}
	if p, ok := catalog.Lookup(up.Provider, model); ok {
		t.Price, t.Priced, t.PriceVersion = p, true, catalog.Version()
	} else {
		log.Warn("endpoint has no catalog price; it will be priced by the model the upstream reports, or recorded as unpriced",
			"endpoint", endpoint, "upstream", up.Name, "provider", up.Provider, "model", model)
	}
	return t, nil
}

// capacities keeps the capacity gates of served entities, so that a gate
// survives recompiling its endpoint (calls in flight and queued keep their
// places) and hourly capacity charges know what exists.
type capacities struct {
	mu    sync.Mutex
	gates map[string]*capacityGate // by endpoint/entity/limits
	now   func() time.Time
}

type capacityGate struct {
	endpoint, name string
	gate           *capacity.Gate
	entity         capacity.Entity
	priced         bool
}

// gate returns the capacity gate for a served entity with declared
// capacity, or nil when it declares none.
func (s *Server) gate(endpoint, entity string, c config.Capacity) proxy.Gate {
	l, ok := capacity.LimitsFor(&c, "")
	if !ok {
		return nil
	}
	caps := s.caps
	caps.mu.Lock()
	defer caps.mu.Unlock()
	key := fmt.Sprintf("%s/%s/%+v/%s", endpoint, entity, l, c.HourlyPrice)
	if g, ok := caps.gates[key]; ok {
		return g.gate
	}
	g := &capacityGate{endpoint: endpoint, name: entity, gate: capacity.NewGate(l, nil)}
	e, priced, err := capacity.EntityFor(endpoint, entity, &c, "", caps.now())
	if err != nil {
		s.log.Warn("capacity price not understood; its hours are not charged", "endpoint", endpoint, "entity", entity, "err", err)
	}
	g.entity, g.priced = e, priced
	caps.gates[key] = g
	return g.gate
}

// capacityEntities lists the priced capacities of the endpoints served now.
func (s *Server) capacityEntities() []capacity.Entity {
	caps := s.caps
	caps.mu.Lock()
	byGate := make(map[proxy.Gate]capacity.Entity, len(caps.gates))
	for _, g := range caps.gates {
		if g.priced {
			byGate[g.gate] = g.entity
		}
	}
	caps.mu.Unlock()
	var out []capacity.Entity
	for _, ep := range s.proxy.Endpoints() {
		for _, t := range ep.Targets {
			if e, ok := byGate[t.Gate]; ok && t.Gate != nil {
				out = append(out, e)
			}
		}
	}
	return out
}
