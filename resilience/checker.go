package resilience

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gateway/sluice/config"
)

// Health statuses, as Status reports them.
const (
	StatusUnknown   = "UNKNOWN"
	StatusHealthy   = "HEALTHY"
	StatusUnhealthy = "UNHEALTHY"
)

// maxHealthBody is how much of a health answer is read before closing it,
// so the connection can be reused.
const maxHealthBody = 64 << 10

// Checker is an active health check: it fetches an upstream's health path
// with GET and counts 2xx answers as successes and everything else
// (connection errors, timeouts, other statuses, redirects) as failures.
// UnhealthyThreshold failures in a row make the upstream unhealthy;
// HealthyThreshold successes in a row make it healthy again.
//
// Until a threshold is first reached the status is UNKNOWN, which Healthy
// treats as healthy unless StartUnhealthy is set (a custom model server
// that is still starting is not ready until it answers).
//
// Set the fields before calling Run or Check; the methods are safe for
// concurrent use.
type Checker struct {
	// URL is the address probed. It is never shown to clients.
	URL string
	// Transport sends the probes. It is the upstream's own transport, so
	// the probe goes only where the upstream's calls may go.
	Transport          http.RoundTripper
	Interval           time.Duration
	Timeout            time.Duration
	UnhealthyThreshold int
	HealthyThreshold   int
	StartUnhealthy     bool
	// OnChange, if set, is called with the new status on every change, in
	// order, with the checker's lock held: it must be quick and must not
	// call the Checker.
	OnChange func(status string)

	mu      sync.Mutex
	status  string
	ok, bad int // consecutive successes and failures
	lastErr error
}

// NewChecker returns a checker of hc.Path on baseURL's scheme and host
// (config defaults applied), sending probes with rt. It returns nil and
// no error when hc is nil.
func NewChecker(baseURL string, hc *config.HealthCheck, rt http.RoundTripper) (*Checker, error) {
	if hc == nil {
		return nil, nil
	}
	if rt == nil {
		return nil, errors.New("health check: no transport")
	}
	u, err := url.Parse(baseURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, errors.New("health check: the base URL needs an http or https scheme and a host")
	}
	if !strings.HasPrefix(hc.Path, "/") {
		return nil, fmt.Errorf("health check: path %q is not absolute", hc.Path)
	}
	p, err := url.Parse(hc.Path)
	if err != nil {
		return nil, fmt.Errorf("health check: path: %w", err)
	}
	probe := url.URL{Scheme: u.Scheme, Host: u.Host, Path: p.Path, RawPath: p.RawPath, RawQuery: p.RawQuery}
	return &Checker{
		URL:                probe.String(),
		Transport:          rt,
		Interval:           time.Duration(hc.Interval),
		Timeout:            time.Duration(hc.Timeout),
		UnhealthyThreshold: max(hc.UnhealthyThreshold, 1),
		HealthyThreshold:   max(hc.HealthyThreshold, 1),
	}, nil
}

// Healthy reports whether calls may go to the upstream.
func (c *Checker) Healthy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.status {
	case StatusHealthy:
		return true
	case StatusUnhealthy:
		return false
	}
	return !c.StartUnhealthy
}

// Status returns HEALTHY, UNHEALTHY or UNKNOWN (no threshold reached yet).
func (c *Checker) Status() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status == "" {
		return StatusUnknown
	}
	return c.status
}

// LastError returns the last probe's failure, or nil if it succeeded. It
// may name the upstream's address: log it, never show it to a client.
func (c *Checker) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// Run probes at once and then every Interval, one probe at a time, until
// ctx ends.
func (c *Checker) Run(ctx context.Context) {
	interval := c.Interval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		c.Check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Check runs one probe, records its outcome and returns its failure (nil
// when the upstream answered 2xx). A probe cut short because ctx ended is
// not counted.
func (c *Checker) Check(ctx context.Context) error {
	err := c.probe(ctx)
	if err != nil && ctx.Err() != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastErr = err
	if err == nil {
		c.ok++
		c.bad = 0
		if c.ok >= max(c.HealthyThreshold, 1) {
			c.set(StatusHealthy)
		}
	} else {
		c.bad++
		c.ok = 0
		if c.bad >= max(c.UnhealthyThreshold, 1) {
			c.set(StatusUnhealthy)
		}
	}
	return err
}

func (c *Checker) set(status string) {
	if c.status == status {
		return
	}
	c.status = status
	if c.OnChange != nil {
		c.OnChange(status)
	}
}

func (c *Checker) probe(ctx context.Context) error {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "sluice-health-check")
	// RoundTrip, not a Client: redirects are answers, not hops to follow.
	resp, err := c.Transport.RoundTrip(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxHealthBody))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("health check answered %d", resp.StatusCode)
	}
	return nil
}
