package egress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Resolver looks up the addresses of a host name. *net.Resolver implements
// it. network is "ip", "ip4" or "ip6".
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

var _ Resolver = (*net.Resolver)(nil)

// TransportOptions tune a Transport. Zero fields take the documented
// defaults.
type TransportOptions struct {
	// Resolver resolves upstream host names. Nil means net.DefaultResolver.
	Resolver Resolver

	// DialTimeout bounds each connection attempt. Default 10s.
	DialTimeout time.Duration
	// KeepAlive is the TCP keep-alive period. Default 30s.
	KeepAlive time.Duration
	// TLSHandshakeTimeout default 10s.
	TLSHandshakeTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for response headers after the
	// request is written. Default 0: no limit beyond the request's context,
	// since a non-streaming completion may take minutes.
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout default 90s.
	IdleConnTimeout time.Duration
	// MaxIdleConns default 1024; MaxIdleConnsPerHost default 256.
	MaxIdleConns        int
	MaxIdleConnsPerHost int
	// MaxConnsPerHost limits connections per host; 0 means no limit.
	MaxConnsPerHost int

	// TLSClientConfig is cloned; nil means the system roots and TLS 1.2 or
	// later.
	TLSClientConfig *tls.Config

	// OnDial, if not nil, is called after each new connection is
	// established, with the host name and the address actually connected
	// to. It runs on the dialing goroutine and must not block. Connections
	// are pooled, so per-request evidence comes from TracePeer instead.
	OnDial func(ctx context.Context, host string, addr netip.AddrPort)
}

// Transport is the only way Sluice sends a request to an upstream. It is
// an http.RoundTripper over an http.Transport configured so that nothing
// moves traffic past the policy:
//
//   - no proxy: HTTPS_PROXY and friends are ignored;
//   - no redirects: RoundTrip returns 3xx responses as they are;
//   - the host name is checked before it is resolved, the Transport
//     resolves it itself, refuses if any answer is outside the policy, and
//     then dials only the checked addresses, so an answer that changes
//     between check and dial (DNS rebinding) is never used;
//   - the dialer's ControlContext checks the exact IP:port of every socket
//     before it connects.
type Transport struct {
	policy   Policy
	up       Upstream
	resolver Resolver
	dialer   net.Dialer
	onDial   func(context.Context, string, netip.AddrPort)
	rt       *http.Transport
}

var _ http.RoundTripper = (*Transport)(nil)

// NewTransport returns a Transport for up under p. The policy is copied, so
// later changes to p do not affect the Transport.
func NewTransport(p *Policy, up Upstream, opts TransportOptions) (*Transport, error) {
	if p == nil {
		return nil, errors.New("egress: nil policy")
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("egress: invalid policy: %w", err)
	}
	if up.Class != EgressPrivate && up.Class != EgressPublic {
		return nil, fmt.Errorf("egress: upstream %q: unknown egress class %q", up.Name, up.Class)
	}
	t := &Transport{
		policy: Policy{
			PrivatePrefixes:       append([]netip.Prefix(nil), p.PrivatePrefixes...),
			PublicHosts:           append([]string(nil), p.PublicHosts...),
			PublicAllowedPrefixes: append([]netip.Prefix(nil), p.PublicAllowedPrefixes...),
		},
		up:       up,
		resolver: opts.Resolver,
		onDial:   opts.OnDial,
		dialer: net.Dialer{
			Timeout:   orDuration(opts.DialTimeout, 10*time.Second),
			KeepAlive: orDuration(opts.KeepAlive, 30*time.Second),
		},
	}
	if t.resolver == nil {
		t.resolver = net.DefaultResolver
	}
	tlsConf := opts.TLSClientConfig.Clone()
	if tlsConf == nil {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	t.rt = &http.Transport{
		Proxy:                 nil,
		DialContext:           t.dialContext,
		TLSClientConfig:       tlsConf,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   orDuration(opts.TLSHandshakeTimeout, 10*time.Second),
		ResponseHeaderTimeout: opts.ResponseHeaderTimeout,
		IdleConnTimeout:       orDuration(opts.IdleConnTimeout, 90*time.Second),
		MaxIdleConns:          orInt(opts.MaxIdleConns, 1024),
		MaxIdleConnsPerHost:   orInt(opts.MaxIdleConnsPerHost, 256),
		MaxConnsPerHost:       opts.MaxConnsPerHost,
		ExpectContinueTimeout: time.Second,
	}
	return t, nil
}

// NewClient returns an http.Client over NewTransport whose CheckRedirect
// returns http.ErrUseLastResponse, so redirects are handed back to the
// caller instead of followed.
func NewClient(p *Policy, up Upstream, opts TransportOptions) (*http.Client, error) {
	t, err := NewTransport(p, up, opts)
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// RoundTrip sends req to the upstream. It never follows redirects and
// refuses schemes other than http and https. A refused destination is
// reported as a *DeniedError.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		closeBody(req)
		return nil, errors.New("egress: request without URL")
	}
	if s := req.URL.Scheme; s != "http" && s != "https" {
		closeBody(req)
		return nil, fmt.Errorf("egress: unsupported scheme %q", s)
	}
	if err := t.policy.CheckHost(t.up, req.URL.Hostname()); err != nil {
		closeBody(req)
		return nil, err
	}
	return t.rt.RoundTrip(req)
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// CloseIdleConnections closes pooled connections that are not in use.
func (t *Transport) CloseIdleConnections() { t.rt.CloseIdleConnections() }

func (t *Transport) dialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("egress: dial %q: %w", address, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("egress: dial %q: bad port: %w", address, err)
	}
	// Refuse disallowed names before they reach DNS: a lookup alone can
	// leak data to whoever runs the name's servers.
	if err := t.policy.CheckHost(t.up, host); err != nil {
		return nil, err
	}
	addrs, err := t.resolve(ctx, network, host)
	if err != nil {
		return nil, err
	}
	targets := make([]netip.AddrPort, len(addrs))
	for i, a := range addrs {
		targets[i] = netip.AddrPortFrom(a, uint16(port))
		if err := t.policy.Check(t.up, host, targets[i]); err != nil {
			return nil, err
		}
	}
	var errs []error
	for _, ap := range targets {
		d := t.dialer
		d.ControlContext = t.control(host, ap)
		conn, err := d.DialContext(ctx, network, ap.String())
		if err == nil {
			if t.onDial != nil {
				t.onDial(ctx, host, ap)
			}
			return conn, nil
		}
		if de := (*DeniedError)(nil); errors.As(err, &de) {
			return nil, err
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("egress: dial %s: %w", address, errors.Join(errs...))
}

// resolve returns the de-duplicated, unmapped addresses of host. An IP
// literal resolves to itself.
func (t *Transport) resolve(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	ipNet := "ip"
	switch network {
	case "tcp4":
		ipNet = "ip4"
	case "tcp6":
		ipNet = "ip6"
	}
	found, err := t.resolver.LookupNetIP(ctx, ipNet, host)
	if err != nil {
		return nil, fmt.Errorf("egress: resolve %q: %w", host, err)
	}
	out := make([]netip.Addr, 0, len(found))
	seen := make(map[netip.Addr]bool, len(found))
	for _, a := range found {
		a = a.Unmap()
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("egress: resolve %q: no addresses", host)
	}
	return out, nil
}

// control returns the ControlContext hook for a dial to want: it checks
// the address the socket is really connecting to, so nothing between the
// policy check and connect(2) can change the destination.
func (t *Transport) control(host string, want netip.AddrPort) func(context.Context, string, string, syscall.RawConn) error {
	return func(_ context.Context, _, address string, _ syscall.RawConn) error {
		got, err := netip.ParseAddrPort(address)
		if err != nil {
			return &DeniedError{Upstream: t.up.Name, Host: host, Reason: fmt.Sprintf("unparsable dial address %q", address)}
		}
		if got.Addr().Unmap() != want.Addr().Unmap() || got.Port() != want.Port() {
			return &DeniedError{Upstream: t.up.Name, Host: host, Addr: got,
				Reason: fmt.Sprintf("dialed address differs from checked address %s", want)}
		}
		return t.policy.Check(t.up, host, got)
	}
}

// Peer records which address a request's connection was connected to, for
// the request's audit record. Create one with TracePeer.
type Peer struct {
	mu     sync.Mutex
	addr   netip.AddrPort
	reused bool
	ok     bool
}

// TracePeer returns a context that records, in the returned Peer, the
// remote address of the connection the request is sent on: a new
// connection or a pooled one. Read it after RoundTrip returns.
//
//	ctx, peer := egress.TracePeer(req.Context())
//	resp, err := client.Do(req.WithContext(ctx))
//	addr, reused, ok := peer.Addr()
func TracePeer(ctx context.Context) (context.Context, *Peer) {
	p := &Peer{}
	trace := &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			ap, err := netip.ParseAddrPort(info.Conn.RemoteAddr().String())
			if err != nil {
				return
			}
			p.mu.Lock()
			p.addr, p.reused, p.ok = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), info.Reused, true
			p.mu.Unlock()
		},
	}
	return httptrace.WithClientTrace(ctx, trace), p
}

// Addr returns the remote address of the last connection the request used,
// whether that connection was reused from the pool, and false if no
// connection was obtained.
func (p *Peer) Addr() (addr netip.AddrPort, reused, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr, p.reused, p.ok
}

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func orInt(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}
