package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

// servingMetrics are the gauges of upstream health and capacity.
type servingMetrics struct {
	state *prometheus.GaugeVec // 1 for an upstream's current breaker or health state
}

func (s *Server) registerServingMetrics() {
	s.smetrics = &servingMetrics{state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_upstream_state",
		Help: "1 for each upstream's current circuit-breaker state (kind=breaker: closed, open, half_open) and health-check status (kind=health).",
	}, []string{"upstream", "kind", "state"})}
	s.reg.MustRegister(s.smetrics.state, capacityCollector{s})
}

// upstreamState records and logs a breaker or health-check transition.
func (s *Server) upstreamState(upstream, kind, state string) {
	m := s.smetrics.state
	m.DeletePartialMatch(prometheus.Labels{"upstream": upstream, "kind": kind})
	m.WithLabelValues(upstream, kind, state).Set(1)
	s.log.Warn("upstream state changed", "upstream", upstream, "kind", kind, "state", state)
}

// capacityCollector reports each capacity gate's calls in flight and
// waiting.
type capacityCollector struct{ s *Server }

var (
	capInFlight = prometheus.NewDesc("sluice_capacity_in_flight", "Calls in flight on a served entity with declared capacity.", []string{"endpoint", "served_entity"}, nil)
	capQueued   = prometheus.NewDesc("sluice_capacity_queued", "Calls waiting for a served entity's capacity.", []string{"endpoint", "served_entity"}, nil)
)

func (c capacityCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- capInFlight
	ch <- capQueued
}

func (c capacityCollector) Collect(ch chan<- prometheus.Metric) {
	caps := c.s.caps
	if caps == nil {
		return
	}
	caps.mu.Lock()
	defer caps.mu.Unlock()
	seen := map[[2]string]bool{}
	for _, g := range caps.gates {
		k := [2]string{g.endpoint, g.name}
		if seen[k] {
			continue
		}
		seen[k] = true
		ch <- prometheus.MustNewConstMetric(capInFlight, prometheus.GaugeValue, float64(g.gate.InFlight()), k[0], k[1])
		ch <- prometheus.MustNewConstMetric(capQueued, prometheus.GaugeValue, float64(g.gate.Queued()), k[0], k[1])
	}
}
