package config

import (
	"fmt"
	"net/url"
	"time"
)

// RateLimits configures requests-per-minute and tokens-per-minute limits.
type RateLimits struct {
	// Backend is "memory" (one process; the default) or "redis" (shared
	// by every replica).
	Backend string     `yaml:"backend"`
	Redis   RedisLimit `yaml:"redis"`
	Rules   []RateRule `yaml:"rules"`
}

// RedisLimit is the Redis rate-limit backend.
type RedisLimit struct {
	URL string `yaml:"url"` // redis://host:6379/0
	// FailOpen admits requests when Redis cannot be reached; false
	// refuses them (fail closed). The default is true.
	FailOpen *bool    `yaml:"fail_open"`
	Prefix   string   `yaml:"prefix"`
	Timeout  Duration `yaml:"timeout"` // per round trip, default 100ms
}

// RateRule limits one kind of principal. Key is what the limit counts:
// key, team, endpoint or user (the request's end user). Databricks AI
// Gateway's keys are accepted too: service_principal (a key),
// user_group (a team), user, endpoint.
type RateRule struct {
	Key string `yaml:"key"`
	// Principal limits one principal only; empty gives every principal
	// its own bucket with these limits.
	Principal string `yaml:"principal"`
	// Endpoint restricts the rule to one endpoint; empty means all.
	Endpoint string `yaml:"endpoint"`
	RPM      int64  `yaml:"rpm"`
	TPM      int64  `yaml:"tpm"`
}

// Scope maps a rule's key, Databricks names included, onto Sluice's.
func (r RateRule) Scope() string {
	switch r.Key {
	case "service_principal":
		return "key"
	case "user_group":
		return "team"
	}
	return r.Key
}

func (c *Config) limitDefaults() {
	rl := &c.RateLimits
	setDefault(&rl.Backend, "memory")
	setDefault(&rl.Redis.Prefix, "sluice:rl:")
	setDuration(&rl.Redis.Timeout, 100*time.Millisecond)
	if rl.Redis.FailOpen == nil {
		t := true
		rl.Redis.FailOpen = &t
	}
}

func (c *Config) validateLimits(add func(field, format string, a ...any)) {
	rl := c.RateLimits
	switch rl.Backend {
	case "memory":
	case "redis":
		if u, err := url.Parse(rl.Redis.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			add("rate_limits.redis.url", "must be a redis:// or rediss:// URL")
		}
	default:
		add("rate_limits.backend", "must be memory or redis, not %q", rl.Backend)
	}
	eps := map[string]bool{}
	for _, e := range c.Endpoints {
		eps[e.Name] = true
	}
	for i, r := range rl.Rules {
		f := fmt.Sprintf("rate_limits.rules[%d]", i)
		switch r.Key {
		case "key", "team", "endpoint", "user", "service_principal", "user_group":
		default:
			add(f+".key", "%q is not key, team, endpoint or user (or service_principal, user_group)", r.Key)
		}
		if r.RPM < 0 || r.TPM < 0 || r.RPM > 100_000_000_000 || r.TPM > 100_000_000_000 {
			add(f, "rpm and tpm must be between 0 and 1e11")
		}
		if r.RPM == 0 && r.TPM == 0 {
			add(f, "needs rpm or tpm")
		}
		if r.Endpoint != "" && !eps[r.Endpoint] {
			add(f+".endpoint", "%q is not a declared endpoint", r.Endpoint)
		}
	}
}
