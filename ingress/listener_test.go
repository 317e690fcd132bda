package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestAllowlistRefusesBeforeTLS: a client on 127.0.0.2 is cut off before
// the server reads its ClientHello; 127.0.0.1 is served.
func TestAllowlistRefusesBeforeTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "server ca")
	files := serverFiles(t, dir, ca)
	tlsConf, err := ServerTLSConfig(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	var hellos atomic.Int32
	tlsConf.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		hellos.Add(1)
		return nil, nil
	}
	refused := newRefusals()
	cfg := ListenerConfig{AllowedSources: prefixes("127.0.0.1/32")}
	ln := newListener(loopbackListener(t), cfg, Options{OnRefused: refused.record}, tlsConf)
	serve(t, ln, echoClient)
	clientTLS := &tls.Config{RootCAs: ca.pool()}

	conn, err := tls.DialWithDialer(dialerFrom("127.0.0.2"), "tcp", ln.Addr().String(), clientTLS)
	if err == nil {
		conn.Close()
		t.Fatal("TLS handshake from 127.0.0.2 succeeded")
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client from 127.0.0.2 got %v, want EOF or connection reset (no TLS alert)", err)
	}
	r := refused.next(t)
	if r.remote.Addr() != netip.MustParseAddr("127.0.0.2") || r.reason != ReasonNotAllowed {
		t.Errorf("refusal = %v %q, want 127.0.0.2 %q", r.remote, r.reason, ReasonNotAllowed)
	}
	if n := hellos.Load(); n != 0 {
		t.Errorf("server read %d ClientHellos from a refused client", n)
	}

	body, err := get(httpClient("127.0.0.1", clientTLS), "https://"+ln.Addr().String()+"/", nil)
	if err != nil {
		t.Fatalf("client from 127.0.0.1: %v", err)
	}
	if body != "127.0.0.1" {
		t.Errorf("handler saw client %q, want 127.0.0.1", body)
	}
	if n := hellos.Load(); n != 1 {
		t.Errorf("server read %d ClientHellos, want 1", n)
	}
	refused.none(t)
}

// TestListenPlain goes through the public Listen: refused plain-HTTP
// clients see the connection closed without a response.
func TestListenPlain(t *testing.T) {
	refused := newRefusals()
	ln, err := Listen(ListenerConfig{Address: "127.0.0.1:0", AllowedSources: prefixes("127.0.0.1/32")},
		Options{OnRefused: refused.record})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, echoClient)
	url := "http://" + ln.Addr().String() + "/"
	for range 3 { // refusals do not stop the accept loop
		if _, err := get(httpClient("127.0.0.2", nil), url, nil); err == nil {
			t.Fatal("request from 127.0.0.2 succeeded")
		}
		if r := refused.next(t); r.remote.Addr() != netip.MustParseAddr("127.0.0.2") {
			t.Errorf("refused %v, want 127.0.0.2", r.remote)
		}
		if body, err := get(httpClient("127.0.0.1", nil), url, nil); err != nil || body != "127.0.0.1" {
			t.Fatalf("request from 127.0.0.1 = %q, %v", body, err)
		}
	}
	refused.none(t)
}

func TestListenRefusesInvalidConfig(t *testing.T) {
	_, err := Listen(ListenerConfig{Address: "0.0.0.0:0"}, Options{})
	if !errors.Is(err, ErrPublicBind) {
		t.Fatalf("Listen(0.0.0.0, no allowlist) = %v, want ErrPublicBind", err)
	}
	inner := loopbackListener(t)
	defer inner.Close()
	if _, err := Wrap(inner, ListenerConfig{ProxyProtocol: true}, Options{}); err == nil {
		t.Fatal("Wrap with proxy protocol and no trusted proxies succeeded")
	}
}

// fakeListener hands out connections whose RemoteAddr the test chooses.
type fakeListener struct {
	conns  chan net.Conn
	closed chan struct{}
}

func newFakeListener() *fakeListener {
	return &fakeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *fakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *fakeListener) Close() error { close(l.closed); return nil }
func (l *fakeListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 1}
}

// dial queues a connection from remote and returns the client's end.
func (l *fakeListener) dial(remote string) net.Conn {
	server, client := net.Pipe()
	l.conns <- &fakeConn{Conn: server, remote: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(remote))}
	return client
}

type fakeConn struct {
	net.Conn
	remote net.Addr
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.remote }

// TestMappedSourcesAreUnmapped feeds the accept path IPv4-mapped IPv6 peers,
// as a dual-stack socket reports IPv4 clients.
func TestMappedSourcesAreUnmapped(t *testing.T) {
	for _, allowed := range []string{"127.0.0.1/32", "::ffff:127.0.0.1/128"} {
		t.Run(allowed, func(t *testing.T) {
			fl := newFakeListener()
			refused := newRefusals()
			ln := newListener(fl, ListenerConfig{AllowedSources: prefixes(allowed)}, Options{OnRefused: refused.record}, nil)
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					close(accepted)
					return
				}
				accepted <- c
			}()

			bad := fl.dial("[::ffff:127.0.0.2]:5000")
			bad.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := bad.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Errorf("read on a refused connection = %v, want EOF", err)
			}
			if r := refused.next(t); r.remote != netip.MustParseAddrPort("127.0.0.2:5000") || r.reason != ReasonNotAllowed {
				t.Errorf("refusal = %v %q, want 127.0.0.2:5000 %q", r.remote, r.reason, ReasonNotAllowed)
			}

			good := fl.dial("[::ffff:127.0.0.1]:5001")
			defer good.Close()
			var c net.Conn
			select {
			case c = <-accepted:
			case <-time.After(5 * time.Second):
				t.Fatal("connection from ::ffff:127.0.0.1 not accepted")
			}
			if c == nil {
				t.Fatal("Accept failed")
			}
			defer c.Close()
			if got := ClientAddr(c); got != netip.MustParseAddrPort("127.0.0.1:5001") {
				t.Errorf("ClientAddr = %v, want 127.0.0.1:5001", got)
			}
			if got := c.RemoteAddr().String(); got != "127.0.0.1:5001" {
				t.Errorf("RemoteAddr = %s, want 127.0.0.1:5001", got)
			}
			refused.none(t)
		})
	}
}

func TestEmptyAllowlistAdmitsEveryone(t *testing.T) {
	ln, err := Listen(ListenerConfig{Address: "127.0.0.1:0"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, echoClient)
	if body, err := get(httpClient("127.0.0.2", nil), "http://"+ln.Addr().String()+"/", nil); err != nil || body != "127.0.0.2" {
		t.Fatalf("request from 127.0.0.2 = %q, %v", body, err)
	}
}

// proxyClient dials from a source address and sends a PROXY header naming
// client before anything else. An invalid client sends no header.
func proxyClient(from string, header []byte) *http.Client {
	d := dialerFrom(from)
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				if _, err := c.Write(header); err != nil {
					c.Close()
					return nil, err
				}
				return c, nil
			},
		},
	}
}

// proxyListener listens on 127.0.0.1 with 127.0.0.3 as the trusted proxy
// and 127.0.0.1/32 plus the proxy as allowed sources.
func proxyListener(t *testing.T, opts Options) net.Listener {
	t.Helper()
	ln, err := Listen(ListenerConfig{
		Address:        "127.0.0.1:0",
		AllowedSources: prefixes("127.0.0.1/32", "127.0.0.3/32", "127.0.0.4/32"),
		TrustedProxies: prefixes("127.0.0.3/32", "127.0.0.5/32"),
		ProxyProtocol:  true,
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func TestProxyProtocol(t *testing.T) {
	refused := newRefusals()
	ln := proxyListener(t, Options{OnRefused: refused.record})
	serve(t, ln, echoClient)
	url := "http://" + ln.Addr().String() + "/"
	dst := netip.MustParseAddrPort(ln.Addr().String())
	header := func(src string) []byte { return AppendProxyV2Header(nil, netip.MustParseAddrPort(src), dst) }

	t.Run("trusted proxy forwards an allowed client", func(t *testing.T) {
		body, err := get(proxyClient("127.0.0.3", header("127.0.0.1:7000")), url, nil)
		if err != nil || body != "127.0.0.1" {
			t.Fatalf("got %q, %v; want the client address from the header", body, err)
		}
	})
	t.Run("mapped client address in a tcp6 header", func(t *testing.T) {
		h := AppendProxyV2Header(nil, netip.MustParseAddrPort("[::ffff:127.0.0.1]:7000"), netip.MustParseAddrPort("[::1]:80"))
		body, err := get(proxyClient("127.0.0.3", h), url, nil)
		if err != nil || body != "127.0.0.1" {
			t.Fatalf("got %q, %v; want 127.0.0.1", body, err)
		}
	})
	t.Run("local command is the proxy itself", func(t *testing.T) {
		body, err := get(proxyClient("127.0.0.3", AppendProxyV2Header(nil, netip.AddrPort{}, netip.AddrPort{})), url, nil)
		if err != nil || body != "127.0.0.3" {
			t.Fatalf("got %q, %v; want the proxy's address", body, err)
		}
	})
	t.Run("trusted proxy forwards a disallowed client", func(t *testing.T) {
		if _, err := get(proxyClient("127.0.0.3", header("127.0.0.9:7000")), url, nil); err == nil {
			t.Fatal("request succeeded")
		}
		if r := refused.next(t); r.remote != netip.MustParseAddrPort("127.0.0.9:7000") || r.reason != ReasonProxiedNotAllowed {
			t.Errorf("refusal = %v %q, want 127.0.0.9:7000 %q", r.remote, r.reason, ReasonProxiedNotAllowed)
		}
	})
	t.Run("trusted proxy that is not allowed itself", func(t *testing.T) {
		if _, err := get(proxyClient("127.0.0.5", header("127.0.0.1:7000")), url, nil); err == nil {
			t.Fatal("request succeeded")
		}
		if r := refused.next(t); r.remote.Addr() != netip.MustParseAddr("127.0.0.5") || r.reason != ReasonNotAllowed {
			t.Errorf("refusal = %v %q, want 127.0.0.5 %q", r.remote, r.reason, ReasonNotAllowed)
		}
	})
	t.Run("trusted proxy without a header", func(t *testing.T) {
		if _, err := get(proxyClient("127.0.0.3", nil), url, nil); err == nil {
			t.Fatal("request succeeded")
		}
		if r := refused.next(t); r.remote.Addr() != netip.MustParseAddr("127.0.0.3") || r.reason != ReasonProxyHeaderInvalid {
			t.Errorf("refusal = %v %q, want 127.0.0.3 %q", r.remote, r.reason, ReasonProxyHeaderInvalid)
		}
	})
	t.Run("untrusted peer's header is not honoured", func(t *testing.T) {
		// 127.0.0.4 is allowed but not a proxy; it claims to be 127.0.0.1.
		c, err := dialerFrom("127.0.0.4").Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		req := append(header("127.0.0.1:7000"), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"...)
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		resp, _ := io.ReadAll(c)
		if !strings.HasPrefix(string(resp), "HTTP/1.1 400 ") || strings.Contains(string(resp), "127.0.0.1") {
			t.Fatalf("response to a forged header = %q, want 400 Bad Request", resp)
		}
	})
	t.Run("untrusted peer without header", func(t *testing.T) {
		if body, err := get(httpClient("127.0.0.4", nil), url, nil); err != nil || body != "127.0.0.4" {
			t.Fatalf("got %q, %v; want 127.0.0.4", body, err)
		}
	})
	refused.none(t)
}

// TestProxyHeaderTimeout moves the clock so that the header deadline has
// passed when the read starts: no sleeping.
func TestProxyHeaderTimeout(t *testing.T) {
	clock := newClock(time.Now().Add(-time.Hour))
	refused := newRefusals()
	ln := proxyListener(t, Options{OnRefused: refused.record, Now: clock.Now, ProxyHeaderTimeout: time.Second})
	defer ln.Close()
	c, err := dialerFrom("127.0.0.3").Dial("tcp", ln.Addr().String())
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		// A reset can overtake the end of the client's connect.
		t.Fatal(err)
	}
	if r := refused.next(t); r.reason != ReasonProxyHeaderTimeout {
		t.Errorf("refusal reason = %q, want %q", r.reason, ReasonProxyHeaderTimeout)
	}
	if err != nil {
		return
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("read after timeout = %v, want the connection closed", err)
	}
}

// TestProxyCloseUnblocks: Close ends header reads in progress and Accept.
func TestProxyCloseUnblocks(t *testing.T) {
	ln := proxyListener(t, Options{})
	l := ln.(*listener)
	acceptErr := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		acceptErr <- err
	}()
	c, err := dialerFrom("127.0.0.3").Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(proxyV2Sig[:5])) // a header that never finishes

	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second)) // well under the 5s header timeout
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("pending connection after Close: read = %v, want it closed", err)
	}
	if err := <-acceptErr; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
	}
	<-l.loopDone
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) != 0 {
		t.Errorf("%d header reads still pending after Close", len(l.pending))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestProxyThenTLS: bytes read past the header (the ClientHello, sent in
// the same write) reach the TLS server.
func TestProxyThenTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "server ca")
	files := serverFiles(t, dir, ca)
	ln, err := Listen(ListenerConfig{
		Address:        "127.0.0.1:0",
		AllowedSources: prefixes("127.0.0.1/32", "127.0.0.3/32"),
		TrustedProxies: prefixes("127.0.0.3/32"),
		ProxyProtocol:  true,
		TLS:            &files,
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, echoClient)
	raw, err := dialerFrom("127.0.0.3").Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	// Hold back the header until the ClientHello is ready, then send both
	// in one write.
	hc := &prefixConn{Conn: raw, prefix: AppendProxyV2Header(nil, netip.MustParseAddrPort("127.0.0.1:9"), netip.MustParseAddrPort(ln.Addr().String()))}
	tc := tls.Client(hc, &tls.Config{RootCAs: ca.pool(), ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := io.ReadAll(tc)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(resp), "\r\n\r\n127.0.0.1") {
		t.Errorf("response = %q, want body 127.0.0.1", resp)
	}
}

// prefixConn sends prefix together with the first write.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Write(p []byte) (int, error) {
	if c.prefix != nil {
		b := append(c.prefix, p...)
		c.prefix = nil
		n, err := c.Conn.Write(b)
		return max(0, n-(len(b)-len(p))), err
	}
	return c.Conn.Write(p)
}

func TestClientAddrOfOtherConns(t *testing.T) {
	fc := &fakeConn{remote: &net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.7"), Port: 9}}
	if got := ClientAddr(fc); got != netip.MustParseAddrPort("127.0.0.7:9") {
		t.Errorf("ClientAddr(plain conn) = %v", got)
	}
	if got := ClientAddr(&fakeConn{remote: &net.UnixAddr{Name: "/tmp/s", Net: "unix"}}); got.IsValid() {
		t.Errorf("ClientAddr(unix conn) = %v, want zero", got)
	}
	if got := ClientAddrFrom(context.Background()); got.IsValid() {
		t.Errorf("ClientAddrFrom(empty context) = %v, want zero", got)
	}
}
