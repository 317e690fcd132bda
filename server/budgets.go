package server

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/admission"
	"github.com/sluice-gateway/sluice/budget"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/metrics"
)

// budgetAdmitter builds the budget manager, its admitter, its metrics and
// its background loop (reconcile, alerts, budget list refresh).
func (s *Server) budgetAdmitter(ctx context.Context, cfg *config.Config, m *metrics.Metrics) (*admission.Budgets, error) {
	host, _ := os.Hostname()
	var hook *budget.Webhook
	if cfg.Budgets.WebhookURL != "" {
		hook = &budget.Webhook{URL: cfg.Budgets.WebhookURL}
	}
	alerts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_budget_alerts_total", Help: "Budget alert thresholds reached, by scope and threshold.",
	}, []string{"scope", "threshold"})
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_budget_rejections_total", Help: "Requests refused by a hard budget, by budget scope.",
	}, []string{"scope"})
	s.budgets = budget.New(s.store, budget.Options{
		Owner:    fmt.Sprintf("%s/%d", host, os.Getpid()),
		TTL:      cfg.Budgets.ReservationTTL.D(),
		FailOpen: cfg.Budgets.FailOpen,
		Logger:   s.log,
		OnStoreError: func(err error) {
			s.log.Warn("budget store unavailable; admitting (fail_open)", "err", err)
		},
		OnAlert: func(ctx context.Context, a sluice.BudgetAlert) error {
			if hook != nil {
				if err := hook.Send(ctx, a); err != nil {
					return err
				}
			}
			s.log.Warn("budget alert", "budget", a.BudgetID, "scope", a.Scope, "subject", a.Subject,
				"threshold_percent", a.Threshold, "settled_usd", sluice.FormatUSD(a.SettledMicros),
				"limit_usd", sluice.FormatUSD(a.LimitMicros), "hard", a.Hard, "period_start", a.PeriodStart)
			alerts.WithLabelValues(string(a.Scope), fmt.Sprint(a.Threshold)).Inc()
			return nil
		},
	})
	ba := &admission.Budgets{Manager: s.budgets, Store: s.store, Logger: s.log,
		OnRefused: func(scope string) { refused.WithLabelValues(scope).Inc() }}
	if err := ba.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("load budgets: %w", err)
	}
	s.reg.MustRegister(alerts, refused, &budgetCollector{s: s})
	interval := cfg.Budgets.ReconcileInterval.D()
	s.background = append(s.background,
		func(ctx context.Context) {
			t := time.NewTicker(interval)
			defer t.Stop()
			s.budgets.Run(ctx, t.C)
		},
		func(ctx context.Context) {
			t := time.NewTicker(interval)
			defer t.Stop()
			ba.Run(ctx, t.C)
		})
	s.budgetList = ba
	return ba, nil
}

// budgetCollector reports each budget's remaining amount and the
// outstanding reservations at scrape time.
type budgetCollector struct{ s *Server }

var (
	budgetRemainingDesc = prometheus.NewDesc("sluice_budget_remaining_microdollars",
		"Limit minus settled and reserved spend in the current period.", []string{"budget", "scope", "subject", "period"}, nil)
	budgetSettledDesc = prometheus.NewDesc("sluice_budget_settled_microdollars",
		"Settled spend in the current period.", []string{"budget", "scope", "subject", "period"}, nil)
	reservationsDesc = prometheus.NewDesc("sluice_budget_reservations_outstanding",
		"Budget reservations not yet settled or released.", nil, nil)
)

func (c *budgetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- budgetRemainingDesc
	ch <- budgetSettledDesc
	ch <- reservationsDesc
}

func (c *budgetCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if sts, err := c.s.budgets.Statuses(ctx); err == nil {
		for _, st := range sts {
			labels := []string{st.Budget.ID, string(st.Budget.Scope), st.Budget.Subject, string(st.Budget.Period)}
			ch <- prometheus.MustNewConstMetric(budgetRemainingDesc, prometheus.GaugeValue, float64(st.RemainingMicros()), labels...)
			ch <- prometheus.MustNewConstMetric(budgetSettledDesc, prometheus.GaugeValue, float64(st.SettledMicros), labels...)
		}
	}
	if n, err := c.s.budgets.Outstanding(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(reservationsDesc, prometheus.GaugeValue, float64(n))
	}
}

// RefreshBudgets reloads the budget list the gateway checks requests
// against (it also refreshes itself every budgets.reconcile_interval).
func (s *Server) RefreshBudgets(ctx context.Context) error { return s.budgetList.Refresh(ctx) }
