package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/audit"
	"github.com/sluice-gateway/sluice/classify"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/egress"
	"github.com/sluice-gateway/sluice/ingress"
	"github.com/sluice-gateway/sluice/pricing"
	"github.com/sluice-gateway/sluice/proxy"
	"github.com/sluice-gateway/sluice/route"
)

// network is the server's network policy: the listeners it accepts on,
// the transports its upstream calls leave through, the data-class router
// and the audit trail.
type network struct {
	cfg    *config.Config
	log    *slog.Logger
	policy *egress.Policy
	floors *teamFloors  // class floors of the stored teams
	chain  *audit.Chain // nil when the audit trail is off
	async  *audit.Async // queues request audit records for chain
	router *route.Router
	// classifier finds sensitive values (nil when content scanning is off).
	classifier *classify.Classifier

	refused      *prometheus.CounterVec // connections closed by a listener
	auditDropped prometheus.Counter     // refused-connection records not queued
	auditErrors  prometheus.Counter

	// trustedByConn holds, from Accept until ConnContext, the trusted
	// proxies of the listener each connection came from.
	trustedByConn sync.Map // net.Conn → []netip.Prefix
}

// auditTimeout bounds each audit write.
const auditTimeout = 10 * time.Second

func newNetwork(_ context.Context, cfg *config.Config, st sluice.Store, log *slog.Logger, reg prometheus.Registerer) (*network, error) {
	policy, err := cfg.Egress.Policy()
	if err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	classifier, levels, err := cfg.DataClasses.Classifier()
	if err != nil {
		return nil, fmt.Errorf("data_classes: %w", err)
	}
	n := &network{cfg: cfg, log: log, policy: policy, classifier: classifier}
	if ts, ok := st.(sluice.TeamStore); ok {
		n.floors = &teamFloors{st: ts}
		if err := n.floors.refresh(context.Background()); err != nil {
			return nil, fmt.Errorf("load teams: %w", err)
		}
	}
	var auditor route.Auditor
	if cfg.AuditEnabled() {
		as, ok := st.(audit.Store)
		if !ok {
			return nil, errors.New("audit is enabled but the store keeps no audit trail")
		}
		n.chain = audit.NewChain(as, audit.ChainOptions{})
		// Requests do not wait for the audit store: records are queued
		// and written in batches (flushed by close).
		n.async = audit.NewAsync(n.chain, audit.AsyncOptions{Logger: log})
		auditor = n.async
	}

	n.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_ingress_refused_connections_total",
		Help: "Connections closed by a listener before TLS and HTTP, by listener and reason.",
	}, []string{"listener", "reason"})
	n.auditDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_audit_refusals_dropped_total",
		Help: "Refused connections not written to the audit trail because its queue was full (they are still counted).",
	})
	n.auditErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_audit_write_errors_total", Help: "Audit records that could not be written.",
	})
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_route_decisions_total",
		Help: "Requests by endpoint, data class and routing decision (allowed, routed, masked, blocked, refused).",
	}, []string{"endpoint", "class", "decision"})
	reg.MustRegister(n.refused, n.auditDropped, n.auditErrors, decisions)

	ups := make(map[string]route.Upstream, len(cfg.Upstreams))
	for _, u := range cfg.Upstreams {
		ups[u.Name] = route.Upstream{Egress: upstreamEgress(u), MaxClass: u.MaxClass}
		if u.Egress == "" && u.Type != config.TypeSimulator {
			log.Warn("upstream declares no egress class: it may connect to its host at any address but a metadata endpoint, and its traffic never counts as private",
				"upstream", u.Name)
		}
	}
	modes := make(map[string]route.Mode, len(cfg.Endpoints))
	for _, e := range cfg.Endpoints {
		modes[e.Name] = route.Mode(e.OnSensitive)
	}
	n.router, err = route.New(route.Options{
		Levels:     levels,
		Classifier: classifier,
		Header:     cfg.DataClasses.Header,
		TeamFloors: cfg.DataClasses.TeamFloors,
		TeamFloor:  n.floors.get,
		Upstreams:  ups,
		Modes:      modes,
		Audit:      auditor,
		OnDecision: func(endpoint, class, decision string) {
			decisions.WithLabelValues(endpoint, class, decision).Inc()
		},
		Logger:       log,
		OnAuditError: func(error) { n.auditErrors.Inc() },
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

// upstreamEgress is the egress class routing and the audit see for u.
func upstreamEgress(u config.Upstream) route.Egress {
	switch {
	case u.Egress == config.EgressPublic:
		return route.EgressPublic
	case u.Type == config.TypeSimulator:
		return route.EgressInProcess
	case u.Egress == config.EgressPrivate:
		return route.EgressPrivate
	}
	return route.EgressUndeclared
}

// listeners opens the configured listeners (or one on `listen`). Each
// closes connections from outside its allowlist before TLS and HTTP,
// counts them, and writes them to the audit trail.
func (n *network) listeners() ([]net.Listener, error) {
	var out []net.Listener
	fail := func(err error) ([]net.Listener, error) {
		for _, l := range out {
			l.Close()
		}
		return nil, err
	}
	for i, l := range n.cfg.EffectiveListeners() {
		lc, err := l.Ingress()
		if err != nil {
			return fail(fmt.Errorf("listener %d (%s): %w", i, l.Address, err))
		}
		al := &listener{n: n, name: l.Address, trusted: lc.TrustedProxies,
			queue: make(chan audit.Record, 256), stop: make(chan struct{}), done: make(chan struct{})}
		al.Listener, err = ingress.Listen(lc, ingress.Options{OnRefused: al.refused})
		if err != nil {
			return fail(fmt.Errorf("listener %d (%s): %w", i, l.Address, err))
		}
		go al.run()
		out = append(out, al)
	}
	return out, nil
}

// listener is an ingress listener that audits what it refuses and tags
// its connections with its trusted proxies.
type listener struct {
	net.Listener
	n       *network
	name    string
	trusted []netip.Prefix

	queue     chan audit.Record // refused connections to audit
	stop      chan struct{}     // closed by Close
	done      chan struct{}     // closed when run returns
	closeOnce sync.Once
	closeErr  error
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil && len(l.trusted) > 0 {
		l.n.trustedByConn.Store(c, l.trusted)
	}
	return c, err
}

// Close closes the listener, then writes the refusals still queued.
func (l *listener) Close() error {
	l.closeOnce.Do(func() {
		l.closeErr = l.Listener.Close()
		close(l.stop)
		<-l.done
	})
	return l.closeErr
}

// refused is the ingress OnRefused hook: it must not block, so the audit
// record is queued for run, and dropped (and counted) if the queue is full.
func (l *listener) refused(remote netip.AddrPort, reason string) {
	l.n.refused.WithLabelValues(l.name, reason).Inc()
	if l.n.chain == nil {
		return
	}
	rec := audit.Record{Time: time.Now(), Kind: audit.KindConnectionRefused, Decision: route.DecisionRefused,
		Reason: reason + " (listener " + l.name + ")"}
	if remote.IsValid() {
		rec.ClientAddr = remote.String()
	}
	select {
	case l.queue <- rec:
	default:
		l.n.auditDropped.Inc()
	}
}

// run writes queued refusals, as many per store write as are waiting,
// until the listener is closed and the queue drained.
func (l *listener) run() {
	defer close(l.done)
	for {
		select {
		case rec := <-l.queue:
			l.n.appendAudit(l.drain(rec))
		case <-l.stop:
			if recs := l.drain(); len(recs) > 0 {
				l.n.appendAudit(recs)
			}
			return
		}
	}
}

// drain returns the given records and every one queued.
func (l *listener) drain(recs ...audit.Record) []audit.Record {
	for {
		select {
		case r := <-l.queue:
			recs = append(recs, r)
		default:
			return recs
		}
	}
}

func (n *network) appendAudit(recs []audit.Record) {
	if n.chain == nil || len(recs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), auditTimeout)
	defer cancel()
	if _, err := n.chain.Append(ctx, recs...); err != nil {
		n.auditErrors.Add(float64(len(recs)))
		n.log.Error("audit records not written", "records", len(recs), "err", err)
	}
}

// transport returns the transport for calls to upstream u: the egress
// transport, which checks every address it dials against the policy for
// u's egress class. An upstream that declares no class may dial only its
// own host, at any address but a cloud metadata endpoint.
func (n *network) transport(u config.Upstream) (http.RoundTripper, error) {
	p, class := n.policy, egress.EgressClass(u.Egress)
	if u.Egress == "" {
		p = &egress.Policy{
			PrivatePrefixes:       n.policy.PrivatePrefixes,
			PublicHosts:           []string{config.UpstreamHost(&u)},
			PublicAllowedPrefixes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
		}
		class = egress.EgressPublic
	}
	return egress.NewTransport(p, egress.Upstream{Name: u.Name, Class: class}, egress.TransportOptions{})
}

type trustedKey struct{}

// connContext stores a connection's client address (ingress.ConnContext)
// and its listener's trusted proxies in its requests' context.
func (n *network) connContext(ctx context.Context, c net.Conn) context.Context {
	ctx = ingress.ConnContext(ctx, c)
	if v, ok := n.trustedByConn.LoadAndDelete(c); ok {
		ctx = context.WithValue(ctx, trustedKey{}, v)
	}
	return ctx
}

// clientAddr is the client address recorded for a request: what a trusted
// proxy's X-Forwarded-For or Forwarded header says, else the connection's
// client (the PROXY header's source from a trusted load balancer, else the
// peer). Forwarding headers from anyone else are deleted. An address that
// cannot be told is "", which a key restricted to source networks refuses.
func (n *network) clientAddr(r *http.Request) string {
	peer := ingress.ClientAddrFrom(r.Context())
	if !peer.IsValid() {
		// Not served through connContext (a handler under test).
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			return ""
		}
		peer = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	trusted, _ := r.Context().Value(trustedKey{}).([]netip.Prefix)
	if !contains(trusted, peer.Addr()) {
		ingress.StripForwarding(r.Header)
		return peer.Addr().String()
	}
	ip := ingress.ClientIP(r, peer, trusted)
	if !ip.IsValid() {
		return ""
	}
	return ip.String()
}

func contains(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// close writes the queued audit records.
func (n *network) close(ctx context.Context) error {
	if n.async == nil {
		return nil
	}
	return n.async.Close(ctx)
}

// traceDial reports whether calls record the upstream address dialed.
func (n *network) traceDial() bool { return n.chain != nil }

// admitters are the network's admission steps: data-class routing, which
// should run before limits and budgets so that they see the final target.
func (n *network) admitters() []proxy.Admitter { return []proxy.Admitter{n.router} }

// observe audits requests refused before routing (bad key, unknown model,
// unreadable body). Call it from proxy.Options.Observe.
func (n *network) observe(rec *sluice.UsageRecord) { n.router.Observe(rec) }

// endpointTargets builds an endpoint's targets: its targets list, or its
// upstream, model and price as the single target.
func endpointTargets(e config.Endpoint, ups map[string]*proxy.Upstream, catalog *pricing.Catalog, log *slog.Logger) ([]*proxy.Target, error) {
	var ts []*proxy.Target
	for _, t := range e.EndpointTargets() {
		up := ups[t.Upstream]
		if up == nil {
			return nil, fmt.Errorf("endpoint %s: upstream %q is not declared", e.Name, t.Upstream)
		}
		pt, err := target(up, t.Model, t.Price, catalog, log, e.Name)
		if err != nil {
			return nil, err
		}
		ts = append(ts, pt)
	}
	return ts, nil
}

// teamFloors caches the class floors of the teams in the store, refreshed
// in the background, so routing reads no store per request.
type teamFloors struct {
	st sluice.TeamStore
	m  atomic.Pointer[map[string]string]
}

func (t *teamFloors) refresh(ctx context.Context) error {
	ts, err := t.st.Teams(ctx)
	if err != nil {
		return err
	}
	m := make(map[string]string, len(ts))
	for _, tm := range ts {
		if tm.ClassFloor != "" {
			m[tm.Name] = tm.ClassFloor
		}
	}
	t.m.Store(&m)
	return nil
}

// get returns team's floor; a nil cache has none.
func (t *teamFloors) get(team string) string {
	if t == nil {
		return ""
	}
	if m := t.m.Load(); m != nil {
		return (*m)[team]
	}
	return ""
}

// run refreshes the cache every interval until ctx ends.
func (t *teamFloors) run(ctx context.Context, interval time.Duration, log *slog.Logger) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := t.refresh(ctx); err != nil && ctx.Err() == nil {
				log.Warn("team refresh failed; using the last floors", "err", err)
			}
		}
	}
}
