// Package route decides where each request may go by how sensitive its data
// is. A Router is a proxy.Admitter: for every call it
//
//   - refuses a key used from outside its source networks;
//   - classifies the request: classify.Decide over the key's or team's
//     floor, the class header the client sent, and what the content
//     detectors find in the request's text;
//   - keeps the endpoint's targets whose upstream may receive that class,
//     cheapest first;
//   - when the class exceeds the cheapest target, does what the endpoint
//     says: route to an eligible private upstream, mask the detected values
//     and send to the cheap target anyway, or block;
//   - refuses the call when no target may receive it, so nothing is ever
//     sent to an upstream above its class;
//   - appends an audit record for the call once its usage record is final:
//     class and reasons, candidates, the upstream chosen, its egress class,
//     the address actually dialed, and the decision.
//
// The gateway installs it as its first admitter:
//
//	r, err := route.New(route.Options{Levels: levels, Classifier: c, Upstreams: ups, Audit: chain})
//	p := proxy.New(proxy.Options{Admitters: []proxy.Admitter{r}, ...}, endpoints)
package route

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/audit"
	"github.com/sluice-gateway/sluice/classify"
	"github.com/sluice-gateway/sluice/proxy"
)

// Egress says where an upstream's traffic goes, as the audit records it.
type Egress string

const (
	// EgressPrivate upstreams may only connect inside the private prefixes.
	EgressPrivate Egress = "private"
	// EgressPublic upstreams connect to allowlisted public hosts.
	EgressPublic Egress = "public"
	// EgressUndeclared upstreams declared no egress class; their traffic
	// is never counted as private.
	EgressUndeclared Egress = "undeclared"
	// EgressInProcess upstreams (the simulator) never leave the process.
	EgressInProcess Egress = "in-process"
)

// Private reports whether traffic to e stays inside the operator's network.
func (e Egress) Private() bool { return e == EgressPrivate || e == EgressInProcess }

// Upstream is what routing needs to know about an upstream.
type Upstream struct {
	Egress Egress
	// MaxClass is the most sensitive class the upstream may receive.
	MaxClass string
}

// Mode is what an endpoint does with a request whose class exceeds its
// cheapest target.
type Mode string

const (
	// ModeRoute sends it to an eligible private upstream (or, if there is
	// none, any other eligible one).
	ModeRoute Mode = "route"
	// ModeMask replaces the detected values with typed placeholders, such
	// as [EMAIL_1], and sends it to the cheapest target that may receive
	// what remains; the response says so in MaskedHeader.
	ModeMask Mode = "mask"
	// ModeBlock refuses it with 403, naming the class and why.
	ModeBlock Mode = "block"
)

// Decisions recorded in the audit trail.
const (
	DecisionAllowed = "allowed" // sent to the cheapest eligible target
	DecisionRouted  = "routed"  // kept from cheaper targets by its class
	DecisionMasked  = "masked"  // detected values masked, then sent
	DecisionBlocked = "blocked" // refused by the endpoint's block mode
	DecisionRefused = "refused" // refused: source, class, or no eligible target
)

// Response headers.
const (
	// ClassHeader tells the client the class its request was given.
	ClassHeader = "X-Sluice-Data-Class"
	// MaskedHeader lists what was masked, e.g. "card=1,email=2".
	MaskedHeader = "X-Sluice-Masked"
)

// Auditor appends audit records. *audit.Chain implements it.
type Auditor interface {
	Append(ctx context.Context, recs ...audit.Record) ([]audit.Record, error)
}

var _ Auditor = (*audit.Chain)(nil)

// Options configure a Router.
type Options struct {
	// Levels are the data classes. Required.
	Levels *classify.Levels
	// Classifier runs the content detectors; nil classifies by floors and
	// the header alone.
	Classifier *classify.Classifier
	// Header is the request header by which a client may raise its class;
	// empty means ClassHeader.
	Header string
	// TeamFloors give every request of a team at least a class.
	TeamFloors map[string]string
	// TeamFloor, if set, is a further source of team floors (the teams
	// kept in the store); the higher of the two applies. An unknown class
	// it returns raises the request to the highest class.
	TeamFloor func(team string) string
	// Upstreams by name. A target whose upstream is missing here may
	// receive only the lowest class and is not private.
	Upstreams map[string]Upstream
	// Modes by endpoint name; an endpoint missing here uses ModeRoute.
	Modes map[string]Mode
	// Audit receives one record per call; nil records nothing.
	Audit Auditor
	// AuditTimeout bounds each audit write. Zero means 10s.
	AuditTimeout time.Duration
	// OnDecision, if set, is called once per call with its endpoint,
	// class and decision (for metrics).
	OnDecision func(endpoint, class, decision string)
	// Logger receives audit write failures. Nil discards them.
	Logger *slog.Logger
	// OnAuditError, if set, is called for each failed audit write.
	OnAuditError func(error)
}

// Router is the data-class routing admitter. It is safe for concurrent use.
type Router struct {
	o       Options
	header  string
	maxRank map[string]int // upstream → rank of its MaxClass
	recent  recentSet
}

var _ proxy.Admitter = (*Router)(nil)

// New checks o and returns a Router.
func New(o Options) (*Router, error) {
	if o.Levels == nil {
		return nil, fmt.Errorf("route: no levels")
	}
	if o.Classifier != nil && !slices.Equal(o.Classifier.Levels().Names(), o.Levels.Names()) {
		return nil, fmt.Errorf("route: the classifier's levels %v differ from %v", o.Classifier.Levels().Names(), o.Levels.Names())
	}
	r := &Router{o: o, header: o.Header, maxRank: make(map[string]int, len(o.Upstreams))}
	if r.header == "" {
		r.header = ClassHeader
	}
	for name, u := range o.Upstreams {
		rank, ok := o.Levels.Rank(u.MaxClass)
		if !ok {
			return nil, fmt.Errorf("route: upstream %q: max class %q: %w", name, u.MaxClass, classify.ErrUnknownLevel)
		}
		r.maxRank[name] = rank
	}
	for team, c := range o.TeamFloors {
		if _, ok := o.Levels.Rank(c); !ok {
			return nil, fmt.Errorf("route: team %q floor %q: %w", team, c, classify.ErrUnknownLevel)
		}
	}
	for ep, m := range o.Modes {
		switch m {
		case ModeRoute, ModeMask, ModeBlock:
		default:
			return nil, fmt.Errorf("route: endpoint %q: unknown mode %q", ep, m)
		}
	}
	if r.o.AuditTimeout <= 0 {
		r.o.AuditTimeout = 10 * time.Second
	}
	if r.o.Logger == nil {
		r.o.Logger = slog.New(slog.DiscardHandler)
	}
	r.recent.init(4096)
	return r, nil
}

// evidence is what the audit record says about a call's routing.
type evidence struct {
	class      string
	reasons    []string
	candidates []string
	decision   string
	reason     string
}

// Admit classifies the call and narrows a.Targets to where it may go. See
// the package doc.
func (r *Router) Admit(_ context.Context, a *proxy.Admission) (func(*sluice.UsageRecord), error) {
	ev := &evidence{}
	if a.Header == nil {
		a.Header = http.Header{}
	}
	err := r.route(a, ev)
	if ev.class != "" {
		a.Header.Set(ClassHeader, ev.class)
	}
	return r.done(a, ev), err
}

func (r *Router) route(a *proxy.Admission, ev *evidence) error {
	levels := r.o.Levels
	k := a.Key
	if len(k.SourceCIDRs) > 0 && !fromSources(a.Record.ClientAddr, k.SourceCIDRs) {
		ev.decision, ev.reason = DecisionRefused, "key used from outside its source_cidrs"
		return apierr.Forbidden("source_not_allowed", "This key may not be used from this network.")
	}

	requested := ""
	if h := a.Request.Header.Get(r.header); h != "" {
		var err error
		if requested, err = levels.Parse(h); err != nil {
			ev.decision, ev.reason = DecisionRefused, "unknown class in the "+r.header+" header"
			return apierr.BadRequest(r.header, "invalid_data_class",
				"The %s header names an unknown data class; use one of %s.", r.header, strings.Join(levels.Names(), ", "))
		}
	}
	floor := levels.Max(k.ClassFloor, r.o.TeamFloors[k.Team])
	if r.o.TeamFloor != nil {
		if f := r.o.TeamFloor(k.Team); f != "" {
			floor = levels.Max(floor, f)
		}
	}
	var text []byte
	var content classify.Result
	if r.o.Classifier != nil {
		text = classify.ExtractText(a.Body)
		content = r.o.Classifier.Classify(text)
	}
	class, reasons, err := classify.Decide(levels, floor, requested, content)
	if err != nil {
		// Only the floor can be unknown here: a key stored with a class
		// the configuration no longer has. Refuse rather than guess.
		ev.decision, ev.reason = DecisionRefused, "the key's or team's class floor is not a configured class"
		return apierr.Forbidden("invalid_class_floor", "This key's data class floor is not a configured class; ask an administrator.")
	}
	ev.class, ev.reasons = class, reasons
	rank, _ := levels.Rank(class)

	cands := slices.Clone(a.Targets)
	slices.SortStableFunc(cands, func(x, y *proxy.Target) int { return cmpInt(listPrice(x), listPrice(y)) })
	for _, t := range cands {
		if !slices.Contains(ev.candidates, t.Upstream.Name) {
			ev.candidates = append(ev.candidates, t.Upstream.Name)
		}
	}
	if len(cands) == 0 {
		ev.decision, ev.reason = DecisionRefused, "the endpoint has no targets"
		return nil // the proxy answers 503
	}
	eligible := r.eligible(cands, rank)
	cheap := cands[0]
	cheapRank := r.rankOf(cheap)
	if rank <= cheapRank {
		a.Targets, ev.decision = eligible, DecisionAllowed
		return nil
	}
	cheapMax := levels.Names()[cheapRank]
	why := fmt.Sprintf("class %s exceeds max_class %s of the cheapest upstream %s", class, cheapMax, cheap.Upstream.Name)

	switch r.o.Modes[a.Endpoint.Name] {
	case ModeBlock:
		ev.decision, ev.reason = DecisionBlocked, why
		return apierr.Forbidden("data_class_blocked",
			"This request is classified %s (%s). The model '%s' blocks requests above %s, so it was not sent.",
			class, strings.Join(reasons, ", "), a.Endpoint.Name, cheapMax)
	case ModeMask:
		if len(content.Findings) == 0 {
			break // nothing to mask: the floor or header set the class
		}
		masked, _, _ := classify.Decide(levels, floor, requested, classify.Result{})
		mrank, _ := levels.Rank(masked)
		if mrank > cheapRank {
			break // masking cannot bring it within the cheap target's class
		}
		body, counts, err := maskBody(a.Body, text, content.Findings)
		if err != nil {
			ev.decision, ev.reason = DecisionRefused, "masking failed: "+err.Error()
			return &apierr.Error{Status: 500, Type: "server_error", Code: "mask_failed",
				Msg: "The request could not be masked, so it was not sent.", Class: sluice.ErrClassInternal, Err: err}
		}
		a.Body = body
		a.Header.Set(MaskedHeader, counts)
		a.Targets = r.eligible(cands, mrank)
		ev.decision, ev.reason = DecisionMasked, "masked "+counts+"; sent as "+masked
		return nil
	}
	var private []*proxy.Target
	for _, t := range eligible {
		if r.egressOf(t.Upstream.Name).Private() {
			private = append(private, t)
		}
	}
	switch {
	case len(private) > 0:
		a.Targets = private
	case len(eligible) > 0:
		a.Targets = eligible
	default:
		ev.decision, ev.reason = DecisionRefused, fmt.Sprintf("no upstream of the endpoint may receive class %s", class)
		return apierr.Forbidden("no_eligible_upstream",
			"This request is classified %s (%s). No upstream of the model '%s' may receive %s data, so it was not sent.",
			class, strings.Join(reasons, ", "), a.Endpoint.Name, class)
	}
	ev.decision, ev.reason = DecisionRouted, why
	return nil
}

// eligible returns the targets whose upstream may receive class rank.
func (r *Router) eligible(ts []*proxy.Target, rank int) []*proxy.Target {
	var out []*proxy.Target
	for _, t := range ts {
		if r.rankOf(t) >= rank {
			out = append(out, t)
		}
	}
	return out
}

// rankOf is the rank of the target upstream's MaxClass; an upstream the
// Router does not know gets the lowest.
func (r *Router) rankOf(t *proxy.Target) int { return r.maxRank[t.Upstream.Name] }

func (r *Router) egressOf(upstream string) Egress {
	if u, ok := r.o.Upstreams[upstream]; ok && u.Egress != "" {
		return u.Egress
	}
	return EgressUndeclared
}

// listPrice orders targets: the sum of the input and output prices per
// million tokens; unpriced targets come last.
func listPrice(t *proxy.Target) int64 {
	if !t.Priced {
		return math.MaxInt64
	}
	return t.Price.InputPer1M + t.Price.OutputPer1M
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// fromSources reports whether the client address is inside one of ps. An
// address that cannot be parsed is outside (fail closed).
func fromSources(client string, ps []netip.Prefix) bool {
	a, err := netip.ParseAddr(client)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// done returns the call's completion: the decision hook and the audit
// record.
func (r *Router) done(a *proxy.Admission, ev *evidence) func(*sluice.UsageRecord) {
	return func(rec *sluice.UsageRecord) {
		ar := audit.Record{
			Time: rec.Time, Kind: audit.KindRequest, RequestID: rec.RequestID, KeyID: rec.KeyID, Team: rec.Team,
			Endpoint: rec.Endpoint, Class: ev.class, ClassReasons: ev.reasons, Candidates: ev.candidates,
			Upstream: rec.Upstream, ClientAddr: rec.ClientAddr, Decision: ev.decision, Reason: ev.reason,
		}
		outcome := ""
		if rec.ErrorClass != "" {
			outcome = "status " + strconv.Itoa(rec.Status) + " " + rec.ErrorClass
		}
		if rec.Upstream == "" {
			ar.Kind = audit.KindRequestRefused
			if ar.Decision != DecisionRefused && ar.Decision != DecisionBlocked {
				// Routing admitted it; a later step (rate limit, budget)
				// refused it.
				ar.Decision, ar.Reason = DecisionRefused, outcome
			}
		} else {
			ar.EgressClass = string(r.egressOf(rec.Upstream))
			if a.DialedAddr.IsValid() {
				ar.DialedAddr = a.DialedAddr.String()
			}
			if outcome != "" {
				ar.Reason = joinReason(ar.Reason, outcome)
			}
		}
		if r.o.OnDecision != nil {
			r.o.OnDecision(rec.Endpoint, ev.class, ar.Decision)
		}
		r.append(ar, rec.RequestID)
	}
}

func joinReason(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func (r *Router) append(ar audit.Record, requestID string) {
	if r.o.Audit == nil {
		return
	}
	r.recent.add(requestID)
	ctx, cancel := context.WithTimeout(context.Background(), r.o.AuditTimeout)
	defer cancel()
	if _, err := r.o.Audit.Append(ctx, ar); err != nil {
		r.o.Logger.Error("audit record not written", "request_id", requestID, "err", err)
		if r.o.OnAuditError != nil {
			r.o.OnAuditError(err)
		}
	}
}

// Observe audits a call the gateway refused before routing saw it (no or
// bad key, unknown model, unreadable body): call it with every committed
// usage record (proxy.Options.Observe). Calls the Router admitted are
// skipped; their record was written when they finished.
func (r *Router) Observe(rec *sluice.UsageRecord) {
	if r.o.Audit == nil || r.recent.take(rec.RequestID) {
		return
	}
	ar := audit.Record{
		Time: rec.Time, Kind: audit.KindRequestRefused, RequestID: rec.RequestID, KeyID: rec.KeyID, Team: rec.Team,
		Endpoint: rec.Endpoint, ClientAddr: rec.ClientAddr, Decision: DecisionRefused,
		Reason: "status " + strconv.Itoa(rec.Status) + " " + rec.ErrorClass,
	}
	if r.o.OnDecision != nil {
		r.o.OnDecision(rec.Endpoint, "", DecisionRefused)
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.o.AuditTimeout)
	defer cancel()
	if _, err := r.o.Audit.Append(ctx, ar); err != nil {
		r.o.Logger.Error("audit record not written", "request_id", rec.RequestID, "err", err)
		if r.o.OnAuditError != nil {
			r.o.OnAuditError(err)
		}
	}
}

// recentSet remembers the last n request ids the Router audited, so that
// Observe, which the proxy calls right after the Router's completion,
// can skip them. Bounded, so it cannot grow when Observe is not wired.
type recentSet struct {
	mu   sync.Mutex
	ids  map[string]struct{}
	ring []string
	next int
}

func (s *recentSet) init(n int) {
	s.ids = make(map[string]struct{}, n)
	s.ring = make([]string, n)
}

func (s *recentSet) add(id string) {
	s.mu.Lock()
	if old := s.ring[s.next]; old != "" {
		delete(s.ids, old)
	}
	s.ring[s.next] = id
	s.ids[id] = struct{}{}
	s.next = (s.next + 1) % len(s.ring)
	s.mu.Unlock()
}

func (s *recentSet) take(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[id]; ok {
		delete(s.ids, id)
		return true
	}
	return false
}
