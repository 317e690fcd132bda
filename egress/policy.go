package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// EgressClass says which side of the data boundary an upstream is on.
type EgressClass string

const (
	// EgressPrivate upstreams run inside the operator's network and may
	// receive sensitive requests. They may only dial Policy.PrivatePrefixes.
	EgressPrivate EgressClass = "private"
	// EgressPublic upstreams are third-party services on the Internet. They
	// may only dial allowlisted host names that resolve to public addresses.
	EgressPublic EgressClass = "public"
)

// Upstream is the part of an upstream's configuration the egress policy
// needs.
type Upstream struct {
	Name  string
	Class EgressClass
}

// Policy says where upstreams may connect. The zero Policy refuses every
// destination; DefaultPolicy returns the usual starting point.
//
// For every address a connection would use, and for the IPv4 address it
// embeds if any (see EmbeddedIPv4), the rules are:
//
//   - cloud metadata endpoints (MetadataAddrs) are always refused;
//   - a private upstream may dial the address only if it is inside
//     PrivatePrefixes;
//   - a public upstream may dial only if its host name matches PublicHosts,
//     and the address is inside PublicAllowedPrefixes, or else is not inside
//     PrivatePrefixes and Classify reports it Public.
type Policy struct {
	// PrivatePrefixes are the networks private upstreams may reach. They
	// are fully operator-defined: DefaultPrivatePrefixes returns RFC 1918
	// and ULA, and tests use narrow sets such as 127.0.0.1/32.
	PrivatePrefixes []netip.Prefix

	// PublicHosts is the allowlist of host names public upstreams may
	// connect to. An entry is an exact name ("api.openai.com"), an IP
	// literal, or "*.suffix", which matches any name with at least one
	// more label in front of ".suffix" but not "suffix" itself. Matching
	// ignores case and a trailing dot.
	PublicHosts []string

	// PublicAllowedPrefixes are special-purpose ranges (CGNAT, a reserved
	// block, a loopback address in tests) that public upstreams may dial
	// even though Classify does not report them Public. Metadata endpoints
	// stay refused.
	PublicAllowedPrefixes []netip.Prefix
}

// DefaultPrivatePrefixes returns RFC 1918 and fc00::/7.
func DefaultPrivatePrefixes() []netip.Prefix {
	return append(RFC1918Ranges(), ULARange())
}

// DefaultPolicy returns a policy whose private set is DefaultPrivatePrefixes
// and whose public allowlist is empty.
func DefaultPolicy() *Policy {
	return &Policy{PrivatePrefixes: DefaultPrivatePrefixes()}
}

// Validate reports configuration mistakes: invalid prefixes and malformed
// host patterns.
func (p *Policy) Validate() error {
	var errs []error
	for i, pr := range p.PrivatePrefixes {
		if !pr.IsValid() {
			errs = append(errs, fmt.Errorf("private_prefixes[%d]: invalid prefix", i))
		}
	}
	for i, pr := range p.PublicAllowedPrefixes {
		if !pr.IsValid() {
			errs = append(errs, fmt.Errorf("public_allowed_prefixes[%d]: invalid prefix", i))
		}
	}
	for i, h := range p.PublicHosts {
		if err := validHostPattern(h); err != nil {
			errs = append(errs, fmt.Errorf("public_hosts[%d] %q: %w", i, h, err))
		}
	}
	return errors.Join(errs...)
}

func validHostPattern(h string) error {
	name := strings.TrimPrefix(h, "*.")
	if name == "" {
		return errors.New("empty host name")
	}
	if _, err := netip.ParseAddr(name); err == nil {
		if name != h {
			return errors.New("wildcard on an IP address")
		}
		return nil
	}
	if len(name) > 253 {
		return errors.New("host name longer than 253 bytes")
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if label == "" || len(label) > 63 {
			return errors.New("empty or over-long label")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("invalid character %q (use exact names or a leading \"*.\")", c)
			}
		}
	}
	return nil
}

// DeniedError is returned when the policy refuses a destination. Callers
// find it with errors.As, also through *url.Error.
type DeniedError struct {
	Upstream string         // the upstream's configured name
	Host     string         // the host name being connected to
	Addr     netip.AddrPort // the refused address; zero if the host was refused before resolution
	Reason   string
}

func (e *DeniedError) Error() string {
	if e.Addr.IsValid() {
		return fmt.Sprintf("egress denied: upstream %q, host %q, address %s: %s", e.Upstream, e.Host, e.Addr, e.Reason)
	}
	return fmt.Sprintf("egress denied: upstream %q, host %q: %s", e.Upstream, e.Host, e.Reason)
}

// CheckHost reports whether up may connect to host at all, before any
// resolution: public upstreams must match PublicHosts. It returns a
// *DeniedError or nil.
func (p *Policy) CheckHost(up Upstream, host string) error {
	switch up.Class {
	case EgressPrivate:
		return nil
	case EgressPublic:
		if p.hostAllowed(host) {
			return nil
		}
		return &DeniedError{Upstream: up.Name, Host: host, Reason: "host not on the public allowlist"}
	default:
		return &DeniedError{Upstream: up.Name, Host: host, Reason: fmt.Sprintf("unknown egress class %q", up.Class)}
	}
}

// Check reports whether up may connect to addr on behalf of host. It
// returns a *DeniedError or nil. Check does not resolve anything; it is the
// test applied to every address that is about to be dialed.
func (p *Policy) Check(up Upstream, host string, addr netip.AddrPort) error {
	if err := p.CheckHost(up, host); err != nil {
		return err
	}
	deny := func(format string, args ...any) error {
		return &DeniedError{Upstream: up.Name, Host: host, Addr: addr, Reason: fmt.Sprintf(format, args...)}
	}
	a := addr.Addr()
	if !a.IsValid() {
		return deny("invalid address")
	}
	if a.Zone() != "" {
		return deny("scoped address")
	}
	a = a.Unmap()
	dest := [2]netip.Addr{a}
	n := 1
	if v4, ok := EmbeddedIPv4(a); ok {
		dest[1] = v4
		n = 2
	}
	for _, d := range dest[:n] {
		if Classify(d) == Metadata {
			return deny("%s is a cloud metadata endpoint", d)
		}
	}
	for _, d := range dest[:n] {
		switch up.Class {
		case EgressPrivate:
			if !containsAny(p.PrivatePrefixes, d) {
				return deny("%s is outside the private prefixes", d)
			}
		case EgressPublic:
			if containsAny(p.PublicAllowedPrefixes, d) {
				continue
			}
			if containsAny(p.PrivatePrefixes, d) {
				return deny("%s is inside the private prefixes", d)
			}
			if c := Classify(d); c != Public {
				return deny("%s is a %s address", d, c)
			}
		}
	}
	return nil
}

func containsAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (p *Policy) hostAllowed(host string) bool {
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return false
	}
	ip, isIP := parseIP(host)
	for _, pat := range p.PublicHosts {
		pat = strings.TrimSuffix(pat, ".")
		if isIP {
			if pa, ok := parseIP(pat); ok && pa.Unmap() == ip.Unmap() {
				return true
			}
			continue
		}
		if suffix, ok := strings.CutPrefix(pat, "*"); ok {
			// suffix is ".example.com"; require at least one label before it.
			if len(host) > len(suffix) && strings.EqualFold(host[len(host)-len(suffix):], suffix) {
				return true
			}
			continue
		}
		if strings.EqualFold(host, pat) {
			return true
		}
	}
	return false
}

// parseIP parses s if it can be an IP literal, without paying for
// netip.ParseAddr's error on ordinary host names.
func parseIP(s string) (netip.Addr, bool) {
	if s == "" || !strings.Contains(s, ":") && (s[len(s)-1] < '0' || s[len(s)-1] > '9') {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	return a, err == nil
}
