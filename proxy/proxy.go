// Package proxy is Sluice's data plane: it authenticates a call, reads and
// checks its body, forwards it to the endpoint's upstream, meters the tokens
// that come back, and commits the call's usage record before the client
// receives the end of its response.
package proxy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/auth"
	"github.com/sluice-gateway/sluice/egress"
	"github.com/sluice-gateway/sluice/ledger"
	"github.com/sluice-gateway/sluice/pricing"
	"github.com/sluice-gateway/sluice/provider"
	"github.com/sluice-gateway/sluice/usage"
)

// UserHeader names the end user of a request when the body has no `user`.
const UserHeader = "X-Sluice-User"

// Ledger commits usage records.
type Ledger interface {
	// Commit blocks until rec is durably stored or ctx ends; in the latter
	// case the record stays queued and is still written.
	Commit(ctx context.Context, rec sluice.UsageRecord) error
}

// Authenticator resolves presented API keys.
type Authenticator interface {
	Authenticate(ctx context.Context, secret string) (*sluice.Key, error)
}

// Upstream is a configured model provider.
type Upstream struct {
	Name      string
	Provider  string // price-catalog provider
	Simulator bool   // the built-in simulator
	// Passthrough marks a server that takes clients' payloads as they are
	// (MLflow /invocations): no model member is added, no stream options.
	Passthrough bool
	Adapter     provider.Adapter
	Transport   http.RoundTripper
	// Timeout bounds the wait for the upstream's response headers.
	Timeout time.Duration
}

// Target is one place an endpoint's calls can go: an upstream and the
// model name it knows, with its price.
type Target struct {
	Upstream *Upstream
	Model    string // the upstream's model (Azure deployment, Databricks endpoint)
	// Price is the target's price; when Priced is false the price is
	// looked up per response by the model the upstream reports.
	Price        pricing.Price
	Priced       bool
	PriceVersion string
	// Name is the served entity's name (default: the upstream's name),
	// recorded as the record's ServedEntity and sent in the
	// served-model-name response header.
	Name string
	// Guard, if set, says whether the upstream may be tried now (circuit
	// breaker, health checks) and learns each attempt's outcome.
	Guard Guard
	// Gate, if set, admits the call into the target's capacity
	// (provisioned throughput, a custom model's concurrency).
	Gate Gate
}

// Guard is a target's circuit breaker and health state.
type Guard interface {
	// Allow reports whether an attempt may be made now. A half-open
	// breaker allows one probe at a time.
	Allow() bool
	// Report gives the outcome of an attempt Allow admitted: ok is false
	// for a connection failure, a timeout or a 5xx answer (not for 429 or
	// other 4xx, which say nothing about the upstream's health).
	Report(ok bool)
	// RetryAfter is how long until the guard may allow attempts again
	// (0 if it allows them now).
	RetryAfter() time.Duration
}

// Gate bounds the calls in flight on a target with a declared capacity.
type Gate interface {
	// Acquire waits, bounded, for room for a call expected to use about
	// tokens tokens. It fails with an *apierr.Error (429 with
	// RetryAfter) when the wait would exceed the gate's limit, or with
	// ctx's error. release is called once with the tokens the call used.
	Acquire(ctx context.Context, tokens int64) (release func(used int64), err error)
}

// EntityName is the target's served-entity name.
func (t *Target) EntityName() string {
	if t.Name != "" {
		return t.Name
	}
	return t.Upstream.Name
}

// Endpoint is what a client names in `model`.
type Endpoint struct {
	Name string
	APIs []sluice.API
	// Targets are the endpoint's upstreams in order of preference.
	// Admitters may narrow or reorder them per call; the call goes to the
	// first.
	Targets []*Target
	// MaxOutputTokens caps the completion a call may ask for when it sets
	// no max_tokens itself, for worst-case cost reservations. 0: none.
	MaxOutputTokens int64
	// Policy carries settings for admitters (routing mode, limits); the
	// proxy does not read it.
	Policy any

	// Kind is pay_per_token, provisioned_throughput or custom.
	Kind string
	// Split, when set, holds each target's traffic percentage (aligned
	// with Targets, summing to 100): the first attempt goes to a target
	// drawn with these weights.
	Split []int
	// Ordered keeps fallback in Targets order (Databricks' served-entity
	// list order) instead of the order admitters leave.
	Ordered bool
	// Fallback tries the next target when an attempt fails before the
	// client received any byte: connection failure, timeout, 429, 5xx.
	Fallback bool
	// Gateway holds the endpoint's AI Gateway settings, for admitters.
	Gateway *sluice.AIGateway
	// CapturePayloads hands request and response bodies to
	// Options.Payload (inference tables).
	CapturePayloads bool
}

func (e *Endpoint) allows(api sluice.API) bool {
	for _, a := range e.APIs {
		if a == api {
			return true
		}
	}
	return false
}

// Simulator reports whether every target is the built-in simulator.
func (e *Endpoint) Simulator() bool {
	for _, t := range e.Targets {
		if !t.Upstream.Simulator {
			return false
		}
	}
	return len(e.Targets) > 0
}

// Options configure a Proxy. Zero values get defaults.
type Options struct {
	Auth    Authenticator
	Ledger  Ledger
	Counter *usage.Counter
	Catalog *pricing.Catalog
	Logger  *slog.Logger
	Now     func() time.Time

	MaxBodyBytes       int64
	BodyReadTimeout    time.Duration
	StreamWriteTimeout time.Duration
	// CommitTimeout bounds a response's wait for its usage record. Past it
	// the response is sent and the record, still queued, is written later.
	CommitTimeout time.Duration
	// MaxResponseBytes bounds a non-streamed upstream response.
	MaxResponseBytes int64

	// Observe is called once per request after its record is committed.
	Observe func(rec *sluice.UsageRecord)
	// CommitWait is called with the time each response waited for the ledger.
	CommitWait func(d time.Duration, timedOut bool)
	// ClientAddr returns the client's address for the record; nil uses the
	// connection's remote address.
	ClientAddr func(r *http.Request) string
	// Admitters run in order on every call once its endpoint is known,
	// before the upstream is called (see Admitter).
	Admitters []Admitter
	// TraceDial records the address each call's upstream connection
	// actually reached in Admission.DialedAddr (audit evidence).
	TraceDial bool
	// Random draws traffic splits; it returns a float in [0, 1) and must be
	// safe for concurrent use. nil uses math/rand/v2.
	Random func() float64
	// Output, if set, may rewrite a non-streamed answer before it is
	// sent (output guardrails); it returns body itself when unchanged, or
	// an error to refuse the answer (the record keeps its tokens).
	Output func(ep *Endpoint, body []byte) ([]byte, error)
	// Payload receives the bodies of calls to endpoints with
	// CapturePayloads, after the record is committed. It must not block.
	Payload func(p *Payload)
}

// Payload is one call's request and response bodies for payload logging.
type Payload struct {
	Record   *sluice.UsageRecord
	Endpoint *Endpoint
	Request  []byte // the body as the client sent it
	// Response is the answer's body; for streams, the concatenated data of
	// its events. At most MaxPayloadBytes+1 bytes are kept, so a longer
	// one shows as over the cap.
	Response []byte
}

// MaxPayloadBytes is the largest payload logged (1 MiB).
const MaxPayloadBytes = 1 << 20

// Proxy serves the OpenAI-compatible data plane.
type Proxy struct {
	o         Options
	endpoints atomic.Pointer[map[string]*Endpoint]
	idPrefix  string
	idSeq     atomic.Uint64
}

// New returns a Proxy serving endpoints.
func New(o Options, endpoints []*Endpoint) *Proxy {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 16 << 20
	}
	if o.BodyReadTimeout == 0 {
		o.BodyReadTimeout = time.Minute
	}
	if o.StreamWriteTimeout == 0 {
		o.StreamWriteTimeout = 30 * time.Second
	}
	if o.CommitTimeout == 0 {
		o.CommitTimeout = 10 * time.Second
	}
	if o.MaxResponseBytes == 0 {
		o.MaxResponseBytes = 64 << 20
	}
	if o.Counter == nil {
		o.Counter = &usage.Counter{}
	}
	if o.Catalog == nil {
		o.Catalog = pricing.Default()
	}
	if o.ClientAddr == nil {
		o.ClientAddr = remoteIP
	}
	var b [8]byte
	rand.Read(b[:])
	p := &Proxy{o: o, idPrefix: "req_" + hex.EncodeToString(b[:])}
	p.SetEndpoints(endpoints)
	return p
}

// SetEndpoints replaces the endpoint table; calls in flight keep theirs.
func (p *Proxy) SetEndpoints(eps []*Endpoint) {
	m := make(map[string]*Endpoint, len(eps))
	for _, e := range eps {
		m[e.Name] = e
	}
	p.endpoints.Store(&m)
}

// Endpoints returns the endpoints served now.
func (p *Proxy) Endpoints() []*Endpoint {
	m := *p.endpoints.Load()
	out := make([]*Endpoint, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	return out
}

// Endpoint returns the named endpoint, or nil.
func (p *Proxy) Endpoint(name string) *Endpoint { return (*p.endpoints.Load())[name] }

func (p *Proxy) newID() string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], p.idSeq.Add(1))
	return p.idPrefix + hex.EncodeToString(b[2:])
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Dialect is the error shape a route answers in.
type Dialect int

const (
	// DialectOpenAI is {"error":{"message","type","param","code"}}, spoken
	// by OpenAI and Azure OpenAI clients.
	DialectOpenAI Dialect = iota
	// DialectDatabricks is {"error_code","message"}, spoken by Databricks
	// Model Serving clients.
	DialectDatabricks
)

// Route is one data-plane path.
type Route struct {
	// API is the operation; empty decides it from the body (Databricks'
	// /serving-endpoints/{name}/invocations).
	API sluice.API
	// EndpointParam names the path wildcard holding the endpoint; empty
	// takes it from the body's model.
	EndpointParam string
	Dialect       Dialect
	// RequireQuery names a query parameter the path requires (Azure's
	// api-version).
	RequireQuery string
}

// Handler returns the OpenAI-compatible handler for one API operation.
func (p *Proxy) Handler(api sluice.API) http.Handler { return p.Route(Route{API: api}) }

// Route returns the handler for a data-plane path.
func (p *Proxy) Route(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{p: p, w: w, r: r, route: rt, api: rt.API, start: p.o.Now()}
		c.rec = sluice.UsageRecord{
			RequestID:   p.newID(),
			Time:        c.start.UTC(),
			API:         rt.API,
			UsageSource: sluice.UsageNone,
			ClientAddr:  p.o.ClientAddr(r),
		}
		w.Header().Set("X-Request-Id", c.rec.RequestID)
		err := c.serve()
		if !c.committed {
			e := apierr.As(err)
			c.rec.Status = e.Status
			c.rec.ErrorClass = e.Class
			if e.Status >= 500 || e.Class == sluice.ErrClassUpstreamRate {
				p.o.Logger.Warn("request failed", "request_id", c.rec.RequestID, "endpoint", c.rec.Endpoint,
					"upstream", c.rec.Upstream, "status", e.Status, "class", e.Class, "err", e.Err)
			}
			c.commit()
			if c.rec.ErrorClass != sluice.ErrClassClientDisconnect && !c.wroteHeader {
				c.writeError(e)
			}
		}
		if c.ep != nil && c.ep.CapturePayloads && p.o.Payload != nil && c.req != nil {
			rec := c.rec
			p.o.Payload(&Payload{Record: &rec, Endpoint: c.ep, Request: c.req.body, Response: c.capture})
		}
	})
}

func (c *call) writeError(e *apierr.Error) {
	if c.route.Dialect == DialectDatabricks {
		apierr.WriteDatabricks(c.w, e)
		return
	}
	apierr.WriteOpenAI(c.w, e)
}

// call is one request in flight.
type call struct {
	p     *Proxy
	w     http.ResponseWriter
	r     *http.Request
	route Route
	api   sluice.API
	start time.Time
	rec   sluice.UsageRecord
	key   *sluice.Key
	req   *request
	ep    *Endpoint
	tgt   *Target
	adm   *Admission
	dones []func(*sluice.UsageRecord)

	// attempts are the finished failed attempts, "entity:status:class".
	attempts []string
	// upStatus is the current attempt's upstream HTTP status (0: none).
	upStatus int
	// capture collects the response body for payload logging.
	capture []byte
	// logged: the current target's attempt is in attempts already.
	logged bool
	popts  parseOptions

	wroteHeader bool
	committed   bool
}

// authenticate resolves the caller's key.
func (p *Proxy) authenticate(r *http.Request) (*sluice.Key, *apierr.Error) {
	secret := auth.FromRequest(r)
	if secret == "" {
		return nil, apierr.Unauthorized()
	}
	k, err := p.o.Auth.Authenticate(r.Context(), secret)
	if err != nil {
		return nil, apierr.Unauthorized()
	}
	return k, nil
}

func (c *call) serve() error {
	k, aerr := c.p.authenticate(c.r)
	if aerr != nil {
		return aerr
	}
	c.key = k
	c.rec.KeyID, c.rec.Team = k.ID, k.Team

	var opts parseOptions
	if c.route.EndpointParam != "" {
		opts.pathModel = c.r.PathValue(c.route.EndpointParam)
		c.rec.Endpoint = opts.pathModel
	}
	if q := c.route.RequireQuery; q != "" && c.r.URL.Query().Get(q) == "" {
		return apierr.BadRequest(q, "missing_required_parameter", "The query parameter '%s' is required (e.g. ?%s=2024-10-21).", q, q)
	}
	body, err := c.readBody()
	if err != nil {
		return err
	}
	c.popts = opts
	req, perr := parseRequest(c.api, body, opts)
	if perr != nil {
		return perr
	}
	c.req = req
	c.api, c.rec.API = req.api, req.api
	if req.user == "" {
		// Clients that cannot set OpenAI's `user` field name the end user
		// in a header instead.
		req.user = c.r.Header.Get(UserHeader)
		if len(req.user) > 256 {
			return apierr.BadRequest("", "invalid_value", "The %s header is longer than 256 bytes.", UserHeader)
		}
	}
	c.rec.Endpoint, c.rec.Stream, c.rec.User = req.model, req.stream, req.user
	what := "model"
	if c.route.EndpointParam != "" {
		what = "serving endpoint"
	}
	ep := c.p.Endpoint(req.model)
	if ep == nil {
		return apierr.NotFound("model", "model_not_found", "The %s '%s' does not exist or you do not have access to it.", what, req.model)
	}
	if !k.MayUse(ep.Name) {
		return apierr.Forbidden("model_not_allowed", "This key may not use the %s '%s'.", what, ep.Name)
	}
	if !ep.allows(c.api) {
		return apierr.BadRequest("model", "unsupported_api", "The %s '%s' does not support %s requests.", what, ep.Name, c.api)
	}
	c.ep = ep
	if g := ep.Gateway; g == nil || g.UsageTrackingConfig == nil || g.UsageTrackingConfig.Enabled {
		c.rec.ClientRequestID, c.rec.UsageContext = req.clientRequestID, req.usageContext
	}
	if err := c.admit(); err != nil {
		return err
	}
	return c.forwardAll()
}

func (c *call) readBody() ([]byte, error) {
	rc := http.NewResponseController(c.w)
	rc.SetReadDeadline(c.p.o.Now().Add(c.p.o.BodyReadTimeout))
	defer rc.SetReadDeadline(time.Time{})
	max := c.p.o.MaxBodyBytes
	if c.r.ContentLength > max {
		return nil, tooLarge(max)
	}
	size := c.r.ContentLength
	if size < 0 {
		size = 4096
	}
	buf := make([]byte, 0, size+1)
	body := http.MaxBytesReader(c.w, c.r.Body, max)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, tooLarge(max)
			}
			if c.r.Context().Err() != nil {
				return nil, &apierr.Error{Status: 499, Msg: "client closed the request", Class: sluice.ErrClassClientDisconnect, Err: err}
			}
			return nil, &apierr.Error{Status: 400, Type: "invalid_request_error", Code: "body_read_error",
				Msg: "The request body could not be read.", Class: sluice.ErrClassInvalidRequest, Err: err}
		}
	}
}

func tooLarge(max int64) *apierr.Error {
	return &apierr.Error{Status: 413, Type: "invalid_request_error", Code: "request_too_large",
		Msg: "The request body is larger than the limit of " + strconv.FormatInt(max, 10) + " bytes.", Class: sluice.ErrClassTooLarge}
}

var errUpstreamTimeout = errors.New("upstream response timeout")

// forward sends the call to the current target and relays the answer.
func (c *call) forward() error {
	up := c.tgt.Upstream
	ctx, cancel := context.WithCancelCause(c.r.Context())
	defer cancel(nil)
	var peer *egress.Peer
	if c.p.o.TraceDial {
		ctx, peer = egress.TracePeer(ctx)
	}
	upReq, err := up.Adapter.NewRequest(ctx, c.api, c.tgt.Model, c.req.upstreamBody(c.tgt.Model, up.Passthrough))
	if err != nil {
		return &apierr.Error{Status: 500, Type: "server_error", Msg: "internal error", Class: sluice.ErrClassInternal, Err: err}
	}
	var timer *time.Timer
	if up.Timeout > 0 {
		timer = time.AfterFunc(up.Timeout, func() { cancel(errUpstreamTimeout) })
	}
	resp, err := up.Transport.RoundTrip(upReq)
	if peer != nil {
		// Read it now: the record (and its audit) is committed before the
		// relay returns.
		if a, _, ok := peer.Addr(); ok {
			c.adm.DialedAddr = a
		}
	}
	if timer != nil && !timer.Stop() && err == nil {
		// The timer fired just as the headers arrived; the body would fail.
		resp.Body.Close()
		err = errUpstreamTimeout
	}
	if err != nil {
		return c.upstreamErr(ctx, err)
	}
	defer resp.Body.Close()
	c.upStatus = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		return c.upstreamStatus(resp)
	}
	if c.req.stream && isEventStream(resp.Header.Get("Content-Type")) {
		return c.relayStream(ctx, resp)
	}
	return c.relayBody(ctx, resp)
}

func isEventStream(ct string) bool {
	return len(ct) >= 17 && ct[:17] == "text/event-stream"
}

// upstreamErr maps a failed round trip.
func (c *call) upstreamErr(ctx context.Context, err error) error {
	name := c.tgt.Upstream.Name
	switch {
	case errors.Is(context.Cause(ctx), errUpstreamTimeout) || errors.Is(err, errUpstreamTimeout):
		return &apierr.Error{Status: 504, Type: "server_error", Code: "upstream_timeout",
			Msg: "The upstream '" + name + "' did not answer in time.", Class: sluice.ErrClassUpstreamTimeout, Err: err}
	case c.r.Context().Err() != nil:
		return &apierr.Error{Status: 499, Msg: "client closed the request", Class: sluice.ErrClassClientDisconnect, Err: err}
	}
	return &apierr.Error{Status: 502, Type: "server_error", Code: "upstream_error",
		Msg: "The upstream '" + name + "' could not be reached.", Class: sluice.ErrClassUpstreamError, Err: err}
}

// upstreamStatus maps a non-200 upstream answer.
func (c *call) upstreamStatus(resp *http.Response) error {
	name := c.tgt.Upstream.Name
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	e := &apierr.Error{Status: 502, Type: "server_error", Code: "upstream_error", Class: sluice.ErrClassUpstreamStatus,
		Msg: "The upstream '" + name + "' failed with status " + strconv.Itoa(resp.StatusCode) + ".",
		Err: errors.New("upstream status " + resp.Status + ": " + string(truncate(raw, 512)))}
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests:
		e.Status, e.Type, e.Code, e.Class = 429, "rate_limit_error", "upstream_rate_limited", sluice.ErrClassUpstreamRate
		e.Msg = "The upstream '" + name + "' is rate limited; retry later."
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			e.Header = http.Header{"Retry-After": {ra}}
		}
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		e.Msg = "The upstream '" + name + "' refused Sluice's credentials."
	case s == http.StatusGatewayTimeout || s == http.StatusRequestTimeout:
		e.Status, e.Code, e.Class = 504, "upstream_timeout", sluice.ErrClassUpstreamTimeout
		e.Msg = "The upstream '" + name + "' timed out."
	case s >= 400 && s < 500:
		// The upstream judged the request itself: pass its verdict on.
		e.Status, e.Type, e.Code = s, "invalid_request_error", ""
		if m, t, p, code, ok := parseOpenAIError(raw); ok {
			e.Msg, e.Param, e.Code = m, p, code
			if t != "" {
				e.Type = t
			}
		} else {
			e.Msg = "The upstream '" + name + "' rejected the request with status " + strconv.Itoa(s) + "."
		}
	}
	return e
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// relayBody relays a non-streamed answer after committing its record.
func (c *call) relayBody(ctx context.Context, resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.p.o.MaxResponseBytes+1))
	if err == nil && int64(len(body)) > c.p.o.MaxResponseBytes {
		err = errors.New("upstream response exceeds the size limit")
	}
	if err != nil {
		if c.r.Context().Err() != nil {
			return &apierr.Error{Status: 499, Msg: "client closed the request", Class: sluice.ErrClassClientDisconnect, Err: err}
		}
		if errors.Is(context.Cause(ctx), errUpstreamTimeout) {
			return &apierr.Error{Status: 504, Type: "server_error", Code: "upstream_timeout",
				Msg: "The upstream '" + c.tgt.Upstream.Name + "' did not answer in time.", Class: sluice.ErrClassUpstreamTimeout, Err: err}
		}
		return &apierr.Error{Status: 502, Type: "server_error", Code: "upstream_error",
			Msg: "The upstream '" + c.tgt.Upstream.Name + "' broke off its answer.", Class: sluice.ErrClassUpstreamReset, Err: err}
	}
	u, model, ok := usage.FromBody(body)
	c.rec.UpstreamModel = model
	switch {
	case ok:
		c.setUsage(u, sluice.UsageUpstream)
	case c.api == sluice.APIInvocations:
		// A custom model's own payload (a dataframe, tensors) has no
		// tokens; its cost is its capacity's.
		c.setUsage(usage.Usage{}, sluice.UsageNone)
	default:
		c.estimate(usage.AppendText(nil, body))
	}
	if c.p.o.Output != nil {
		if body, err = c.p.o.Output(c.ep, body); err != nil {
			return err
		}
	}
	if c.ep.CapturePayloads {
		c.capture = appendCapped(c.capture, body)
	}
	c.rec.Status = http.StatusOK
	h := c.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	c.commit()
	c.w.WriteHeader(http.StatusOK)
	c.wroteHeader = true
	rc := http.NewResponseController(c.w)
	rc.SetWriteDeadline(c.p.o.Now().Add(c.p.o.StreamWriteTimeout))
	c.w.Write(body)
	return nil
}

// setUsage records token counts and their cost.
func (c *call) setUsage(u usage.Usage, src sluice.UsageSource) {
	if u.Total == 0 {
		u.Total = u.Prompt + u.Completion
	}
	c.rec.PromptTokens, c.rec.CompletionTokens, c.rec.TotalTokens = u.Prompt, u.Completion, u.Total
	c.rec.UsageSource = src
	price, version, ok := c.tgt.Price, c.tgt.PriceVersion, c.tgt.Priced
	if !ok {
		price, ok = c.p.o.Catalog.Lookup(c.tgt.Upstream.Provider, c.rec.UpstreamModel)
		version = c.p.o.Catalog.Version()
	}
	if ok {
		c.rec.CostMicros = price.Cost(u.Prompt, u.Completion)
		c.rec.PriceVersion = version
	} else {
		c.rec.PriceVersion = "unpriced"
	}
}

// estimate counts the call's tokens with the tokenizer because the upstream
// did not report them.
func (c *call) estimate(completion []byte) {
	model := c.tgt.Model
	prompt, err := c.p.o.Counter.PromptTokens(c.api, model, c.req.body)
	if err != nil {
		c.p.o.Logger.Warn("prompt token estimate failed", "request_id", c.rec.RequestID, "err", err)
	}
	var comp int64
	if len(completion) > 0 {
		comp = int64(c.p.o.Counter.Count(model, string(completion)))
	}
	c.setUsage(usage.Usage{Prompt: prompt, Completion: comp, Total: prompt + comp}, sluice.UsageEstimated)
}

// commit finishes the record and waits (bounded) until the ledger has it.
func (c *call) commit() {
	if c.committed {
		return
	}
	c.committed = true
	if c.rec.Attempts > 0 || len(c.attempts) > 0 {
		c.rec.AttemptLog = c.attemptLog()
	}
	now := c.p.o.Now()
	c.rec.Latency = now.Sub(c.start)
	if c.rec.TTFT == 0 && c.rec.Status != 499 {
		// The answer's first byte goes out right after the commit.
		c.rec.TTFT = c.rec.Latency
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.r.Context()), c.p.o.CommitTimeout)
	err := c.p.o.Ledger.Commit(ctx, c.rec)
	cancel()
	wait := c.p.o.Now().Sub(now)
	if c.p.o.CommitWait != nil {
		c.p.o.CommitWait(wait, err != nil)
	}
	switch {
	case errors.Is(err, ledger.ErrClosed):
		c.p.o.Logger.Error("usage record lost: the ledger was already closed", "request_id", c.rec.RequestID)
	case err != nil:
		c.p.o.Logger.Error("usage record not yet committed; answering anyway, the record stays queued",
			"request_id", c.rec.RequestID, "err", err)
	}
	for _, done := range c.dones {
		done(&c.rec)
	}
	if c.p.o.Observe != nil {
		c.p.o.Observe(&c.rec)
	}
	if c.p.o.Logger.Enabled(c.r.Context(), slog.LevelInfo) {
		c.p.o.Logger.LogAttrs(c.r.Context(), slog.LevelInfo, "request",
			slog.String("request_id", c.rec.RequestID), slog.String("key_id", c.rec.KeyID),
			slog.String("team", c.rec.Team), slog.String("endpoint", c.rec.Endpoint),
			slog.String("upstream", c.rec.Upstream), slog.Int("status", c.rec.Status),
			slog.String("error_class", c.rec.ErrorClass), slog.Bool("stream", c.rec.Stream),
			slog.Int64("prompt_tokens", c.rec.PromptTokens), slog.Int64("completion_tokens", c.rec.CompletionTokens),
			slog.String("usage_source", string(c.rec.UsageSource)), slog.Int64("cost_micros", c.rec.CostMicros),
			slog.Duration("latency", c.rec.Latency))
	}
}

// appendCapped appends b to dst, keeping at most MaxPayloadBytes+1 bytes so
// that an answer over the cap still shows as over it.
func appendCapped(dst, b []byte) []byte {
	room := MaxPayloadBytes + 1 - len(dst)
	if room <= 0 {
		return dst
	}
	if len(b) > room {
		b = b[:room]
	}
	return append(dst, b...)
}
