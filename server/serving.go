package server

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/aigateway"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/auth"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/pricing"
	"github.com/sluice-gateway/sluice/proxy"
	"github.com/sluice-gateway/sluice/resilience"
	"github.com/sluice-gateway/sluice/serving"
)

// servingPlane joins the serving-endpoints control plane to the data
// plane: endpoints from the configuration file (static) and endpoints
// created through /api/2.0/serving-endpoints (kept in the store) are
// served side by side; a name in the file always wins.
type servingPlane struct {
	s       *Server
	mgr     *serving.Manager
	static  []*proxy.Endpoint
	mu      sync.Mutex
	guards  map[*proxy.Upstream]proxy.Guard
	checker map[*proxy.Upstream]*resilience.Checker
	// built are the external models' upstreams by their settings, so a
	// recompiled endpoint keeps its upstreams (connections, breakers).
	built map[string]*proxy.Upstream
}

func (s *Server) newServingPlane(cfg *config.Config, catalog *pricing.Catalog, static []*proxy.Endpoint) *servingPlane {
	sp := &servingPlane{s: s, static: static, guards: map[*proxy.Upstream]proxy.Guard{}, checker: map[*proxy.Upstream]*resilience.Checker{},
		built: map[string]*proxy.Upstream{}}
	set := s.upstreams
	for name, up := range set.ups {
		sp.guards[up] = set.guards[name]
		if c := set.checkers[name]; c != nil {
			sp.checker[up] = c
		}
	}
	sp.mgr = serving.New(serving.Options{
		Store: s.store, Config: cfg, Catalog: catalog, Logger: s.log, Now: s.now,
		Hooks: serving.Hooks{
			Upstream: func(name string) *proxy.Upstream { return set.ups[name] },
			NewUpstream: func(u config.Upstream) (*proxy.Upstream, error) {
				if u.Timeout == 0 {
					u.Timeout = config.Duration(config.DefaultUpstreamTimeout)
				}
				key := fmt.Sprintf("%#v", u)
				sp.mu.Lock()
				defer sp.mu.Unlock()
				if up, ok := sp.built[key]; ok {
					return up, nil
				}
				up, g, c, err := newUpstream(u, s.net.transport, s.upstreamState)
				if err != nil {
					return nil, err
				}
				sp.built[key], sp.guards[up] = up, g
				if c != nil {
					sp.checker[up] = c
				}
				return up, nil
			},
			Guard: func(up *proxy.Upstream) proxy.Guard {
				sp.mu.Lock()
				defer sp.mu.Unlock()
				return sp.guards[up]
			},
			Gate: s.gate,
			Ready: func(up *proxy.Upstream) bool {
				sp.mu.Lock()
				c := sp.checker[up]
				sp.mu.Unlock()
				return c == nil || c.Healthy()
			},
			Apply: sp.apply,
		},
	})
	return sp
}

// apply serves the static endpoints and the API-created ones.
func (sp *servingPlane) apply(api []*proxy.Endpoint) {
	eps := make([]*proxy.Endpoint, 0, len(sp.static)+len(api))
	taken := map[string]bool{}
	for _, e := range sp.static {
		eps = append(eps, e)
		taken[e.Name] = true
	}
	for _, e := range api {
		if taken[e.Name] {
			sp.s.log.Warn("a serving endpoint created through the API has the name of one in the configuration file; the file's is served",
				"endpoint", e.Name)
			continue
		}
		eps = append(eps, e)
	}
	sp.s.proxy.SetEndpoints(eps)

	// Forget the external upstreams no endpoint uses any more.
	live := map[*proxy.Upstream]bool{}
	for _, e := range api {
		for _, t := range e.Targets {
			live[t.Upstream] = true
		}
	}
	sp.mu.Lock()
	for key, up := range sp.built {
		if !live[up] {
			delete(sp.built, key)
			delete(sp.guards, up)
			delete(sp.checker, up)
		}
	}
	sp.mu.Unlock()
}

// authn authenticates control-plane calls with Sluice keys.
func (s *Server) authn(r *http.Request) (*sluice.Key, error) {
	secret := auth.FromRequest(r)
	if secret == "" {
		return nil, apierr.Unauthorized()
	}
	k, err := s.auth.Authenticate(r.Context(), secret)
	if err != nil {
		return nil, apierr.Unauthorized()
	}
	return k, nil
}

// aiGateway builds the AI Gateway parts of the data plane: the guardrails
// admitter, the output filter and the inference logger.
func (s *Server) aiGateway() (*aigateway.Guardrails, func(*proxy.Endpoint, []byte) ([]byte, error), *aigateway.InferenceLogger) {
	g := aigateway.NewGuardrails(s.net.classifier)
	output := func(ep *proxy.Endpoint, body []byte) ([]byte, error) {
		if !aigateway.NeedsOutput(ep.Gateway) {
			return body, nil
		}
		out, changed, err := g.FilterOutput(ep.Gateway, body)
		if err != nil {
			return nil, err
		}
		if !changed {
			return body, nil
		}
		return out, nil
	}
	il := aigateway.NewInferenceLogger(s.store, aigateway.LoggerOptions{Classifier: s.net.classifier, Logger: s.log})
	s.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sluice_inference_log_dropped_total",
			Help: "Inference-table rows dropped because the write queue was full."}, func() float64 { return float64(il.Dropped()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sluice_inference_log_failed_total",
			Help: "Inference-table rows the store refused after retries."}, func() float64 { return float64(il.Failed()) }),
	)
	s.background = append(s.background, func(ctx context.Context) {
		if err := il.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("inference log writer stopped", "err", err)
		}
	})
	s.closers = append(s.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := il.Close(ctx); err != nil {
			s.log.Error("inference log rows not written at shutdown", "err", err)
		}
	})
	return g, output, il
}
