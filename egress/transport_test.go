package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// All traffic in these tests stays on loopback. 127.0.0.1 plays the
// private network, other 127/8 addresses play "public" or "forbidden"
// hosts, and the policies are configured narrowly around them.

type countingListener struct {
	net.Listener
	accepts atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepts.Add(1)
	}
	return c, err
}

type testServer struct {
	*httptest.Server
	ln       *countingListener
	requests atomic.Int64
}

func (s *testServer) accepts() int64 { return s.ln.accepts.Load() }

// startServers starts one HTTP server per loopback IP, all on the same
// port, each answering with its own address. The same port matters: a
// request that rebinds to another address would really reach a server.
func startServers(t *testing.T, ips ...string) (port int, servers map[string]*testServer) {
	t.Helper()
	for attempt := 0; attempt < 20; attempt++ {
		lns, err := listenSamePort(ips)
		if err != nil {
			continue
		}
		servers = map[string]*testServer{}
		for i, ip := range ips {
			s := &testServer{ln: &countingListener{Listener: lns[i]}}
			ip := ip
			s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s.requests.Add(1)
				io.WriteString(w, ip)
			}))
			s.Listener.Close()
			s.Listener = s.ln
			s.Start()
			t.Cleanup(s.Close)
			servers[ip] = s
		}
		return lns[0].Addr().(*net.TCPAddr).Port, servers
	}
	t.Fatalf("could not listen on one port on %v", ips)
	return 0, nil
}

func listenSamePort(ips []string) ([]net.Listener, error) {
	var lns []net.Listener
	port := "0"
	for _, ip := range ips {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, port))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		port = strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		lns = append(lns, ln)
	}
	return lns, nil
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// staticDNS answers names from a fixed table.
func staticDNS(t *testing.T, table map[string][]netip.Addr) *dnsServer {
	return newDNSServer(t, func(name string, _ int) []netip.Addr { return table[name] })
}

var (
	privateUp = Upstream{Name: "vllm", Class: EgressPrivate}
	publicUp  = Upstream{Name: "vendor", Class: EgressPublic}
)

func loopbackPolicy() *Policy {
	return &Policy{
		PrivatePrefixes:       []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		PublicHosts:           []string{"api.test", "*.vendor.test"},
		PublicAllowedPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
	}
}

func mustClient(t *testing.T, p *Policy, up Upstream, opts TransportOptions) *http.Client {
	t.Helper()
	c, err := NewClient(p, up, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func get(t *testing.T, c *http.Client, rawURL string) (string, error) {
	t.Helper()
	resp, err := c.Get(rawURL)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func wantDenied(t *testing.T, err error, addr string) *DeniedError {
	t.Helper()
	var de *DeniedError
	if !errors.As(err, &de) {
		t.Fatalf("error = %v, want *DeniedError", err)
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Fatalf("error %T is not a *url.Error", err)
	}
	if addr != "" && de.Addr.Addr().String() != addr {
		t.Fatalf("denied address = %s, want %s", de.Addr, addr)
	}
	return de
}

func TestPrivateUpstreamDialsAndReportsPeer(t *testing.T) {
	port, srv := startServers(t, "127.0.0.1")
	dns := staticDNS(t, map[string][]netip.Addr{"svc.test": addrs("127.0.0.1")})
	var mu sync.Mutex
	var dials []string
	c := mustClient(t, loopbackPolicy(), privateUp, TransportOptions{
		Resolver: dns.resolver(),
		OnDial: func(_ context.Context, host string, ap netip.AddrPort) {
			mu.Lock()
			dials = append(dials, host+"="+ap.String())
			mu.Unlock()
		},
	})
	want := fmt.Sprintf("127.0.0.1:%d", port)
	for i := range 2 {
		ctx, peer := TracePeer(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://svc.test:%d/", port), nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ap, reused, ok := peer.Addr()
		if !ok || ap.String() != want || reused != (i == 1) {
			t.Errorf("request %d: peer = %s reused=%v ok=%v, want %s reused=%v", i, ap, reused, ok, want, i == 1)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dials) != 1 || dials[0] != "svc.test="+want {
		t.Errorf("OnDial calls = %v, want one for svc.test=%s", dials, want)
	}
	if got := srv["127.0.0.1"].requests.Load(); got != 2 {
		t.Errorf("server saw %d requests, want 2", got)
	}
}

// TestDNSRebinding: the name answers the allowed 127.0.0.1 first and the
// forbidden 127.0.0.9 afterwards. A server really listens on 127.0.0.9 on
// the same port; it must never see a connection.
func TestDNSRebinding(t *testing.T) {
	port, srv := startServers(t, "127.0.0.1", "127.0.0.9")
	dns := newDNSServer(t, func(name string, n int) []netip.Addr {
		if name != "rebind.test" {
			return nil
		}
		if n == 0 {
			return addrs("127.0.0.1")
		}
		return addrs("127.0.0.9")
	})
	c := mustClient(t, loopbackPolicy(), privateUp, TransportOptions{Resolver: dns.resolver()})
	u := fmt.Sprintf("http://rebind.test:%d/", port)

	body, err := get(t, c, u)
	if err != nil || body != "127.0.0.1" {
		t.Fatalf("first request: %q, %v", body, err)
	}
	// One lookup per dial: nothing re-resolves between check and connect.
	if n := dns.aQueries("rebind.test"); n != 1 {
		t.Fatalf("A queries after first dial = %d, want 1", n)
	}

	c.CloseIdleConnections() // force a new dial, hence a new lookup
	_, err = get(t, c, u)
	wantDenied(t, err, "127.0.0.9")
	if n := srv["127.0.0.9"].accepts(); n != 0 {
		t.Fatalf("127.0.0.9 accepted %d connections", n)
	}
	if n := srv["127.0.0.1"].accepts(); n != 1 {
		t.Fatalf("127.0.0.1 accepted %d connections, want 1", n)
	}
}

// TestMixedAnswersRefused: a name with answers inside and outside the
// policy is refused as a whole, whatever the order of the answers.
func TestMixedAnswersRefused(t *testing.T) {
	port, srv := startServers(t, "127.0.0.1", "127.0.0.9")
	dns := staticDNS(t, map[string][]netip.Addr{
		"mixed1.test": addrs("127.0.0.1", "127.0.0.9"),
		"mixed2.test": addrs("127.0.0.9", "127.0.0.1"),
	})
	c := mustClient(t, loopbackPolicy(), privateUp, TransportOptions{Resolver: dns.resolver()})
	for _, name := range []string{"mixed1.test", "mixed2.test"} {
		_, err := get(t, c, fmt.Sprintf("http://%s:%d/", name, port))
		wantDenied(t, err, "127.0.0.9")
	}
	for ip, s := range srv {
		if n := s.accepts(); n != 0 {
			t.Errorf("%s accepted %d connections", ip, n)
		}
	}
}

func TestIPLiteralChecked(t *testing.T) {
	port, srv := startServers(t, "127.0.0.1", "127.0.0.9")
	c := mustClient(t, loopbackPolicy(), privateUp, TransportOptions{Resolver: staticDNS(t, nil).resolver()})
	_, err := get(t, c, fmt.Sprintf("http://127.0.0.9:%d/", port))
	wantDenied(t, err, "127.0.0.9")
	_, err = get(t, c, fmt.Sprintf("http://[::ffff:127.0.0.9]:%d/", port))
	wantDenied(t, err, "127.0.0.9")
	if body, err := get(t, c, fmt.Sprintf("http://127.0.0.1:%d/", port)); err != nil || body != "127.0.0.1" {
		t.Fatalf("allowed literal: %q, %v", body, err)
	}
	if n := srv["127.0.0.9"].accepts(); n != 0 {
		t.Fatalf("127.0.0.9 accepted %d connections", n)
	}
}

func TestPublicUpstream(t *testing.T) {
	port, srv := startServers(t, "127.0.0.1", "127.0.0.2", "127.0.0.3")
	dns := staticDNS(t, map[string][]netip.Addr{
		"api.test":         addrs("127.0.0.2"),
		"ok.vendor.test":   addrs("127.0.0.2"),
		"priv.vendor.test": addrs("127.0.0.1"), // inside the private prefixes
		"lo.vendor.test":   addrs("127.0.0.3"), // loopback, not operator-listed
		"vendor.test":      addrs("127.0.0.2"),
		"evil.test":        addrs("127.0.0.2"),
	})
	c := mustClient(t, loopbackPolicy(), publicUp, TransportOptions{Resolver: dns.resolver()})
	for _, name := range []string{"api.test", "ok.vendor.test"} {
		if body, err := get(t, c, fmt.Sprintf("http://%s:%d/", name, port)); err != nil || body != "127.0.0.2" {
			t.Errorf("%s: %q, %v", name, body, err)
		}
	}
	for name, addr := range map[string]string{"priv.vendor.test": "127.0.0.1", "lo.vendor.test": "127.0.0.3"} {
		_, err := get(t, c, fmt.Sprintf("http://%s:%d/", name, port))
		wantDenied(t, err, addr)
	}
	// Names off the allowlist are refused before any DNS query is sent.
	for _, name := range []string{"evil.test", "vendor.test"} {
		_, err := get(t, c, fmt.Sprintf("http://%s:%d/", name, port))
		if de := wantDenied(t, err, ""); de.Addr.IsValid() {
			t.Errorf("%s: refused after resolution: %v", name, de)
		}
		if n := dns.aQueries(name); n != 0 {
			t.Errorf("%s: %d DNS queries for a refused name", name, n)
		}
	}
	for _, ip := range []string{"127.0.0.1", "127.0.0.3"} {
		if n := srv[ip].accepts(); n != 0 {
			t.Errorf("%s accepted %d connections", ip, n)
		}
	}
}

func TestPrivateUpstreamRefusesOtherAddresses(t *testing.T) {
	port, srv := startServers(t, "127.0.0.2")
	dns := staticDNS(t, map[string][]netip.Addr{"api.test": addrs("127.0.0.2")})
	c := mustClient(t, loopbackPolicy(), privateUp, TransportOptions{Resolver: dns.resolver()})
	_, err := get(t, c, fmt.Sprintf("http://api.test:%d/", port))
	wantDenied(t, err, "127.0.0.2")
	if n := srv["127.0.0.2"].accepts(); n != 0 {
		t.Fatalf("127.0.0.2 accepted %d connections", n)
	}
}

func TestRedirectsNotFollowed(t *testing.T) {
	_, target := startServers(t, "127.0.0.1")
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target["127.0.0.1"].URL+"/stolen", http.StatusFound)
	}))
	t.Cleanup(redirector.Close)
	p := loopbackPolicy()

	c := mustClient(t, p, privateUp, TransportOptions{})
	resp, err := c.Get(redirector.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("client status = %d, want 302", resp.StatusCode)
	}

	tr, err := NewTransport(p, privateUp, TransportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	req, _ := http.NewRequest("GET", redirector.URL, nil)
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("transport status = %d, want 302", resp.StatusCode)
	}
	if n := target["127.0.0.1"].requests.Load(); n != 0 {
		t.Fatalf("redirect target got %d requests", n)
	}
}

func TestProxyEnvironmentIgnored(t *testing.T) {
	port, srv := startServers(t, "127.0.0.1")
	_, proxy := startServers(t, "127.0.0.1")
	proxyURL := proxy["127.0.0.1"].URL
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"} {
		t.Setenv(k, proxyURL)
	}
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	dns := staticDNS(t, map[string][]netip.Addr{"svc.test": addrs("127.0.0.1")})
	tr, err := NewTransport(loopbackPolicy(), privateUp, TransportOptions{Resolver: dns.resolver()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	if tr.rt.Proxy != nil {
		t.Fatal("transport has a proxy function")
	}
	c := &http.Client{Transport: tr}
	body, err := get(t, c, fmt.Sprintf("http://svc.test:%d/", port))
	if err != nil || body != "127.0.0.1" {
		t.Fatalf("request: %q, %v", body, err)
	}
	if n := proxy["127.0.0.1"].accepts(); n != 0 {
		t.Fatalf("proxy accepted %d connections", n)
	}
	if n := srv["127.0.0.1"].requests.Load(); n != 1 {
		t.Fatalf("upstream got %d requests, want 1", n)
	}
}

func TestHTTP2OverTLS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)

	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	dns := staticDNS(t, map[string][]netip.Addr{"svc.test": addrs("127.0.0.1")})
	c := mustClient(t, loopbackPolicy(), privateUp, TransportOptions{
		Resolver: dns.resolver(),
		// httptest's certificate names example.com.
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "example.com"},
	})
	port := ln.Addr().(*net.TCPAddr).Port
	body, err := get(t, c, fmt.Sprintf("https://svc.test:%d/", port))
	if err != nil || body != "HTTP/2.0" {
		t.Fatalf("got %q, %v; want HTTP/2.0", body, err)
	}
}

func TestControlChecksDialedAddress(t *testing.T) {
	tr, err := NewTransport(loopbackPolicy(), privateUp, TransportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := netip.MustParseAddrPort("127.0.0.1:8080")
	ctl := tr.control("svc.test", want)
	if err := ctl(context.Background(), "tcp4", "127.0.0.1:8080", nil); err != nil {
		t.Fatalf("checked address refused: %v", err)
	}
	for _, got := range []string{"127.0.0.9:8080", "127.0.0.1:8081", "[::1]:8080", "garbage"} {
		err := ctl(context.Background(), "tcp", got, nil)
		var de *DeniedError
		if !errors.As(err, &de) {
			t.Errorf("control(%s) = %v, want *DeniedError", got, err)
		}
	}
	// Even the checked address is refused if the policy refuses it.
	bad := netip.MustParseAddrPort("127.0.0.9:80")
	if err := tr.control("svc.test", bad)(context.Background(), "tcp", bad.String(), nil); err == nil {
		t.Error("control allowed an address outside the policy")
	}
}

func TestTransportErrors(t *testing.T) {
	if _, err := NewTransport(nil, privateUp, TransportOptions{}); err == nil {
		t.Error("nil policy accepted")
	}
	if _, err := NewTransport(&Policy{PublicHosts: []string{"a b"}}, privateUp, TransportOptions{}); err == nil {
		t.Error("invalid policy accepted")
	}
	if _, err := NewTransport(loopbackPolicy(), Upstream{Name: "x"}, TransportOptions{}); err == nil {
		t.Error("upstream without egress class accepted")
	}

	dns := staticDNS(t, nil)
	c := mustClient(t, loopbackPolicy(), privateUp, TransportOptions{Resolver: dns.resolver()})
	_, err := get(t, c, "http://unknown.test:1/")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) {
		t.Errorf("unknown name: %v, want a wrapped *net.DNSError", err)
	}
	if _, err := c.Get("ftp://127.0.0.1/"); err == nil {
		t.Error("ftp scheme accepted")
	}
}

// TestPolicyIsCopied: changing the Policy after NewTransport does not
// widen what the Transport allows.
func TestPolicyIsCopied(t *testing.T) {
	p := loopbackPolicy()
	tr, err := NewTransport(p, privateUp, TransportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.PrivatePrefixes[0] = netip.MustParsePrefix("127.0.0.0/8")
	if err := tr.policy.Check(privateUp, "h", netip.MustParseAddrPort("127.0.0.9:80")); err == nil {
		t.Fatal("transport policy changed with the caller's Policy")
	}
}

// BenchmarkControl measures the check made inside ControlContext for every
// socket, including parsing the dial address.
func BenchmarkControl(b *testing.B) {
	tr, err := NewTransport(DefaultPolicy(), privateUp, TransportOptions{})
	if err != nil {
		b.Fatal(err)
	}
	want := netip.MustParseAddrPort("10.1.2.3:8000")
	ctl := tr.control("vllm.internal", want)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := ctl(ctx, "tcp4", "10.1.2.3:8000", nil); err != nil {
			b.Fatal(err)
		}
	}
}
