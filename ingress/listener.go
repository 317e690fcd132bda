package ingress

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Reasons passed to Options.OnRefused.
const (
	// ReasonNotAllowed: the peer's address is outside AllowedSources.
	ReasonNotAllowed = "source_not_allowed"
	// ReasonProxiedNotAllowed: a trusted proxy forwarded a client whose
	// address (from the PROXY header) is outside AllowedSources.
	ReasonProxiedNotAllowed = "proxied_source_not_allowed"
	// ReasonProxyHeaderInvalid: a trusted proxy sent no valid PROXY v2
	// header, or closed the connection before finishing it.
	ReasonProxyHeaderInvalid = "proxy_header_invalid"
	// ReasonProxyHeaderTimeout: a trusted proxy did not finish the PROXY
	// header within Options.ProxyHeaderTimeout.
	ReasonProxyHeaderTimeout = "proxy_header_timeout"
	// ReasonUnknownSource: the connection has no IP peer address.
	ReasonUnknownSource = "source_unknown"
)

// DefaultProxyHeaderTimeout bounds the wait for a PROXY header when
// Options.ProxyHeaderTimeout is zero.
const DefaultProxyHeaderTimeout = 5 * time.Second

// Options are the listener's collaborators.
type Options struct {
	// OnRefused, if non-nil, is called for every connection the listener
	// closes, with the address it judged (the client's address from a PROXY
	// header when there is one, else the peer's) and one of the Reason*
	// constants. With ProxyProtocol it may be called from several
	// goroutines at once; it must not block.
	OnRefused func(remote netip.AddrPort, reason string)
	// Now is the clock; nil means time.Now. It sets the PROXY header read
	// deadline and is handed to ServerTLSConfig.
	Now func() time.Time
	// ProxyHeaderTimeout bounds how long a trusted proxy may take to send
	// its header. Zero means DefaultProxyHeaderTimeout.
	ProxyHeaderTimeout time.Duration
}

// Listen validates cfg, binds cfg.Address and returns a listener that
// admits only the configured sources.
//
// Its Accept closes a connection whose peer is outside AllowedSources before
// reading or writing a byte, reports it to Options.OnRefused and moves on to
// the next one; it returns errors only from the underlying listener. With
// ProxyProtocol, connections from TrustedProxies must start with a PROXY v2
// header, read under a deadline; the proxy's own address must pass the
// allowlist, and so must the client address the header carries, which then
// becomes the connection's RemoteAddr. Peers that are not trusted proxies are
// never asked for a header: one they send anyway reaches TLS or HTTP as
// garbage. With cfg.TLS, admitted connections are wrapped in TLS, so serve
// them with http.Server.Serve, not ServeTLS.
func Listen(cfg ListenerConfig, opts Options) (net.Listener, error) {
	tlsConf, err := prepare(cfg, opts)
	if err != nil {
		return nil, err
	}
	inner, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	return newListener(inner, cfg, opts, tlsConf), nil
}

// Wrap is Listen for a listener the caller already has (socket activation,
// tests). cfg.Address is ignored; Validate judges inner's address instead.
func Wrap(inner net.Listener, cfg ListenerConfig, opts Options) (net.Listener, error) {
	cfg.Address = inner.Addr().String()
	tlsConf, err := prepare(cfg, opts)
	if err != nil {
		return nil, err
	}
	return newListener(inner, cfg, opts, tlsConf), nil
}

func prepare(cfg ListenerConfig, opts Options) (*tls.Config, error) {
	if err := Validate(cfg); err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	if cfg.TLS == nil {
		return nil, nil
	}
	return ServerTLSConfig(*cfg.TLS, opts.Now)
}

// listener filters inner's connections. Without PROXY protocol, Accept
// filters inline: checking an address never blocks. With it, reading a
// header can take up to the header timeout, so a background loop accepts
// and one goroutine per trusted connection reads its header; Accept takes
// the admitted connections from a channel. A slow proxy thus never holds up
// other clients.
type listener struct {
	inner   net.Listener
	allowed prefixSet // empty admits everyone
	trusted prefixSet
	proxy   bool
	tls     *tls.Config
	refused func(netip.AddrPort, string)
	now     func() time.Time
	timeout time.Duration

	// Used only with PROXY protocol.
	ready     chan net.Conn
	errc      chan error // accept errors other than closure
	closed    chan struct{}
	loopDone  chan struct{} // closed when acceptLoop returns
	loopErr   error         // written before loopDone is closed
	closeOnce sync.Once
	mu        sync.Mutex
	pending   map[net.Conn]struct{} // connections whose header is being read
	readers   sync.WaitGroup        // readHeader goroutines
}

func newListener(inner net.Listener, cfg ListenerConfig, opts Options, tlsConf *tls.Config) *listener {
	l := &listener{
		inner:   inner,
		allowed: newPrefixSet(cfg.AllowedSources),
		trusted: newPrefixSet(cfg.TrustedProxies),
		proxy:   cfg.ProxyProtocol,
		tls:     tlsConf,
		refused: opts.OnRefused,
		now:     opts.Now,
		timeout: opts.ProxyHeaderTimeout,
	}
	if l.refused == nil {
		l.refused = func(netip.AddrPort, string) {}
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.timeout <= 0 {
		l.timeout = DefaultProxyHeaderTimeout
	}
	if l.proxy {
		l.ready = make(chan net.Conn)
		l.errc = make(chan error)
		l.closed = make(chan struct{})
		l.loopDone = make(chan struct{})
		l.pending = make(map[net.Conn]struct{})
		go l.acceptLoop()
	}
	return l
}

func (l *listener) Addr() net.Addr { return l.inner.Addr() }

// Accept returns the next admitted connection. Refused connections are
// closed and skipped; errors come only from the underlying listener.
func (l *listener) Accept() (net.Conn, error) {
	if l.proxy {
		select {
		case c := <-l.ready:
			return c, nil
		case err := <-l.errc:
			return nil, err
		case <-l.loopDone:
			return nil, l.loopErr
		}
	}
	for {
		raw, err := l.inner.Accept()
		if err != nil {
			return nil, err
		}
		if peer, ok := l.admitPeer(raw); ok {
			return l.finish(raw, nil, peer, peer), nil
		}
	}
}

// Close closes the underlying listener and, with PROXY protocol, the
// connections whose header is still being read; it returns once the
// listener's goroutines have exited.
func (l *listener) Close() error {
	if !l.proxy {
		return l.inner.Close()
	}
	err := l.inner.Close()
	l.closeOnce.Do(func() {
		close(l.closed)
		l.mu.Lock()
		for c := range l.pending {
			c.Close() // unblocks the header read; its goroutine then exits
		}
		l.mu.Unlock()
	})
	<-l.loopDone // no readers are added after this
	l.readers.Wait()
	return err
}

// admitPeer applies the allowlist to the connection's peer, closing the
// connection if it is refused.
func (l *listener) admitPeer(c net.Conn) (netip.AddrPort, bool) {
	peer, ok := addrPortOf(c.RemoteAddr())
	if !ok {
		l.refuse(c, peer, ReasonUnknownSource)
		return peer, false
	}
	if !l.isAllowed(peer.Addr()) {
		l.refuse(c, peer, ReasonNotAllowed)
		return peer, false
	}
	return peer, true
}

func (l *listener) isAllowed(a netip.Addr) bool {
	return len(l.allowed) == 0 || l.allowed.contains(a)
}

// refuse closes c with a reset rather than a graceful close: the peer gets
// no byte from us, and we keep no TIME_WAIT state for it.
func (l *listener) refuse(c net.Conn, remote netip.AddrPort, reason string) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
	l.refused(remote, reason)
}

// finish wraps an admitted connection: the effective client address, any
// bytes read past the PROXY header, then TLS.
func (l *listener) finish(raw net.Conn, br *bufio.Reader, peer, client netip.AddrPort) net.Conn {
	var c net.Conn = &conn{Conn: raw, br: br, peer: peer, client: client}
	if l.tls != nil {
		c = tls.Server(c, l.tls)
	}
	return c
}

// acceptLoop runs while the listener is open when PROXY protocol is on.
func (l *listener) acceptLoop() {
	defer close(l.loopDone)
	for {
		raw, err := l.inner.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.loopErr = err
				return
			}
			select {
			case l.errc <- err:
				continue
			case <-l.closed:
				l.loopErr = net.ErrClosed
				return
			}
		}
		peer, ok := l.admitPeer(raw)
		if !ok {
			continue
		}
		if !l.trusted.contains(peer.Addr()) {
			// Not a proxy: any PROXY header it sends reaches the TLS or
			// HTTP parser as garbage, and fails there.
			l.deliver(l.finish(raw, nil, peer, peer))
			continue
		}
		l.mu.Lock()
		select {
		case <-l.closed:
			l.mu.Unlock()
			raw.Close()
			continue
		default:
		}
		l.pending[raw] = struct{}{}
		l.mu.Unlock()
		l.readers.Add(1)
		go l.readHeader(raw, peer)
	}
}

// readHeader reads the PROXY header from a trusted proxy's connection and
// delivers the connection if the client it names is allowed.
func (l *listener) readHeader(raw net.Conn, peer netip.AddrPort) {
	defer l.readers.Done()
	c, client, reason := l.proxied(raw, peer)
	l.mu.Lock()
	delete(l.pending, raw)
	l.mu.Unlock()
	select {
	case <-l.closed: // the read failed because Close closed raw
		raw.Close()
		return
	default:
	}
	if reason != "" {
		l.refuse(raw, client, reason)
		return
	}
	l.deliver(c)
}

func (l *listener) proxied(raw net.Conn, peer netip.AddrPort) (net.Conn, netip.AddrPort, string) {
	if err := raw.SetReadDeadline(l.now().Add(l.timeout)); err != nil {
		return nil, peer, ReasonProxyHeaderInvalid
	}
	// The buffer outlives the header: bytes read past it (a ClientHello)
	// are served from it first. Its size caps nothing; headers may be
	// longer and are read through it.
	br := bufio.NewReaderSize(raw, 512)
	src, _, err := ParseProxyV2(br)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, peer, ReasonProxyHeaderTimeout
		}
		return nil, peer, ReasonProxyHeaderInvalid
	}
	if err := raw.SetReadDeadline(time.Time{}); err != nil {
		return nil, peer, ReasonProxyHeaderInvalid
	}
	client := peer // LOCAL: the proxy speaks for itself
	if src.IsValid() {
		client = normalizeAddrPort(src)
		if !l.isAllowed(client.Addr()) {
			return nil, client, ReasonProxiedNotAllowed
		}
	}
	return l.finish(raw, br, peer, client), client, ""
}

func (l *listener) deliver(c net.Conn) {
	select {
	case l.ready <- c:
	case <-l.closed:
		c.Close()
	}
}

// conn is an admitted connection. RemoteAddr reports the effective client
// address: the PROXY header's source when a trusted proxy sent one, else
// the peer, always with IPv4-mapped addresses unmapped.
type conn struct {
	net.Conn
	br     *bufio.Reader // bytes read past the PROXY header; nil when drained
	peer   netip.AddrPort
	client netip.AddrPort
}

func (c *conn) Read(p []byte) (int, error) {
	if c.br != nil {
		if n := c.br.Buffered(); n > 0 {
			return c.br.Read(p[:min(len(p), n)])
		}
		c.br = nil
	}
	return c.Conn.Read(p)
}

func (c *conn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.client) }

// CloseWrite half-closes the connection, as net/http does before closing
// a connection it has answered with an error.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("ingress: half-close not supported")
}

// NetConn returns the underlying connection.
func (c *conn) NetConn() net.Conn { return c.Conn }

// ClientAddr returns the effective client address of a connection accepted
// from a Listen listener, looking through TLS. For any other connection it
// returns its remote address, unmapped; the zero AddrPort if it has none.
func ClientAddr(c net.Conn) netip.AddrPort {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if ic, ok := c.(*conn); ok {
		return ic.client
	}
	ap, _ := addrPortOf(c.RemoteAddr())
	return ap
}

type clientAddrKey struct{}

// ConnContext stores the connection's client address in ctx. It has the
// signature of http.Server.ConnContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, clientAddrKey{}, ClientAddr(c))
}

// ClientAddrFrom returns the client address ConnContext stored in ctx, or
// the zero AddrPort.
func ClientAddrFrom(ctx context.Context) netip.AddrPort {
	ap, _ := ctx.Value(clientAddrKey{}).(netip.AddrPort)
	return ap
}
