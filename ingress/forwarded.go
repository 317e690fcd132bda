package ingress

import (
	"net/http"
	"net/netip"
	"strings"
)

// forwardingHeaders are the request headers by which a client could claim
// another address, host or scheme than the connection shows.
var forwardingHeaders = []string{
	"Forwarded",
	"X-Forwarded-For",
	"X-Forwarded-Host",
	"X-Forwarded-Proto",
	"X-Forwarded-Port",
	"X-Forwarded-Prefix",
	"X-Forwarded-Ssl",
	"X-Real-Ip",
	"X-Client-Ip",
	"X-Cluster-Client-Ip",
	"True-Client-Ip",
	"Cf-Connecting-Ip",
	"Fastly-Client-Ip",
}

// StripForwarding deletes every forwarding header (Forwarded,
// X-Forwarded-*, X-Real-IP and the like) from h. Call it on requests from
// peers that are not trusted proxies, so nothing downstream — Sluice's own
// handlers or an upstream — believes what the client wrote there.
func StripForwarding(h http.Header) {
	for _, k := range forwardingHeaders {
		h.Del(k)
	}
}

// ClientIP returns the address of the client that sent r. peer is the
// address the request arrived from (ClientAddrFrom of the request's
// context). Unless peer is in trusted, the headers are ignored and peer's
// address is returned.
//
// From a trusted proxy, X-Forwarded-For and RFC 7239 Forwarded are read from
// right to left, skipping addresses in trusted, and the first other address
// is the client; if every hop is trusted, the leftmost is. Entries a client
// wrote itself lie to the left of that point and are never reached.
//
// The zero Addr means the client cannot be told: a hop before the first
// untrusted one is not an IP address ("unknown", an obfuscated identifier, a
// Forwarded element without for=, garbage), or both headers are present and
// name different clients — a proxy maintains one of them and the client may
// have forged the other, and Sluice cannot know which. Treat it as refusal
// wherever the address matters. A Forwarded header with no for= parameter at
// all (a proxy recording only proto=) is ignored.
func ClientIP(r *http.Request, peer netip.AddrPort, trusted []netip.Prefix) netip.Addr {
	p := normalize(peer.Addr())
	set := newPrefixSet(trusted)
	if !set.contains(p) {
		return p
	}
	xff, hasXFF := xffHops(r.Header)
	fwd, hasFwd := forwardedHops(r.Header)
	switch {
	case hasXFF && hasFwd:
		a, b := walkHops(xff, set), walkHops(fwd, set)
		if a != b {
			return netip.Addr{}
		}
		return a
	case hasXFF:
		return walkHops(xff, set)
	case hasFwd:
		return walkHops(fwd, set)
	}
	return p
}

// walkHops returns the rightmost hop not in trusted, the leftmost hop if all
// are trusted, and the zero Addr at the first hop (from the right) that is
// not an address.
func walkHops(hops []string, trusted prefixSet) netip.Addr {
	var a netip.Addr
	for i := len(hops) - 1; i >= 0; i-- {
		var ok bool
		if a, ok = parseHop(hops[i]); !ok {
			return netip.Addr{}
		}
		if !trusted.contains(a) {
			return a
		}
	}
	return a
}

// parseHop parses one hop: an IP address, optionally with a port, with
// IPv6 optionally bracketed ("[2001:db8::1]", "[2001:db8::1]:443",
// "192.0.2.1:80").
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return normalize(a), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return normalize(ap.Addr()), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return normalize(a), true
		}
	}
	return netip.Addr{}, false
}

// xffHops splits every X-Forwarded-For line, in order, into its hops.
func xffHops(h http.Header) ([]string, bool) {
	lines := h.Values("X-Forwarded-For")
	if len(lines) == 0 {
		return nil, false
	}
	var hops []string
	for _, l := range lines {
		hops = append(hops, strings.Split(l, ",")...)
	}
	return hops, true
}

// forwardedHops returns the for= value of each Forwarded element, in order;
// an element without for= (or one that does not parse) gives an empty hop,
// which walkHops treats as unknown. ok is false when no element has for=.
func forwardedHops(h http.Header) (hops []string, ok bool) {
	for _, line := range h.Values("Forwarded") {
		for _, elem := range splitQuoted(line, ',') {
			hop := ""
			for _, pair := range splitQuoted(elem, ';') {
				name, value, found := strings.Cut(strings.TrimSpace(pair), "=")
				if !found || !strings.EqualFold(strings.TrimSpace(name), "for") {
					continue
				}
				hop, ok = unquote(strings.TrimSpace(value)), true
			}
			hops = append(hops, hop)
		}
	}
	return hops, ok
}

// splitQuoted splits s at sep outside double-quoted strings.
func splitQuoted(s string, sep byte) []string {
	var parts []string
	inQuote, escaped, start := false, false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			escaped = false
		case inQuote && c == '\\':
			escaped = true
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// unquote removes the quotes and backslash escapes of an RFC 7230
// quoted-string; a token is returned as is.
func unquote(s string) string {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s
	}
	s = s[1 : len(s)-1]
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
