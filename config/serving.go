package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice"
)

// Endpoint kinds, as Databricks users know them.
const (
	KindPayPerToken = "pay_per_token"          // an external provider billed per token
	KindProvisioned = "provisioned_throughput" // dedicated capacity billed per hour
	KindCustom      = "custom"                 // any HTTP model server
)

// TypeMLflow is an MLflow scoring server (POST /invocations), the shape of
// Databricks custom-model endpoints.
const TypeMLflow = "mlflow"

// Serving settings of an endpoint: its kind, traffic split, fallback and
// AI Gateway settings. They are inlined into Endpoint.
type EndpointServing struct {
	// Kind is pay_per_token (the default), provisioned_throughput or custom.
	Kind string `yaml:"kind"`
	// Fallback tries the next target, in order, when one fails before the
	// client received a byte. Default true.
	Fallback *bool `yaml:"fallback"`
	// Capacity and WorkloadSize apply to the single target of an endpoint
	// written with upstream/model (see Target).
	Capacity     *Capacity `yaml:"capacity"`
	WorkloadSize string    `yaml:"workload_size"`
	// AIGateway holds AI Gateway settings in Databricks' shape.
	AIGateway *sluice.AIGateway `yaml:"ai_gateway"`
}

// TargetServing are a target's serving settings, inlined into Target.
type TargetServing struct {
	// Name is the served entity's name: unique within the endpoint,
	// default the upstream's name.
	Name string `yaml:"name"`
	// TrafficPercentage sends this share of the endpoint's calls to the
	// target first. Set on every target or none; they sum to 100.
	TrafficPercentage *int `yaml:"traffic_percentage"`
	// Capacity declares provisioned capacity and its hourly price.
	Capacity *Capacity `yaml:"capacity"`
	// WorkloadSize (Small, Medium, Large) caps concurrent calls to a
	// custom model at 4, 16 or 64.
	WorkloadSize string `yaml:"workload_size"`
}

// Capacity is a target's declared capacity.
type Capacity struct {
	// TokensPerSecond admits calls while their tokens fit this rate.
	TokensPerSecond int64 `yaml:"tokens_per_second"`
	// Concurrency admits this many calls at once.
	Concurrency int64 `yaml:"concurrency"`
	// HourlyPrice is the USD owed per hour of capacity, used or not.
	HourlyPrice string `yaml:"hourly_price"`
	// MaxQueueWait bounds how long a call waits for room (default 10s);
	// past it the call gets 429 with Retry-After.
	MaxQueueWait Duration `yaml:"max_queue_wait"`
	// MaxQueue bounds how many calls wait at once (default 64).
	MaxQueue int `yaml:"max_queue"`
}

// WorkloadConcurrency maps a Databricks workload size onto a concurrency
// limit: Small 4, Medium 16, Large 64 (the upper ends of Databricks'
// ranges). It returns 0 for an unknown size.
func WorkloadConcurrency(size string) int64 {
	switch size {
	case "Small":
		return 4
	case "Medium":
		return 16
	case "Large":
		return 64
	}
	return 0
}

// UpstreamHealth are an upstream's health settings, inlined into Upstream.
type UpstreamHealth struct {
	// HealthCheck polls the upstream; while it fails, calls skip it.
	HealthCheck *HealthCheck `yaml:"health_check"`
	// CircuitBreaker stops calls to an upstream failing in a row.
	CircuitBreaker *CircuitBreaker `yaml:"circuit_breaker"`
}

// HealthCheck is an active health check.
type HealthCheck struct {
	// Path is fetched with GET on the base URL's scheme and host, e.g.
	// /health; 2xx is healthy.
	Path               string   `yaml:"path"`
	Interval           Duration `yaml:"interval"`            // default 10s
	Timeout            Duration `yaml:"timeout"`             // default 2s
	UnhealthyThreshold int      `yaml:"unhealthy_threshold"` // failures in a row, default 2
	HealthyThreshold   int      `yaml:"healthy_threshold"`   // successes in a row, default 1
}

// CircuitBreaker opens after Failures consecutive failed attempts
// (connection errors, timeouts, 5xx) and half-opens after Cooldown,
// letting one probe through.
type CircuitBreaker struct {
	Disabled bool     `yaml:"disabled"`
	Failures int      `yaml:"failures"` // default 5
	Cooldown Duration `yaml:"cooldown"` // default 30s
}

// Secrets is where {{secrets/scope/key}} references in serving-endpoint
// configs are resolved: the file Dir/scope/key, else the environment
// variable EnvPrefix + SCOPE_KEY (upper case, '-' and '.' as '_').
type Secrets struct {
	Dir       string `yaml:"dir"`
	EnvPrefix string `yaml:"env_prefix"` // default SLUICE_SECRET_
}

// Serving configures the serving-endpoints control plane.
type Serving struct {
	// ReadyTimeout bounds how long a new config may wait for its served
	// entities to become healthy before the update is marked failed.
	ReadyTimeout Duration `yaml:"ready_timeout"` // default 10m
	// Refresh is how often other replicas' changes are picked up.
	Refresh Duration `yaml:"refresh"` // default 2s
}

// Serving settings of the single target of an upstream/model endpoint.
func (e *Endpoint) singleTarget() Target {
	t := Target{Upstream: e.Upstream, Model: e.Model, Price: e.Price}
	t.Capacity, t.WorkloadSize = e.Capacity, e.WorkloadSize
	return t
}

// FallbackEnabled reports whether the endpoint falls back across targets.
func (e *Endpoint) FallbackEnabled() bool {
	if g := e.AIGateway; g != nil && g.FallbackConfig != nil {
		return g.FallbackConfig.Enabled
	}
	return e.Fallback == nil || *e.Fallback
}

// EntityNames returns the served-entity name of each of the endpoint's
// targets: its name, else its upstream's, else (when several targets
// share an upstream) "upstream/model".
func (e *Endpoint) EntityNames() []string {
	ts := e.EndpointTargets()
	uses := map[string]int{}
	for _, t := range ts {
		uses[t.Upstream]++
	}
	out := make([]string, len(ts))
	for i, t := range ts {
		switch {
		case t.Name != "":
			out[i] = t.Name
		case uses[t.Upstream] > 1:
			out[i] = t.Upstream + "/" + t.Model
		default:
			out[i] = t.Upstream
		}
	}
	return out
}

func (c *Config) servingDefaults() {
	setDefault(&c.Secrets.EnvPrefix, "SLUICE_SECRET_")
	setDuration(&c.Serving.ReadyTimeout, 10*time.Minute)
	setDuration(&c.Serving.Refresh, 2*time.Second)
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		if h := u.HealthCheck; h != nil {
			setDuration(&h.Interval, 10*time.Second)
			setDuration(&h.Timeout, 2*time.Second)
			if h.UnhealthyThreshold == 0 {
				h.UnhealthyThreshold = 2
			}
			if h.HealthyThreshold == 0 {
				h.HealthyThreshold = 1
			}
		}
		if u.CircuitBreaker == nil {
			u.CircuitBreaker = &CircuitBreaker{}
		}
		if b := u.CircuitBreaker; b.Failures == 0 {
			b.Failures = 5
		}
		setDuration(&u.CircuitBreaker.Cooldown, 30*time.Second)
	}
	capDefaults := func(cp *Capacity) {
		if cp == nil {
			return
		}
		setDuration(&cp.MaxQueueWait, 10*time.Second)
		if cp.MaxQueue == 0 {
			cp.MaxQueue = 64
		}
	}
	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		setDefault(&e.Kind, KindPayPerToken)
		capDefaults(e.Capacity)
		for j := range e.Targets {
			capDefaults(e.Targets[j].Capacity)
		}
	}
}

func (c *Config) validateServing(add func(field, format string, a ...any)) {
	for i, u := range c.Upstreams {
		f := fmt.Sprintf("upstreams[%d]", i)
		if h := u.HealthCheck; h != nil {
			if !strings.HasPrefix(h.Path, "/") {
				add(f+".health_check.path", "must be an absolute path such as /health")
			}
			if h.Interval < Duration(100*time.Millisecond) {
				add(f+".health_check.interval", "must be at least 100ms")
			}
			if h.Timeout <= 0 || h.Timeout > h.Interval {
				add(f+".health_check.timeout", "must be positive and at most the interval")
			}
			if h.UnhealthyThreshold < 1 || h.HealthyThreshold < 1 {
				add(f+".health_check", "thresholds must be at least 1")
			}
			if u.Type == TypeSimulator {
				add(f+".health_check", "the simulator needs no health check")
			}
		}
		if b := u.CircuitBreaker; b != nil && (b.Failures < 1 || b.Cooldown <= 0) {
			add(f+".circuit_breaker", "failures must be at least 1 and cooldown positive")
		}
	}
	checkCap := func(f string, cp *Capacity) {
		if cp == nil {
			return
		}
		if cp.TokensPerSecond < 0 || cp.Concurrency < 0 {
			add(f, "tokens_per_second and concurrency must not be negative")
		} else if cp.TokensPerSecond == 0 && cp.Concurrency == 0 {
			add(f, "needs tokens_per_second or concurrency")
		}
		if cp.HourlyPrice != "" {
			if err := checkUSD(cp.HourlyPrice); err != nil {
				add(f+".hourly_price", "%v", err)
			}
		}
		if cp.MaxQueueWait < 0 || cp.MaxQueueWait > Duration(10*time.Minute) {
			add(f+".max_queue_wait", "must be between 0s and 10m")
		}
		if cp.MaxQueue < 0 {
			add(f+".max_queue", "must not be negative")
		}
	}
	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		f := fmt.Sprintf("endpoints[%d]", i)
		switch e.Kind {
		case KindPayPerToken, KindProvisioned, KindCustom:
		default:
			add(f+".kind", "%q is not pay_per_token, provisioned_throughput or custom", e.Kind)
		}
		if len(e.Targets) > 0 && (e.Capacity != nil || e.WorkloadSize != "") {
			add(f, "with targets, set capacity and workload_size on each target")
		}
		checkCap(f+".capacity", e.Capacity)
		names := map[string]bool{}
		split, sum := 0, 0
		ts := e.EndpointTargets()
		entityNames := e.EntityNames()
		for j, t := range ts {
			tf := fmt.Sprintf("%s.targets[%d]", f, j)
			if len(e.Targets) == 0 {
				tf = f
			}
			n := entityNames[j]
			if names[n] && t.Name != "" {
				add(tf+".name", "served entity %q is listed twice; give each target its own name", n)
			}
			names[n] = true
			if t.TrafficPercentage != nil {
				split++
				if p := *t.TrafficPercentage; p < 0 || p > 100 {
					add(tf+".traffic_percentage", "must be between 0 and 100")
				} else {
					sum += p
				}
			}
			if len(e.Targets) > 0 {
				checkCap(tf+".capacity", t.Capacity)
			}
			if t.WorkloadSize != "" && WorkloadConcurrency(t.WorkloadSize) == 0 {
				add(tf+".workload_size", "%q is not Small, Medium or Large", t.WorkloadSize)
			}
			switch e.Kind {
			case KindProvisioned:
				if t.Capacity == nil || t.Capacity.HourlyPrice == "" {
					add(tf+".capacity", "a provisioned_throughput endpoint needs capacity with tokens_per_second or concurrency and hourly_price")
				}
			case KindCustom:
				if t.WorkloadSize == "" && (t.Capacity == nil || t.Capacity.Concurrency == 0) {
					add(tf+".workload_size", "a custom endpoint needs workload_size (Small, Medium, Large) or capacity.concurrency")
				}
			}
		}
		if split > 0 && split != len(ts) {
			add(f+".targets", "traffic_percentage must be set on every target or none")
		} else if split > 0 && sum != 100 {
			add(f+".targets", "traffic percentages sum to %d, not 100", sum)
		}
		for _, p := range e.AIGateway.Problems() {
			field, msg, _ := strings.Cut(p, ": ")
			add(f+".ai_gateway."+field, "%s", msg)
		}
	}
}
