package egress

import (
	"encoding/binary"
	"net/netip"
)

// Class describes what kind of destination an address is.
type Class uint8

// Address classes. Every class except Public names a destination that is
// not a public Internet host.
const (
	Invalid       Class = iota // the zero netip.Addr
	Unspecified                // 0.0.0.0, ::
	ThisNetwork                // 0.0.0.0/8 other than 0.0.0.0
	Loopback                   // 127.0.0.0/8, ::1
	Private                    // RFC 1918: 10/8, 172.16/12, 192.168/16
	UniqueLocal                // fc00::/7
	CGNAT                      // 100.64.0.0/10
	LinkLocal                  // 169.254.0.0/16, fe80::/10
	Metadata                   // cloud metadata endpoints, see MetadataAddrs
	Multicast                  // 224.0.0.0/4, ff00::/8
	Broadcast                  // 255.255.255.255
	Documentation              // see DocumentationRanges
	Benchmark                  // 198.18.0.0/15, 2001:2::/48
	Reserved                   // see ReservedRanges
	Public                     // everything else: a global unicast address
)

var classNames = [...]string{
	Invalid:       "invalid",
	Unspecified:   "unspecified",
	ThisNetwork:   "this-network",
	Loopback:      "loopback",
	Private:       "private",
	UniqueLocal:   "unique-local",
	CGNAT:         "cgnat",
	LinkLocal:     "link-local",
	Metadata:      "metadata",
	Multicast:     "multicast",
	Broadcast:     "broadcast",
	Documentation: "documentation",
	Benchmark:     "benchmark",
	Reserved:      "reserved",
	Public:        "public",
}

// String returns the class's name, such as "cgnat" or "public".
func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "unknown"
}

type rangeClass struct {
	p netip.Prefix
	c Class
}

func single(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// Tables are checked in order; the first match wins, so narrower blocks come
// before the blocks that contain them.
var (
	table4 = []rangeClass{
		{single(netip.IPv4Unspecified()), Unspecified},
		{thisNetRange, ThisNetwork},
		{netip.MustParsePrefix("127.0.0.0/8"), Loopback},
		{single(netip.MustParseAddr("169.254.169.254")), Metadata},
		{single(netip.MustParseAddr("169.254.170.2")), Metadata},
		{single(netip.MustParseAddr("100.100.100.200")), Metadata},
		{single(netip.MustParseAddr("168.63.129.16")), Metadata},
		{netip.MustParsePrefix("169.254.0.0/16"), LinkLocal},
		{netip.MustParsePrefix("10.0.0.0/8"), Private},
		{netip.MustParsePrefix("172.16.0.0/12"), Private},
		{netip.MustParsePrefix("192.168.0.0/16"), Private},
		{cgnatRange, CGNAT},
		{netip.MustParsePrefix("192.0.0.0/24"), Reserved},
		{netip.MustParsePrefix("192.0.2.0/24"), Documentation},
		{netip.MustParsePrefix("198.51.100.0/24"), Documentation},
		{netip.MustParsePrefix("203.0.113.0/24"), Documentation},
		{netip.MustParsePrefix("198.18.0.0/15"), Benchmark},
		{netip.MustParsePrefix("192.88.99.0/24"), Reserved},
		{netip.MustParsePrefix("224.0.0.0/4"), Multicast},
		{single(netip.MustParseAddr("255.255.255.255")), Broadcast},
		{netip.MustParsePrefix("240.0.0.0/4"), Reserved},
	}
	table6 = []rangeClass{
		{single(netip.IPv6Unspecified()), Unspecified},
		{single(netip.IPv6Loopback()), Loopback},
		{netip.MustParsePrefix("::/96"), Reserved},
		{single(netip.MustParseAddr("fd00:ec2::254")), Metadata},
		{netip.MustParsePrefix("fe80::/10"), LinkLocal},
		{netip.MustParsePrefix("fec0::/10"), Reserved},
		{ulaRange, UniqueLocal},
		{netip.MustParsePrefix("ff00::/8"), Multicast},
		{netip.MustParsePrefix("2001:db8::/32"), Documentation},
		{netip.MustParsePrefix("3fff::/20"), Documentation},
		{netip.MustParsePrefix("2001:2::/48"), Benchmark},
		{netip.MustParsePrefix("2001::/23"), Reserved},
		{netip.MustParsePrefix("100::/64"), Reserved},
	}
	globalUnicast6 = netip.MustParsePrefix("2000::/3")

	// index4 and index6 hold, for each value of an address's first byte,
	// the table entries that can contain it, in table order.
	index4 = indexByFirstByte(table4, false)
	index6 = indexByFirstByte(table6, true)
)

func indexByFirstByte(t []rangeClass, v6 bool) (idx [256][]rangeClass) {
	for b := range 256 {
		var block netip.Prefix
		if v6 {
			block = netip.PrefixFrom(netip.AddrFrom16([16]byte{byte(b)}), 8)
		} else {
			block = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(b)}), 8)
		}
		for _, r := range t {
			if r.p.Overlaps(block) {
				idx[b] = append(idx[b], r)
			}
		}
	}
	return idx
}

// Classify reports what kind of destination a is.
//
// Addresses that carry an IPv4 address inside an IPv6 one are classified by
// the IPv4 address they lead to (see EmbeddedIPv4): IPv4-mapped
// (::ffff:a.b.c.d), NAT64 (64:ff9b::/96 and 64:ff9b:1::/48), 6to4
// (2002::/16) and Teredo (2001::/32, by the client address). So a 6to4
// address embedding 10.0.0.1 is Private, and one embedding a public IPv4
// address is Public. Any zone is ignored.
func Classify(a netip.Addr) Class {
	if !a.IsValid() {
		return Invalid
	}
	a = a.WithZone("")
	if v4, ok := EmbeddedIPv4(a); ok {
		a = v4
	}
	if a.Is4() {
		return lookup(index4[a.As4()[0]], a, Public)
	}
	t := index6[a.As16()[0]]
	if !globalUnicast6.Contains(a) {
		return lookup(t, a, Reserved)
	}
	return lookup(t, a, Public)
}

func lookup(t []rangeClass, a netip.Addr, def Class) Class {
	for _, r := range t {
		if r.p.Contains(a) {
			return r.c
		}
	}
	return def
}

// EmbeddedIPv4 returns the IPv4 address that traffic to a is delivered to
// when a is an IPv4 address in IPv6 clothing, and false otherwise:
//
//   - IPv4-mapped ::ffff:a.b.c.d: a.b.c.d;
//   - NAT64 64:ff9b::/96 and 64:ff9b:1::/48: the last 32 bits. RFC 6052
//     lets a local-use translator configured with a /48–/64 prefix put the
//     IPv4 address elsewhere; Sluice reads the /96 layout, the one in
//     common use, and an operator with another layout must not list the
//     local-use prefix as public;
//   - 6to4 2002:AABB:CCDD::/48: AA.BB.CC.DD (bits 16–47);
//   - Teredo 2001:0:SSSS:SSSS:flags:port:CCCC:CCCC: the client address,
//     the last 32 bits XOR 0xffffffff.
func EmbeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	a = a.WithZone("")
	b := a.As16()
	switch {
	case a.Is4In6():
		return a.Unmap(), true
	case nat64Range.Contains(a), nat64LocalRange.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFourRange.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	case teredoRange.Contains(a):
		var v [4]byte
		binary.BigEndian.PutUint32(v[:], binary.BigEndian.Uint32(b[12:16])^0xffffffff)
		return netip.AddrFrom4(v), true
	}
	return netip.Addr{}, false
}
