// Package ingress is Sluice's front door: it decides which network peers may
// talk to the gateway at all, before a single TLS or HTTP byte is read.
//
// Listen returns a net.Listener whose Accept closes connections from
// addresses outside the configured allowlist, optionally honours PROXY
// protocol v2 headers from trusted load balancers, and wraps the admitted
// connections in TLS (with client certificates checked for expiry and
// revocation on every handshake, resumed ones included). The effective client
// address travels with the connection into each request's context:
//
//	ln, err := ingress.Listen(cfg, ingress.Options{OnRefused: countRefusal})
//	if err != nil { ... }
//	srv := &http.Server{Handler: h, ConnContext: ingress.ConnContext}
//	go srv.Serve(ln) // not ServeTLS: the listener already speaks TLS
//
//	// in a handler:
//	client := ingress.ClientAddrFrom(r.Context())
//
// For HTTP proxies in front of Sluice, ClientIP reads X-Forwarded-For and
// Forwarded only when the peer is a configured trusted proxy, and
// StripForwarding removes those headers from everyone else's requests.
package ingress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// ListenerConfig says where to listen and whom to admit.
type ListenerConfig struct {
	// Address is the host:port to bind. The host must be an IP literal to
	// count as loopback; a hostname (even "localhost", which /etc/hosts may
	// point anywhere) or an empty host is treated as public.
	Address string
	// AllowedSources lists the networks whose connections are admitted.
	// Empty admits everyone, which Validate permits only on a loopback
	// address or with AllowPublicBind.
	AllowedSources []netip.Prefix
	// TrustedProxies lists the load balancers whose PROXY protocol headers
	// (when ProxyProtocol is set) and whose X-Forwarded-For / Forwarded
	// headers (see ClientIP) are believed.
	TrustedProxies []netip.Prefix
	// ProxyProtocol makes the listener read a PROXY protocol v2 header from
	// every connection whose peer is in TrustedProxies. The allowlist is
	// then applied twice: to the proxy itself, and to the client address the
	// header carries.
	ProxyProtocol bool
	// TLS, when set, makes the listener serve TLS on admitted connections.
	TLS *TLSConfig
	// AllowPublicBind acknowledges that a non-loopback Address with an empty
	// AllowedSources admits connections from any network.
	AllowPublicBind bool
}

// TLSConfig names the files for a TLS listener. See ServerTLSConfig.
type TLSConfig struct {
	CertFile, KeyFile string // PEM server certificate chain and private key
	// ClientCAFile, when set, turns on mutual TLS: every client must present
	// a certificate issued by one of the PEM CAs in this file.
	ClientCAFile string
	// CRLFiles are certificate revocation lists (PEM or DER), each signed by
	// one of the client CAs. They are re-read when a file changes.
	CRLFiles []string
	// CRLCheckInterval is how often the CRL files are checked for changes,
	// at most. Zero means DefaultCRLCheckInterval.
	CRLCheckInterval time.Duration
	// AllowStaleCRL admits clients even when a CRL is past its NextUpdate
	// time. By default such a CRL refuses every certificate of its issuer,
	// because it may not list the latest revocations.
	AllowStaleCRL bool
}

// ErrPublicBind is returned by Validate for a listener that would admit the
// whole network without the operator having said so.
var ErrPublicBind = errors.New("non-loopback address with an empty allowlist (set AllowPublicBind to admit every network)")

// Validate checks cfg without touching the network or the file system. It
// returns every problem found, joined, each prefixed with the field name.
func Validate(cfg ListenerConfig) error {
	var errs []error
	host, port, err := net.SplitHostPort(cfg.Address)
	if err != nil {
		errs = append(errs, fmt.Errorf("address: %w", err))
	} else {
		if port == "" {
			errs = append(errs, fmt.Errorf("address %q: missing port", cfg.Address))
		}
		if len(cfg.AllowedSources) == 0 && !cfg.AllowPublicBind && !isLoopbackHost(host) {
			errs = append(errs, fmt.Errorf("address %q: %w", cfg.Address, ErrPublicBind))
		}
	}
	errs = append(errs, checkPrefixes("allowed_sources", cfg.AllowedSources)...)
	errs = append(errs, checkPrefixes("trusted_proxies", cfg.TrustedProxies)...)
	if cfg.ProxyProtocol && len(cfg.TrustedProxies) == 0 {
		errs = append(errs, errors.New("proxy_protocol: set but trusted_proxies is empty, so no header would ever be read"))
	}
	if t := cfg.TLS; t != nil {
		if t.CertFile == "" || t.KeyFile == "" {
			errs = append(errs, errors.New("tls: cert_file and key_file are required"))
		}
		if len(t.CRLFiles) > 0 && t.ClientCAFile == "" {
			errs = append(errs, errors.New("tls: crl_files need client_ca_file"))
		}
		if t.CRLCheckInterval < 0 {
			errs = append(errs, errors.New("tls: crl_check_interval must not be negative"))
		}
	}
	return errors.Join(errs...)
}

// isLoopbackHost reports whether host, from a host:port address, is a
// loopback IP literal. An empty host binds every interface.
func isLoopbackHost(host string) bool {
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return normalize(a).IsLoopback()
}

func checkPrefixes(field string, ps []netip.Prefix) []error {
	var errs []error
	for i, p := range ps {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("%s[%d]: invalid prefix", field, i))
		}
	}
	return errs
}

// normalize makes an address comparable with configured prefixes: an
// IPv4-mapped IPv6 address (::ffff:127.0.0.2, as a dual-stack socket reports
// IPv4 peers) becomes the IPv4 address, and IPv6 zones are dropped because
// netip.Prefix.Contains never matches a zoned address.
func normalize(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

func normalizeAddrPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(normalize(ap.Addr()), ap.Port())
}

// prefixSet is a normalised list of prefixes. An IPv4-mapped prefix such as
// ::ffff:10.0.0.0/104 is rewritten as 10.0.0.0/8, since addresses are
// unmapped before they are matched.
type prefixSet []netip.Prefix

func newPrefixSet(ps []netip.Prefix) prefixSet {
	out := make(prefixSet, 0, len(ps))
	for _, p := range ps {
		a := p.Addr()
		if a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out
}

// contains reports whether a (already normalised) is in the set.
func (s prefixSet) contains(a netip.Addr) bool {
	for _, p := range s {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// addrPortOf extracts an AddrPort from a net.Addr, normalised; ok is false
// for non-IP addresses (Unix sockets, unknown types).
func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(normalize(ip), uint16(a.Port)), true
	case nil:
		return netip.AddrPort{}, false
	default:
		ap, err := netip.ParseAddrPort(strings.TrimSpace(a.String()))
		if err != nil {
			return netip.AddrPort{}, false
		}
		return normalizeAddrPort(ap), true
	}
}
