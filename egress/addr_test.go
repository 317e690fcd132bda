package egress

import (
	"net/netip"
	"testing"
)

func mapped(v4 netip.Addr) netip.Addr { return netip.AddrFrom16(v4.As16()) }

func nat64(v4 netip.Addr) netip.Addr {
	b := nat64Range.Addr().As16()
	v := v4.As4()
	copy(b[12:], v[:])
	return netip.AddrFrom16(b)
}

func nat64Local(v4 netip.Addr) netip.Addr {
	b := netip.MustParseAddr("64:ff9b:1:abcd::").As16()
	v := v4.As4()
	copy(b[12:], v[:])
	return netip.AddrFrom16(b)
}

func sixToFour(v4 netip.Addr) netip.Addr {
	b := netip.MustParseAddr("2002::1").As16()
	v := v4.As4()
	copy(b[2:6], v[:])
	return netip.AddrFrom16(b)
}

// teredo builds a Teredo address for client v4 behind server 65.54.227.120
// (the RFC 4380 example server).
func teredo(v4 netip.Addr) netip.Addr {
	b := netip.MustParseAddr("2001:0:4136:e378:8000:63bf::").As16()
	v := v4.As4()
	for i := range 4 {
		b[12+i] = v[i] ^ 0xff
	}
	return netip.AddrFrom16(b)
}

func TestClassify(t *testing.T) {
	tests := []struct {
		addr string
		want Class
	}{
		{"0.0.0.0", Unspecified},
		{"::", Unspecified},
		{"0.1.2.3", ThisNetwork},
		{"127.0.0.1", Loopback},
		{"127.255.255.254", Loopback},
		{"::1", Loopback},
		{"10.0.0.1", Private},
		{"172.16.0.1", Private},
		{"172.31.255.255", Private},
		{"172.32.0.1", Public},
		{"192.168.1.1", Private},
		{"fd12:3456::1", UniqueLocal},
		{"fc00::1", UniqueLocal},
		{"100.64.0.1", CGNAT},
		{"100.127.255.255", CGNAT},
		{"100.128.0.1", Public},
		{"169.254.1.1", LinkLocal},
		{"fe80::1", LinkLocal},
		{"fe80::1%eth0", LinkLocal},
		{"169.254.169.254", Metadata},
		{"169.254.170.2", Metadata},
		{"fd00:ec2::254", Metadata},
		{"100.100.100.200", Metadata},
		{"168.63.129.16", Metadata},
		{"224.0.0.1", Multicast},
		{"239.255.255.250", Multicast},
		{"ff02::1", Multicast},
		{"255.255.255.255", Broadcast},
		{"240.0.0.1", Reserved},
		{"192.0.0.8", Reserved},
		{"192.88.99.1", Reserved},
		{"192.0.2.1", Documentation},
		{"198.51.100.7", Documentation},
		{"203.0.113.9", Documentation},
		{"2001:db8::1", Documentation},
		{"3fff:1::1", Documentation},
		{"198.18.0.1", Benchmark},
		{"198.19.255.255", Benchmark},
		{"2001:2::1", Benchmark},
		{"::1.2.3.4", Reserved},    // deprecated IPv4-compatible
		{"100::1", Reserved},       // discard-only
		{"2001:10::1", Reserved},   // ORCHID
		{"fec0::1", Reserved},      // site-local
		{"4000::1", Reserved},      // outside 2000::/3
		{"5f00::1", Reserved},      // SRv6 SIDs, outside 2000::/3
		{"2606:4700::1", Public},   // global unicast
		{"8.8.8.8", Public},        // never dialed: a classification table only
		{"1.1.1.1", Public},        //
		{"2a00:1450::1", Public},   //
		{"172.15.255.255", Public}, // just below 172.16/12

		// IPv4-mapped: classified as the IPv4 address.
		{"::ffff:127.0.0.1", Loopback},
		{"::ffff:10.1.2.3", Private},
		{"::ffff:169.254.169.254", Metadata},
		{"::ffff:100.64.0.1", CGNAT},
		{"::ffff:8.8.8.8", Public},
		{"::ffff:0.0.0.0", Unspecified},

		// NAT64, well-known and local-use.
		{"64:ff9b::10.0.0.1", Private},
		{"64:ff9b::127.0.0.1", Loopback},
		{"64:ff9b::169.254.169.254", Metadata},
		{"64:ff9b::8.8.8.8", Public},
		{"64:ff9b:1::a00:1", Private},
		{"64:ff9b:1:ffff::808:808", Public},

		// 6to4: bits 16-47.
		{"2002:a00:1::1", Private},         // 10.0.0.1
		{"2002:7f00:1::", Loopback},        // 127.0.0.1
		{"2002:a9fe:a9fe::1", Metadata},    // 169.254.169.254
		{"2002:6440:1::1", CGNAT},          // 100.64.0.1
		{"2002:808:808::1", Public},        // 8.8.8.8
		{"2002:c000:22d::", Documentation}, // 192.0.2.45

		// Teredo: client = last 32 bits XOR 0xffffffff.
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", Documentation}, // RFC 4380 example: 192.0.2.45
		{"2001:0:4136:e378:8000:63bf:f5ff:fffe", Private},       // 10.0.0.1
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", Loopback},      // 127.0.0.1
		{"2001:0:4136:e378:8000:63bf:f7f7:f7f7", Public},        // 8.8.8.8
	}
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		if got := Classify(a); got != tt.want {
			t.Errorf("Classify(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if got := Classify(netip.Addr{}); got != Invalid {
		t.Errorf("Classify(zero) = %v, want invalid", got)
	}
}

func TestEmbeddedIPv4(t *testing.T) {
	v4 := netip.MustParseAddr("10.20.30.40")
	for _, a := range []netip.Addr{mapped(v4), nat64(v4), nat64Local(v4), sixToFour(v4), teredo(v4)} {
		got, ok := EmbeddedIPv4(a)
		if !ok || got != v4 {
			t.Errorf("EmbeddedIPv4(%s) = %s, %v; want %s", a, got, ok, v4)
		}
	}
	for _, s := range []string{"10.20.30.40", "2606:4700::1", "fd00::1", "::1"} {
		if got, ok := EmbeddedIPv4(netip.MustParseAddr(s)); ok {
			t.Errorf("EmbeddedIPv4(%s) = %s, want none", s, got)
		}
	}
}

func TestClassString(t *testing.T) {
	for c := Invalid; c <= Public; c++ {
		if s := c.String(); s == "" || s == "unknown" {
			t.Errorf("Class(%d) has no name", c)
		}
	}
	if Class(200).String() != "unknown" {
		t.Error("out-of-range class should be unknown")
	}
}

// namedRanges is every range a Public address must be outside of (the
// embedding prefixes excepted: those are classified by what they embed).
func namedRanges() []netip.Prefix {
	var ps []netip.Prefix
	ps = append(ps, CGNATRange(), ULARange(), ThisNetworkRange())
	ps = append(ps, RFC1918Ranges()...)
	ps = append(ps, LoopbackRanges()...)
	ps = append(ps, LinkLocalRanges()...)
	ps = append(ps, MulticastRanges()...)
	ps = append(ps, DocumentationRanges()...)
	ps = append(ps, BenchmarkRanges()...)
	for _, r := range ReservedRanges() {
		if !r.Overlaps(TeredoRange()) {
			ps = append(ps, r)
		}
	}
	for _, a := range append(UnspecifiedAddrs(), MetadataAddrs()...) {
		ps = append(ps, netip.PrefixFrom(a, a.BitLen()))
	}
	return ps
}

func FuzzClassify(f *testing.F) {
	f.Add([]byte{10, 0, 0, 1}, []byte{0x20, 0x01, 0, 0, 0x41, 0x36, 0xe3, 0x78, 0x80, 0, 0x63, 0xbf, 0xf5, 0xff, 0xff, 0xfe})
	f.Add([]byte{8, 8, 8, 8}, []byte{0x20, 0x02, 0x0a, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{169, 254, 169, 254}, []byte{0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1})
	f.Add([]byte{100, 64, 0, 1}, []byte{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	ranges := namedRanges()
	pub := Upstream{Name: "pub", Class: EgressPublic}
	policy := DefaultPolicy()
	policy.PublicHosts = []string{"h.test"}

	f.Fuzz(func(t *testing.T, b4, b16 []byte) {
		var a4 [4]byte
		var a16 [16]byte
		copy(a4[:], b4)
		copy(a16[:], b16)
		v4 := netip.AddrFrom4(a4)
		a6 := netip.AddrFrom16(a16)

		// Every encoding of an IPv4 address classifies as the address.
		c4 := Classify(v4)
		for _, enc := range []netip.Addr{mapped(v4), nat64(v4), nat64Local(v4), sixToFour(v4), teredo(v4)} {
			if got := Classify(enc); got != c4 {
				t.Fatalf("Classify(%s) = %v, but Classify(%s) = %v", enc, got, v4, c4)
			}
		}
		// Mapped and unmapped agree for any 16 bytes.
		if got, want := Classify(a6), Classify(a6.Unmap()); got != want {
			t.Fatalf("Classify(%s) = %v, Classify(unmapped) = %v", a6, got, want)
		}
		// Zones never change the class.
		if got, want := Classify(a6.WithZone("eth0")), Classify(a6); got != want {
			t.Fatalf("zone changed class of %s: %v vs %v", a6, got, want)
		}

		for _, a := range []netip.Addr{v4, a6} {
			c := Classify(a)
			if c.String() == "unknown" {
				t.Fatalf("Classify(%s) = out-of-range class %d", a, c)
			}
			dests := []netip.Addr{a.Unmap()}
			if e, ok := EmbeddedIPv4(a); ok {
				dests = append(dests, e)
			}
			if c == Public {
				// Public agrees with the standard library's predicates and
				// lies outside every named range, for the address and for
				// what it embeds.
				for _, d := range dests {
					if d.IsLoopback() || d.IsPrivate() || d.IsLinkLocalUnicast() || d.IsLinkLocalMulticast() ||
						d.IsMulticast() || d.IsUnspecified() || d.IsInterfaceLocalMulticast() {
						t.Fatalf("Classify(%s) = public, but %s is special to net/netip", a, d)
					}
					for _, r := range ranges {
						if r.Contains(d) {
							t.Fatalf("Classify(%s) = public, but %s is inside %s", a, d, r)
						}
					}
				}
			}
			// The default policy admits a public upstream exactly to Public
			// addresses.
			err := policy.Check(pub, "h.test", netip.AddrPortFrom(a, 443))
			if (err == nil) != (c == Public) {
				t.Fatalf("Check(public, %s) = %v, but Classify = %v", a, err, c)
			}
		}
	})
}

func BenchmarkClassify(b *testing.B) {
	addrs := []netip.Addr{
		netip.MustParseAddr("8.8.8.8"),
		netip.MustParseAddr("10.0.0.1"),
		netip.MustParseAddr("2606:4700::1"),
		netip.MustParseAddr("2002:a00:1::1"),
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		Classify(addrs[i%len(addrs)])
	}
}
