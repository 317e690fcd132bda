package config

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/sluice-gateway/sluice/classify"
	"github.com/sluice-gateway/sluice/egress"
	"github.com/sluice-gateway/sluice/ingress"
)

// Network holds the settings that keep traffic inside policy: who may
// connect, where upstream calls may go, how requests are classified, and
// the audit trail.
//
//	listeners:
//	  - address: 10.0.1.5:8443
//	    tls: {cert_file: /etc/sluice/tls.crt, key_file: /etc/sluice/tls.key}
//	    allowed_sources: [10.0.0.0/8]
//	egress:
//	  private_prefixes: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7]
//	  public_hosts: [api.openai.com]
//	data_classes:
//	  team_floors: {finance: confidential}
//	audit: {enabled: true}
type Network struct {
	// Listeners replace the single `listen` address. When empty, Sluice
	// listens on `listen` alone, with no allowlist, which is accepted only
	// for a loopback address.
	Listeners   []Listener  `yaml:"listeners"`
	Egress      Egress      `yaml:"egress"`
	DataClasses DataClasses `yaml:"data_classes"`
	Audit       Audit       `yaml:"audit"`
}

// Listener is one address Sluice accepts connections on, and whom from.
// See ingress.ListenerConfig for the meaning of each field.
type Listener struct {
	Address string       `yaml:"address"`
	TLS     *ListenerTLS `yaml:"tls"`
	// AllowedSources are the networks (CIDR, or a single address) whose
	// connections are admitted; others are closed before TLS and HTTP.
	AllowedSources []string `yaml:"allowed_sources"`
	// TrustedProxies are the load balancers whose PROXY protocol v2
	// headers and X-Forwarded-For / Forwarded headers are believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	ProxyProtocol  bool     `yaml:"proxy_protocol"`
	// AllowPublicBind accepts a non-loopback address with no allowlist.
	AllowPublicBind bool `yaml:"allow_public_bind"`
}

// ListenerTLS names a TLS listener's files. With ClientCAFile, clients
// must present a certificate from that CA (mutual TLS), checked against
// CRLFiles on every handshake.
type ListenerTLS struct {
	CertFile     string   `yaml:"cert_file"`
	KeyFile      string   `yaml:"key_file"`
	ClientCAFile string   `yaml:"client_ca_file"`
	CRLFiles     []string `yaml:"crl_files"`
}

// Egress is where upstream calls may connect. See egress.Policy.
type Egress struct {
	// PrivatePrefixes are the networks private upstreams may reach.
	// Default: RFC 1918 and fc00::/7. Add private-endpoint subnets here.
	PrivatePrefixes []string `yaml:"private_prefixes"`
	// PublicHosts are the host names public upstreams may connect to
	// (exact names, IP literals, or "*.suffix").
	PublicHosts []string `yaml:"public_hosts"`
	// PublicAllowedPrefixes are special ranges public upstreams may dial
	// although they are not globally routable (CGNAT, a test address).
	PublicAllowedPrefixes []string `yaml:"public_allowed_prefixes"`
}

// DataClasses configures request classification.
type DataClasses struct {
	// Levels are the classes, least sensitive first. Default: public,
	// internal, confidential, restricted.
	Levels []string `yaml:"levels"`
	// ScanContent runs the content detectors on each request's text.
	// Default true; false classifies by floors and the header alone.
	ScanContent *bool `yaml:"scan_content"`
	// Rules map built-in detectors (email, phone, card, iban, ssn, ip,
	// secret, entropy) to the class their findings imply; only detectors
	// with a rule run. Default: classify.DefaultRules, which needs the
	// default levels.
	Rules []ClassRule `yaml:"rules"`
	// Keywords and Patterns are operator detectors, each with its class.
	Keywords []ClassKeyword `yaml:"keywords"`
	Patterns []ClassPattern `yaml:"patterns"`
	// TeamFloors give every request of a team at least this class.
	TeamFloors map[string]string `yaml:"team_floors"`
	// Header is the request header by which a client may raise its
	// request's class. Default X-Sluice-Data-Class.
	Header string `yaml:"header"`
}

// ClassRule maps a built-in detector to a class.
type ClassRule struct {
	Detector string `yaml:"detector"`
	Class    string `yaml:"class"`
}

// ClassKeyword is an operator detector matching whole words.
type ClassKeyword struct {
	Detector string   `yaml:"detector"`
	Class    string   `yaml:"class"`
	Words    []string `yaml:"words"`
}

// ClassPattern is an operator detector matching an RE2 expression.
type ClassPattern struct {
	Detector string `yaml:"detector"`
	Class    string `yaml:"class"`
	Expr     string `yaml:"expr"`
}

// Audit configures the hash-chained audit trail, kept in the ledger's
// store.
type Audit struct {
	// Enabled records every request and refused connection. Default true.
	Enabled *bool `yaml:"enabled"`
}

// DefaultDataClassHeader is the request header that can raise a class.
const DefaultDataClassHeader = "X-Sluice-Data-Class"

// Upstream egress classes. An upstream that declares none is
// "undeclared": it may connect only to its own host, at any address but a
// cloud metadata endpoint, and its traffic is never counted as private.
const (
	EgressPrivate = string(egress.EgressPrivate)
	EgressPublic  = string(egress.EgressPublic)
)

// UpstreamPolicy is an upstream's place in the network policy.
type UpstreamPolicy struct {
	// Egress is private (the upstream's addresses must be inside the
	// private prefixes) or public (its host must be on public_hosts).
	Egress string `yaml:"egress"`
	// MaxClass is the most sensitive class the upstream may receive.
	// Default: the highest class for private and undeclared upstreams,
	// the lowest for public ones.
	MaxClass string `yaml:"max_class"`
}

// Routing modes for requests whose class exceeds every cheaper target.
const (
	OnSensitiveRoute = "route" // send to an eligible private upstream
	OnSensitiveMask  = "mask"  // mask detected values, then send cheaply
	OnSensitiveBlock = "block" // refuse with 403
)

// EndpointRouting is an endpoint's data-class routing.
type EndpointRouting struct {
	// Targets are the upstreams the endpoint may use. When empty, the
	// endpoint's upstream, model and price are its single target.
	Targets []Target `yaml:"targets"`
	// OnSensitive is route (the default), mask or block.
	OnSensitive string `yaml:"on_sensitive"`

	// mixed records that targets were given together with the
	// single-target fields, which Validate refuses.
	mixed bool
}

// Target is one upstream an endpoint can send to.
type Target struct {
	Upstream string `yaml:"upstream"`
	// Model is the upstream's model name; default the endpoint's name.
	Model string         `yaml:"model"`
	Price *EndpointPrice `yaml:"price"`
	// TargetServing adds the served-entity name, traffic share, capacity
	// and workload size (serving.go).
	TargetServing `yaml:",inline"`
}

func (c *Config) networkDefaults() {
	if c.Egress.PrivatePrefixes == nil {
		for _, p := range egress.DefaultPrivatePrefixes() {
			c.Egress.PrivatePrefixes = append(c.Egress.PrivatePrefixes, p.String())
		}
	}
	d := &c.DataClasses
	if d.Levels == nil {
		d.Levels = classify.DefaultLevels().Names()
	}
	setDefault(&d.Header, DefaultDataClassHeader)
	if d.ScanContent == nil {
		t := true
		d.ScanContent = &t
	}
	if c.Audit.Enabled == nil {
		t := true
		c.Audit.Enabled = &t
	}
	if levels, err := classify.NewLevels(d.Levels); err == nil {
		for i := range c.Upstreams {
			u := &c.Upstreams[i]
			if u.MaxClass != "" {
				continue
			}
			if u.Egress == EgressPublic {
				u.MaxClass = levels.Lowest()
			} else {
				u.MaxClass = levels.Highest()
			}
		}
	}
	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		setDefault(&e.OnSensitive, OnSensitiveRoute)
		if len(e.Targets) == 0 {
			continue
		}
		// Runs before the endpoint's model defaults to its name, so a
		// model here was written by the operator.
		e.mixed = e.Upstream != "" || e.Model != "" || e.Price != nil
		if e.Upstream == "" {
			// The first target stands in for the single upstream, which
			// the rest of the configuration requires.
			e.Upstream = e.Targets[0].Upstream
		}
		for j := range e.Targets {
			setDefault(&e.Targets[j].Model, e.Name)
		}
	}
}

// AuditEnabled reports whether the audit trail is on.
func (c *Config) AuditEnabled() bool { return c.Audit.Enabled == nil || *c.Audit.Enabled }

// EffectiveListeners returns the configured listeners, or one listener on
// Listen when none are.
func (c *Config) EffectiveListeners() []Listener {
	if len(c.Listeners) > 0 {
		return c.Listeners
	}
	return []Listener{{Address: c.Listen}}
}

// EndpointTargets returns the endpoint's targets: its targets list, or its
// upstream, model and price as the single target.
func (e *Endpoint) EndpointTargets() []Target {
	if len(e.Targets) > 0 {
		return e.Targets
	}
	return []Target{e.singleTarget()}
}

// Ingress returns the listener as the ingress package takes it, checked
// with ingress.Validate.
func (l *Listener) Ingress() (ingress.ListenerConfig, error) {
	lc, err := l.ingressConfig()
	return lc, errors.Join(err, ingress.Validate(lc))
}

// ingressConfig converts l, leaving out prefixes that do not parse.
func (l *Listener) ingressConfig() (ingress.ListenerConfig, error) {
	lc := ingress.ListenerConfig{
		Address:         l.Address,
		ProxyProtocol:   l.ProxyProtocol,
		AllowPublicBind: l.AllowPublicBind,
	}
	var err1, err2 error
	lc.AllowedSources, err1 = parsePrefixes("allowed_sources", l.AllowedSources)
	lc.TrustedProxies, err2 = parsePrefixes("trusted_proxies", l.TrustedProxies)
	if t := l.TLS; t != nil {
		lc.TLS = &ingress.TLSConfig{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile, CRLFiles: t.CRLFiles}
	}
	return lc, errors.Join(err1, err2)
}

// Policy returns the egress policy the section describes.
func (e *Egress) Policy() (*egress.Policy, error) {
	p, err := e.policy()
	if err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// policy converts e, leaving out prefixes that do not parse.
func (e *Egress) policy() (*egress.Policy, error) {
	p := &egress.Policy{PublicHosts: e.PublicHosts}
	var err1, err2 error
	p.PrivatePrefixes, err1 = parsePrefixes("private_prefixes", e.PrivatePrefixes)
	p.PublicAllowedPrefixes, err2 = parsePrefixes("public_allowed_prefixes", e.PublicAllowedPrefixes)
	return p, errors.Join(err1, err2)
}

// Classifier returns the classifier the section describes, or nil when
// content scanning is off. levels are its levels either way.
func (d *DataClasses) Classifier() (c *classify.Classifier, levels *classify.Levels, err error) {
	levels, err = classify.NewLevels(d.Levels)
	if err != nil {
		return nil, nil, err
	}
	if d.ScanContent != nil && !*d.ScanContent {
		return nil, levels, nil
	}
	cc := classify.Config{Levels: d.Levels}
	if d.Rules != nil {
		cc.Rules = []classify.Rule{}
		for _, r := range d.Rules {
			cc.Rules = append(cc.Rules, classify.Rule{Detector: r.Detector, Class: r.Class})
		}
	} else if len(d.Keywords)+len(d.Patterns) > 0 {
		cc.Rules = classify.DefaultRules()
	}
	for _, k := range d.Keywords {
		cc.Keywords = append(cc.Keywords, classify.Keyword{Detector: k.Detector, Words: k.Words})
		cc.Rules = append(cc.Rules, classify.Rule{Detector: k.Detector, Class: k.Class})
	}
	seen := map[string]bool{}
	for _, p := range d.Patterns {
		cc.Patterns = append(cc.Patterns, classify.Pattern{Detector: p.Detector, Expr: p.Expr})
		if !seen[p.Detector] { // several patterns may share a detector
			seen[p.Detector] = true
			cc.Rules = append(cc.Rules, classify.Rule{Detector: p.Detector, Class: p.Class})
		}
	}
	c, err = classify.New(cc)
	if err != nil {
		return nil, nil, err
	}
	return c, levels, nil
}

// ParsePrefixes parses CIDR prefixes; a bare address is a single-address
// prefix. The prefixes are returned masked.
func ParsePrefixes(ss []string) ([]netip.Prefix, error) {
	ps, err := parsePrefixes("", ss)
	if err != nil {
		return nil, err
	}
	return ps, nil
}

// parsePrefixes parses what it can of ss and reports the rest, each
// error naming field[i].
func parsePrefixes(field string, ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for i, s := range ss {
		p, err := parsePrefix(s)
		if err != nil {
			errs = append(errs, &fieldError{fmt.Sprintf("%s[%d]", field, i), err})
			continue
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

// fieldError is an error about one element of a list.
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("%q is not a CIDR prefix (e.g. 10.0.0.0/8)", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix or an IP address", s)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: zoned addresses are not allowed", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// UpstreamHost returns the host name of an upstream's base URL.
func UpstreamHost(u *Upstream) string {
	pu, err := url.Parse(u.BaseURL)
	if err != nil {
		return ""
	}
	return pu.Hostname()
}

func (c *Config) validateNetwork(add func(field, format string, a ...any)) {
	// Listeners.
	if len(c.Listeners) == 0 {
		l := Listener{Address: c.Listen}
		if _, err := l.Ingress(); errors.Is(err, ingress.ErrPublicBind) {
			add("listen", "%q is not a loopback address; declare listeners with allowed_sources (or allow_public_bind: true) to accept other networks", c.Listen)
		}
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		f := fmt.Sprintf("listeners[%d]", i)
		if l.Address == "" {
			add(f+".address", "is required (host:port)")
			continue
		}
		lc, err := l.ingressConfig()
		for _, e := range flatten(err) {
			addField(add, f, e)
		}
		if err := ingress.Validate(lc); err != nil {
			for _, e := range flatten(err) {
				if errors.Is(e, ingress.ErrPublicBind) {
					add(f+".allowed_sources", "is empty on the non-loopback address %q; list the networks to admit, or set allow_public_bind: true", l.Address)
					continue
				}
				add(f, "%v", e)
			}
		}
	}

	// Egress policy.
	policy, err := c.Egress.policy()
	for _, e := range flatten(err) {
		addField(add, "egress", e)
	}
	if err := policy.Validate(); err != nil {
		for _, e := range flatten(err) {
			add("egress", "%v", e)
		}
	}
	if err != nil {
		policy = nil // do not judge upstreams by a partial policy
	}

	// Data classes.
	d := &c.DataClasses
	levels, err := classify.NewLevels(d.Levels)
	if err != nil {
		add("data_classes.levels", "%v", err)
	} else {
		scan := d.ScanContent == nil || *d.ScanContent
		if !scan {
			// The detectors do not run; their settings are not checked.
		} else if d.Rules == nil && !slices.Equal(d.Levels, classify.DefaultLevels().Names()) {
			add("data_classes.rules", "are required when levels are not the defaults (map each detector to one of %v)", levels.Names())
		} else if _, _, err := d.Classifier(); err != nil {
			for _, e := range flatten(err) {
				add("data_classes", "%s", strings.TrimPrefix(e.Error(), "classify: "))
			}
		}
		for _, team := range slices.Sorted(maps.Keys(d.TeamFloors)) {
			if _, ok := levels.Rank(d.TeamFloors[team]); !ok {
				add("data_classes.team_floors", "team %q: %q is not one of the classes %v", team, d.TeamFloors[team], levels.Names())
			}
		}
	}
	if !validHeaderName(d.Header) {
		add("data_classes.header", "%q is not a valid HTTP header name", d.Header)
	}

	// Upstreams.
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		f := fmt.Sprintf("upstreams[%d]", i)
		switch u.Egress {
		case "", EgressPrivate, EgressPublic:
		default:
			add(f+".egress", "%q is not private or public", u.Egress)
		}
		if levels != nil && u.MaxClass != "" {
			if _, ok := levels.Rank(u.MaxClass); !ok {
				add(f+".max_class", "%q is not one of the classes %v", u.MaxClass, levels.Names())
			}
		}
		if policy == nil || u.Type == TypeSimulator {
			continue
		}
		host := UpstreamHost(u)
		if host == "" {
			continue // base_url is reported already
		}
		switch u.Egress {
		case EgressPublic:
			if err := policy.CheckHost(egress.Upstream{Name: u.Name, Class: egress.EgressPublic}, host); err != nil {
				add(f+".egress", "public upstream host %q is not on egress.public_hosts", host)
			}
		case EgressPrivate:
			if a, err := netip.ParseAddr(host); err == nil {
				ap := netip.AddrPortFrom(a, 443)
				if err := policy.Check(egress.Upstream{Name: u.Name, Class: egress.EgressPrivate}, host, ap); err != nil {
					add(f+".egress", "private upstream address %s is outside egress.private_prefixes", a)
				}
			}
		}
	}

	// Endpoints.
	ups := map[string]bool{}
	for _, u := range c.Upstreams {
		ups[u.Name] = true
	}
	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		f := fmt.Sprintf("endpoints[%d]", i)
		switch e.OnSensitive {
		case "", OnSensitiveRoute, OnSensitiveMask, OnSensitiveBlock:
		default:
			add(f+".on_sensitive", "%q is not route, mask or block", e.OnSensitive)
		}
		if e.mixed {
			add(f+".targets", "use either targets or upstream/model/price, not both")
		}
		seen := map[[2]string]bool{}
		for j, t := range e.Targets {
			tf := fmt.Sprintf("%s.targets[%d]", f, j)
			if t.Upstream == "" {
				add(tf+".upstream", "is required")
			} else if !ups[t.Upstream] {
				add(tf+".upstream", "%q is not a declared upstream", t.Upstream)
			}
			k := [2]string{t.Upstream, t.Model}
			if seen[k] {
				add(tf, "upstream %q with model %q is listed twice", t.Upstream, t.Model)
			}
			seen[k] = true
			if p := t.Price; p != nil {
				if err := checkUSD(p.Input); err != nil {
					add(tf+".price.input_per_1m", "%v", err)
				}
				if err := checkUSD(p.Output); err != nil {
					add(tf+".price.output_per_1m", "%v", err)
				}
			}
		}
	}
}

// addField reports e under parent, at its own field when it has one.
func addField(add func(field, format string, a ...any), parent string, e error) {
	var fe *fieldError
	if errors.As(e, &fe) {
		add(parent+"."+fe.field, "%v", fe.err)
		return
	}
	add(parent, "%v", e)
}

// flatten splits a joined error into its parts, also when the join is
// wrapped with a prefix ("allowed_sources: ..."), which each part keeps.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	if inner := errors.Unwrap(err); inner != nil {
		if _, ok := inner.(interface{ Unwrap() []error }); ok {
			prefix, found := strings.CutSuffix(err.Error(), inner.Error())
			var out []error
			for _, e := range flatten(inner) {
				if found {
					e = fmt.Errorf("%s%w", prefix, e)
				}
				out = append(out, e)
			}
			return out
		}
	}
	return []error{err}
}

// validHeaderName reports whether s is an HTTP token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
