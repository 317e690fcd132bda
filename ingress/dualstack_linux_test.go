package ingress

import (
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
)

// dualStackLoopback listens on an IPv6 socket bound to ::ffff:127.0.0.1, so
// the kernel reports IPv4 clients as ::ffff:127.0.0.x, as on a [::] bind,
// without exposing a port beyond loopback.
func dualStackLoopback(t *testing.T) net.Listener {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no IPv6 sockets: %v", err)
	}
	f := os.NewFile(uintptr(fd), "dual-stack listener")
	defer f.Close()
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 0); err != nil {
		t.Skipf("cannot clear IPV6_V6ONLY: %v", err)
	}
	sa := &syscall.SockaddrInet6{Addr: netip.MustParseAddr("::ffff:127.0.0.1").As16()}
	if err := syscall.Bind(fd, sa); err != nil {
		t.Skipf("kernel refuses a v4-mapped bind: %v", err)
	}
	if err := syscall.Listen(fd, 16); err != nil {
		t.Fatal(err)
	}
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func TestDualStackMappedClient(t *testing.T) {
	inner := dualStackLoopback(t)
	refused := newRefusals()
	ln, err := Wrap(inner, ListenerConfig{AllowedSources: prefixes("127.0.0.1/32")}, Options{OnRefused: refused.record})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, echoClient)
	url := "http://" + ln.Addr().String() + "/"

	if _, err := get(httpClient("127.0.0.2", nil), url, nil); err == nil {
		t.Fatal("request from 127.0.0.2 (seen as ::ffff:127.0.0.2) succeeded")
	}
	r := refused.next(t)
	if !r.remote.Addr().Is4() || r.remote.Addr() != netip.MustParseAddr("127.0.0.2") {
		t.Errorf("refused %v, want the unmapped 127.0.0.2", r.remote)
	}
	if body, err := get(httpClient("127.0.0.1", nil), url, nil); err != nil || body != "127.0.0.1" {
		t.Fatalf("request from 127.0.0.1 = %q, %v", body, err)
	}
}
