package egress

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestPolicyCheck(t *testing.T) {
	p := &Policy{
		PrivatePrefixes:       append(DefaultPrivatePrefixes(), netip.MustParsePrefix("100.101.0.0/16"), netip.MustParsePrefix("64:ff9b::/96")),
		PublicHosts:           []string{"api.example.com", "*.vendor.example", "203.0.113.5", "2001:db8::5"},
		PublicAllowedPrefixes: []netip.Prefix{netip.MustParsePrefix("100.99.0.0/16"), netip.MustParsePrefix("169.254.0.0/16")},
	}
	priv := Upstream{Name: "vllm", Class: EgressPrivate}
	pub := Upstream{Name: "openai", Class: EgressPublic}
	tests := []struct {
		up     Upstream
		host   string
		addr   string
		allow  bool
		reason string // substring of the refusal
	}{
		{priv, "llm.internal", "10.1.2.3", true, ""},
		{priv, "llm.internal", "fd00::5", true, ""},
		{priv, "llm.internal", "::ffff:192.168.0.4", true, ""},
		{priv, "llm.internal", "100.101.3.4", true, ""}, // operator-listed CGNAT
		{priv, "llm.internal", "100.102.3.4", false, "outside the private prefixes"},
		{priv, "llm.internal", "127.0.0.1", false, "outside"},
		{priv, "llm.internal", "8.8.8.8", false, "outside"},
		{priv, "llm.internal", "169.254.169.254", false, "metadata"},
		{priv, "llm.internal", "fd00:ec2::254", false, "metadata"},                         // inside fc00::/7, still refused
		{priv, "llm.internal", "64:ff9b::a00:1", true, ""},                                 // listed NAT64 prefix, private target
		{priv, "llm.internal", "64:ff9b::808:808", false, "8.8.8.8"},                       // listed NAT64 prefix, public target
		{priv, "llm.internal", "2002:a00:1::1", false, "2002:a00:1::1"},                    // 6to4 prefix not listed
		{priv, "llm.internal", "fe80::1%eth0", false, "scoped"},                            //
		{pub, "api.example.com", "8.8.8.8", true, ""},                                      // never dialed: policy only
		{pub, "API.Example.COM.", "2606:4700::1", true, ""},                                // case and trailing dot
		{pub, "a.b.vendor.example", "1.1.1.1", true, ""},                                   //
		{pub, "vendor.example", "1.1.1.1", false, "allowlist"},                             // wildcard needs a label
		{pub, "evilvendor.example", "1.1.1.1", false, "allowlist"},                         //
		{pub, "other.example.com", "8.8.8.8", false, "allowlist"},                          //
		{pub, "203.0.113.5", "203.0.113.5", false, "documentation"},                        // listed literal, but a special address
		{pub, "api.example.com", "10.0.0.1", false, "private prefixes"},                    //
		{pub, "api.example.com", "127.0.0.1", false, "loopback"},                           //
		{pub, "api.example.com", "100.64.0.1", false, "cgnat"},                             //
		{pub, "api.example.com", "100.99.0.1", true, ""},                                   // operator-allowed CGNAT block
		{pub, "api.example.com", "169.254.1.1", true, ""},                                  // operator-allowed link-local
		{pub, "api.example.com", "169.254.169.254", false, "metadata"},                     // ... never metadata
		{pub, "api.example.com", "::ffff:127.0.0.1", false, "loopback"},                    //
		{pub, "api.example.com", "64:ff9b::7f00:1", false, "private prefixes"},             // the NAT64 prefix is listed private
		{pub, "api.example.com", "2002:7f00:1::1", false, "loopback"},                      // 6to4 to loopback
		{pub, "api.example.com", "64:ff9b::a00:1", false, "private"},                       // NAT64 to RFC 1918
		{pub, "api.example.com", "2002:a00:1::1", false, "private"},                        // 6to4 embedding 10.0.0.1
		{pub, "api.example.com", "2002:808:808::1", true, ""},                              // 6to4 embedding a public address
		{pub, "api.example.com", "2001:0:4136:e378:8000:63bf:f5ff:fffe", false, "private"}, // Teredo 10.0.0.1
		{pub, "api.example.com", "fd12::1", false, "private prefixes"},
		{pub, "api.example.com", "0.0.0.0", false, "unspecified"},
		{Upstream{Name: "x", Class: "other"}, "h", "10.0.0.1", false, "unknown egress class"},
	}
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		err := p.Check(tt.up, tt.host, netip.AddrPortFrom(a, 443))
		if tt.allow {
			if err != nil {
				t.Errorf("Check(%s, %s, %s) = %v, want allowed", tt.up.Class, tt.host, tt.addr, err)
			}
			continue
		}
		var de *DeniedError
		if !errors.As(err, &de) {
			t.Errorf("Check(%s, %s, %s) = %v, want *DeniedError", tt.up.Class, tt.host, tt.addr, err)
			continue
		}
		if !strings.Contains(de.Error(), tt.reason) {
			t.Errorf("Check(%s, %s, %s) = %q, want reason containing %q", tt.up.Class, tt.host, tt.addr, de.Error(), tt.reason)
		}
		if de.Upstream != tt.up.Name || de.Host != tt.host {
			t.Errorf("DeniedError fields = %+v", de)
		}
	}
}

func TestZeroPolicyRefusesEverything(t *testing.T) {
	var p Policy
	for _, up := range []Upstream{{Name: "a", Class: EgressPrivate}, {Name: "b", Class: EgressPublic}} {
		for _, s := range []string{"10.0.0.1", "8.8.8.8", "127.0.0.1"} {
			if err := p.Check(up, "h", netip.AddrPortFrom(netip.MustParseAddr(s), 80)); err == nil {
				t.Errorf("zero policy allowed %s upstream to %s", up.Class, s)
			}
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	good := &Policy{
		PrivatePrefixes: DefaultPrivatePrefixes(),
		PublicHosts:     []string{"api.openai.com", "*.openai.azure.com", "203.0.113.7", "2001:db8::1", "host_name.example."},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	bad := []struct {
		p    Policy
		want string
	}{
		{Policy{PublicHosts: []string{""}}, "empty host name"},
		{Policy{PublicHosts: []string{"*."}}, "empty host name"},
		{Policy{PublicHosts: []string{"*.*.example.com"}}, "invalid character"},
		{Policy{PublicHosts: []string{"api.*.example.com"}}, "invalid character"},
		{Policy{PublicHosts: []string{"https://api.example.com"}}, "invalid character"},
		{Policy{PublicHosts: []string{"api.example.com:443"}}, "invalid character"},
		{Policy{PublicHosts: []string{"a..b"}}, "empty or over-long label"},
		{Policy{PublicHosts: []string{"*.10.0.0.1"}}, "wildcard on an IP"},
		{Policy{PrivatePrefixes: []netip.Prefix{{}}}, "private_prefixes[0]"},
		{Policy{PublicAllowedPrefixes: []netip.Prefix{{}}}, "public_allowed_prefixes[0]"},
	}
	for _, tt := range bad {
		err := tt.p.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v, want error containing %q", tt.p, err, tt.want)
		}
	}
}

func TestCheckHostRefusesBeforeResolution(t *testing.T) {
	p := &Policy{PublicHosts: []string{"api.example.com"}}
	err := p.CheckHost(Upstream{Name: "u", Class: EgressPublic}, "evil.example.com")
	var de *DeniedError
	if !errors.As(err, &de) || de.Addr.IsValid() {
		t.Fatalf("CheckHost = %v, want *DeniedError without an address", err)
	}
	if err := p.CheckHost(Upstream{Name: "u", Class: EgressPrivate}, "anything"); err != nil {
		t.Fatalf("private upstreams are not host-restricted: %v", err)
	}
}

// BenchmarkCheck measures the per-address dial check.
func BenchmarkCheck(b *testing.B) {
	p := DefaultPolicy()
	p.PublicHosts = []string{"api.openai.com", "*.openai.azure.com", "api.anthropic.com"}
	b.Run("private", func(b *testing.B) {
		up := Upstream{Name: "vllm", Class: EgressPrivate}
		ap := netip.MustParseAddrPort("10.1.2.3:8000")
		b.ReportAllocs()
		for b.Loop() {
			if err := p.Check(up, "vllm.internal", ap); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("public", func(b *testing.B) {
		up := Upstream{Name: "azure", Class: EgressPublic}
		ap := netip.MustParseAddrPort("[2606:4700::1]:443")
		b.ReportAllocs()
		for b.Loop() {
			if err := p.Check(up, "east.openai.azure.com", ap); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("denied", func(b *testing.B) {
		up := Upstream{Name: "azure", Class: EgressPublic}
		ap := netip.MustParseAddrPort("[2002:a00:1::1]:443")
		b.ReportAllocs()
		for b.Loop() {
			if err := p.Check(up, "api.openai.com", ap); err == nil {
				b.Fatal("allowed")
			}
		}
	})
}
