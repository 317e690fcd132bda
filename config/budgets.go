package config

import (
	"net/url"
	"time"
)

// Budgets configures how budget reservations and alerts behave. Budgets
// themselves are managed with `sluice budgets` and the admin API.
type Budgets struct {
	// WebhookURL receives a JSON POST for every alert threshold reached.
	WebhookURL string `yaml:"webhook_url"`
	// FailOpen admits requests when the store cannot be reached to
	// reserve for them; the default refuses them (fail closed).
	FailOpen bool `yaml:"fail_open"`
	// ReservationTTL is how long a reservation may stay unsettled before
	// the reconciler releases it (the process that made it is presumed
	// gone). It must outlast the slowest request.
	ReservationTTL Duration `yaml:"reservation_ttl"`
	// ReconcileInterval is how often expired reservations are released,
	// alerts delivered, and the budget list refreshed.
	ReconcileInterval Duration `yaml:"reconcile_interval"`
}

func (c *Config) budgetDefaults() {
	setDuration(&c.Budgets.ReservationTTL, 15*time.Minute)
	setDuration(&c.Budgets.ReconcileInterval, 5*time.Second)
}

func (c *Config) validateBudgets(add func(field, format string, a ...any)) {
	b := c.Budgets
	if b.WebhookURL != "" {
		if u, err := url.Parse(b.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("budgets.webhook_url", "must be an absolute http or https URL")
		}
	}
	maxUp := time.Duration(0)
	for _, u := range c.Upstreams {
		maxUp = max(maxUp, u.Timeout.D())
	}
	if b.ReservationTTL.D() <= maxUp {
		add("budgets.reservation_ttl", "must be longer than the longest upstream timeout (%v)", maxUp)
	}
	if b.ReconcileInterval.D() < 100*time.Millisecond {
		add("budgets.reconcile_interval", "must be at least 100ms")
	}
}
