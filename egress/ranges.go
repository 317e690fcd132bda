package egress

import "net/netip"

// Named special-purpose ranges, from the IANA IPv4 and IPv6 Special-Purpose
// Address Registries. Each function returns a fresh value, so callers may
// keep or modify what they get.

var (
	cgnatRange      = netip.MustParsePrefix("100.64.0.0/10")
	nat64Range      = netip.MustParsePrefix("64:ff9b::/96")
	nat64LocalRange = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFourRange  = netip.MustParsePrefix("2002::/16")
	teredoRange     = netip.MustParsePrefix("2001::/32")
	ulaRange        = netip.MustParsePrefix("fc00::/7")
	mappedRange     = netip.MustParsePrefix("::ffff:0:0/96")
	thisNetRange    = netip.MustParsePrefix("0.0.0.0/8")
)

// CGNATRange returns 100.64.0.0/10, the carrier-grade NAT shared address
// space (RFC 6598). Tailscale and many clouds use it internally.
func CGNATRange() netip.Prefix { return cgnatRange }

// NAT64Range returns 64:ff9b::/96, the well-known NAT64 prefix (RFC 6052).
// The IPv4 destination is the address's last 32 bits.
func NAT64Range() netip.Prefix { return nat64Range }

// NAT64LocalRange returns 64:ff9b:1::/48, the local-use NAT64 prefix
// (RFC 8215).
func NAT64LocalRange() netip.Prefix { return nat64LocalRange }

// SixToFourRange returns 2002::/16, the 6to4 prefix (RFC 3056). Bits 16–47
// hold the IPv4 address of the site.
func SixToFourRange() netip.Prefix { return sixToFourRange }

// TeredoRange returns 2001::/32, the Teredo prefix (RFC 4380). The client's
// IPv4 address is the last 32 bits XOR 0xffffffff.
func TeredoRange() netip.Prefix { return teredoRange }

// ULARange returns fc00::/7, IPv6 unique local addresses (RFC 4193).
func ULARange() netip.Prefix { return ulaRange }

// IPv4MappedRange returns ::ffff:0:0/96, IPv4-mapped IPv6 addresses
// (RFC 4291).
func IPv4MappedRange() netip.Prefix { return mappedRange }

// ThisNetworkRange returns 0.0.0.0/8 (RFC 791). Linux connects 0.0.0.0 to
// the local host, so it is never a safe destination.
func ThisNetworkRange() netip.Prefix { return thisNetRange }

// RFC1918Ranges returns the IPv4 private networks 10/8, 172.16/12 and
// 192.168/16.
func RFC1918Ranges() []netip.Prefix {
	return prefixes("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
}

// LoopbackRanges returns 127.0.0.0/8 and ::1/128.
func LoopbackRanges() []netip.Prefix { return prefixes("127.0.0.0/8", "::1/128") }

// LinkLocalRanges returns 169.254.0.0/16 and fe80::/10.
func LinkLocalRanges() []netip.Prefix { return prefixes("169.254.0.0/16", "fe80::/10") }

// MulticastRanges returns 224.0.0.0/4 and ff00::/8.
func MulticastRanges() []netip.Prefix { return prefixes("224.0.0.0/4", "ff00::/8") }

// DocumentationRanges returns the address blocks reserved for examples:
// TEST-NET-1/2/3 (RFC 5737), 2001:db8::/32 (RFC 3849) and 3fff::/20
// (RFC 9637).
func DocumentationRanges() []netip.Prefix {
	return prefixes("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")
}

// BenchmarkRanges returns the network benchmarking blocks 198.18.0.0/15
// (RFC 2544) and 2001:2::/48 (RFC 5180).
func BenchmarkRanges() []netip.Prefix { return prefixes("198.18.0.0/15", "2001:2::/48") }

// UnspecifiedAddrs returns 0.0.0.0 and ::.
func UnspecifiedAddrs() []netip.Addr {
	return []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
}

// MetadataAddrs returns the cloud instance-metadata and platform endpoints
// that a gateway must never reach, whatever the policy says: AWS, GCP and
// Azure IMDS (169.254.169.254), AWS ECS task metadata (169.254.170.2), AWS
// IMDS over IPv6 (fd00:ec2::254), Alibaba Cloud (100.100.100.200) and the
// Azure WireServer (168.63.129.16).
func MetadataAddrs() []netip.Addr {
	return []netip.Addr{
		netip.MustParseAddr("169.254.169.254"),
		netip.MustParseAddr("169.254.170.2"),
		netip.MustParseAddr("fd00:ec2::254"),
		netip.MustParseAddr("100.100.100.200"),
		netip.MustParseAddr("168.63.129.16"),
	}
}

// ReservedRanges returns the remaining special-purpose blocks that are not
// globally reachable: 240.0.0.0/4 (future use, includes the limited
// broadcast address), 192.0.0.0/24 (IETF protocol assignments),
// 192.88.99.0/24 (deprecated 6to4 relay anycast), ::/96 (deprecated
// IPv4-compatible), 100::/64 (discard-only), 2001::/23 (IETF protocol
// assignments; Teredo and the benchmark block inside it are classified on
// their own), fec0::/10 (deprecated site-local), and every IPv6 address
// outside 2000::/3 that no other range names.
func ReservedRanges() []netip.Prefix {
	return prefixes("240.0.0.0/4", "192.0.0.0/24", "192.88.99.0/24",
		"::/96", "100::/64", "2001::/23", "fec0::/10")
}

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}
