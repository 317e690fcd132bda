package server

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/pricing"
	"github.com/sluice-gateway/sluice/provider"
	"github.com/sluice-gateway/sluice/proxy"
	"github.com/sluice-gateway/sluice/simulator"
)

// Upstreams builds the configured upstreams by name.
func Upstreams(cfg *config.Config, transport func(config.Upstream) (http.RoundTripper, error)) (map[string]*proxy.Upstream, error) {
	ups := make(map[string]*proxy.Upstream, len(cfg.Upstreams))
	for _, u := range cfg.Upstreams {
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
		case config.TypeSimulator:
			sc := u.Simulator
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
			return nil, fmt.Errorf("upstream %s: %w", u.Name, err)
		}
		ups[u.Name] = up
	}
	return ups, nil
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

// Endpoints builds the configured endpoints with their prices.
func Endpoints(cfg *config.Config, catalog *pricing.Catalog, log *slog.Logger, transport func(config.Upstream) (http.RoundTripper, error)) ([]*proxy.Endpoint, error) {
	ups, err := Upstreams(cfg, transport)
	if err != nil {
		return nil, err
	}
	eps := make([]*proxy.Endpoint, 0, len(cfg.Endpoints))
	for _, e := range cfg.Endpoints {
		ep := &proxy.Endpoint{Name: e.Name, MaxOutputTokens: e.MaxOutputTokens}
		for _, a := range e.APIs {
			ep.APIs = append(ep.APIs, sluice.API(a))
		}
		if ep.Targets, err = endpointTargets(e, ups, catalog, log); err != nil {
			return nil, err
		}
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
