package ingress

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted := prefixes("10.0.0.0/8", "2001:db8:ffff::/48")
	proxy := netip.MustParseAddrPort("10.0.0.1:5000")
	stranger := netip.MustParseAddrPort("192.0.2.9:5000")
	tests := []struct {
		name string
		peer netip.AddrPort
		xff  []string
		fwd  []string
		want string // "" means the zero Addr
	}{
		{name: "no headers", peer: proxy, want: "10.0.0.1"},
		{name: "untrusted peer, headers ignored", peer: stranger, xff: []string{"198.51.100.1"}, fwd: []string{"for=198.51.100.2"}, want: "192.0.2.9"},
		{name: "mapped untrusted peer", peer: netip.MustParseAddrPort("[::ffff:192.0.2.9]:1"), xff: []string{"198.51.100.1"}, want: "192.0.2.9"},
		{name: "mapped trusted peer", peer: netip.MustParseAddrPort("[::ffff:10.0.0.1]:1"), xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "xff one hop", peer: proxy, xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "xff forged left entries skipped", peer: proxy, xff: []string{"1.2.3.4, 198.51.100.1"}, want: "198.51.100.1"},
		{name: "xff trusted hops skipped", peer: proxy, xff: []string{"1.2.3.4, 198.51.100.1, 10.0.0.7, 10.0.0.8"}, want: "198.51.100.1"},
		{name: "xff several lines", peer: proxy, xff: []string{"1.2.3.4", "198.51.100.1, 10.0.0.7"}, want: "198.51.100.1"},
		{name: "xff all trusted", peer: proxy, xff: []string{"10.0.0.5, 10.0.0.7"}, want: "10.0.0.5"},
		{name: "xff with port", peer: proxy, xff: []string{"198.51.100.1:3456"}, want: "198.51.100.1"},
		{name: "xff bracketed v6", peer: proxy, xff: []string{"[2001:db8::1]"}, want: "2001:db8::1"},
		{name: "xff bracketed v6 with port", peer: proxy, xff: []string{"[2001:db8::1]:80, 2001:db8:ffff::1"}, want: "2001:db8::1"},
		{name: "xff mapped", peer: proxy, xff: []string{"::ffff:198.51.100.1"}, want: "198.51.100.1"},
		{name: "xff garbage at the right", peer: proxy, xff: []string{"198.51.100.1, nonsense"}, want: ""},
		{name: "xff garbage left of the client is harmless", peer: proxy, xff: []string{"nonsense, 198.51.100.1"}, want: "198.51.100.1"},
		{name: "xff empty", peer: proxy, xff: []string{""}, want: ""},
		{name: "forwarded", peer: proxy, fwd: []string{"for=198.51.100.1;proto=https"}, want: "198.51.100.1"},
		{name: "forwarded case and spaces", peer: proxy, fwd: []string{"For=1.2.3.4, FOR=198.51.100.1 ; by=10.0.0.1"}, want: "198.51.100.1"},
		{name: "forwarded quoted v6 with port", peer: proxy, fwd: []string{`for="[2001:db8::1]:4711"`}, want: "2001:db8::1"},
		{name: "forwarded trusted hops", peer: proxy, fwd: []string{`for=198.51.100.1, for="10.0.0.2:80";proto=http`, "for=10.0.0.3"}, want: "198.51.100.1"},
		{name: "forwarded quoted separators", peer: proxy, fwd: []string{`for=198.51.100.1;ext="a,b;c=d"`}, want: "198.51.100.1"},
		{name: "forwarded unknown hop", peer: proxy, fwd: []string{"for=198.51.100.1, for=unknown"}, want: ""},
		{name: "forwarded obfuscated hop", peer: proxy, fwd: []string{"for=_hidden"}, want: ""},
		{name: "forwarded element without for", peer: proxy, fwd: []string{"for=1.2.3.4, proto=https"}, want: ""},
		{name: "forwarded without any for is ignored", peer: proxy, fwd: []string{"proto=https"}, xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "both agree", peer: proxy, xff: []string{"198.51.100.1"}, fwd: []string{"for=198.51.100.1"}, want: "198.51.100.1"},
		{name: "both disagree", peer: proxy, xff: []string{"198.51.100.1"}, fwd: []string{"for=1.2.3.4"}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			for _, v := range tt.fwd {
				r.Header.Add("Forwarded", v)
			}
			var want netip.Addr
			if tt.want != "" {
				want = netip.MustParseAddr(tt.want)
			}
			if got := ClientIP(r, tt.peer, trusted); got != want {
				t.Errorf("ClientIP() = %v, want %v", got, want)
			}
		})
	}
}

func TestStripForwarding(t *testing.T) {
	h := http.Header{}
	for _, k := range forwardingHeaders {
		h.Set(k, "x")
	}
	h.Set("x-forwarded-for", "1.2.3.4")
	h.Set("Authorization", "Bearer k")
	StripForwarding(h)
	if len(h) != 1 || h.Get("Authorization") == "" {
		t.Errorf("after StripForwarding: %v, want only Authorization", h)
	}
}

// TestForwardedForOnlyFromTrustedProxy runs the intended handler over real
// loopback connections: 127.0.0.3 is a trusted HTTP proxy, 127.0.0.1 is not.
func TestForwardedForOnlyFromTrustedProxy(t *testing.T) {
	trusted := prefixes("127.0.0.3/32")
	ln, err := Listen(ListenerConfig{Address: "127.0.0.1:0", AllowedSources: prefixes("127.0.0.1/32", "127.0.0.3/32"),
		TrustedProxies: trusted}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer := ClientAddrFrom(r.Context())
		ip := ClientIP(r, peer, trusted)
		if !newPrefixSet(trusted).contains(peer.Addr()) {
			StripForwarding(r.Header)
		}
		w.Write([]byte(ip.String() + " " + r.Header.Get("X-Forwarded-For")))
	}))
	url := "http://" + ln.Addr().String() + "/"
	hdr := http.Header{"X-Forwarded-For": {"127.0.0.50"}}

	if body, err := get(httpClient("127.0.0.3", nil), url, hdr); err != nil || body != "127.0.0.50 127.0.0.50" {
		t.Errorf("via trusted proxy: %q, %v; want the forwarded address", body, err)
	}
	if body, err := get(httpClient("127.0.0.1", nil), url, hdr); err != nil || body != "127.0.0.1 " {
		t.Errorf("from untrusted peer: %q, %v; want its own address and the header stripped", body, err)
	}
}
