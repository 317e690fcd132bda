package config

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
)

func parseFile(t *testing.T, name string) (*Config, error) {
	t.Helper()
	raw, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return Parse(bytes.NewReader(raw), nil)
}

func TestNetworkDefaults(t *testing.T) {
	c := Default()
	ls := c.EffectiveListeners()
	if len(ls) != 1 || ls[0].Address != "127.0.0.1:8080" || len(ls[0].AllowedSources) != 0 {
		t.Fatalf("default listeners = %+v, want one on 127.0.0.1:8080", ls)
	}
	if _, err := ls[0].Ingress(); err != nil {
		t.Fatalf("default listener does not validate: %v", err)
	}
	p, err := c.Egress.Policy()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"}
	var got []string
	for _, pr := range p.PrivatePrefixes {
		got = append(got, pr.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("default private prefixes = %v, want %v", got, want)
	}
	if !c.AuditEnabled() {
		t.Error("audit is off by default")
	}
	d := c.DataClasses
	if d.Header != "X-Sluice-Data-Class" || !slices.Equal(d.Levels, []string{"public", "internal", "confidential", "restricted"}) {
		t.Errorf("data class defaults: header %q, levels %v", d.Header, d.Levels)
	}
	cl, levels, err := d.Classifier()
	if err != nil || cl == nil || levels.Highest() != "restricted" {
		t.Fatalf("default classifier = %v, %v, %v", cl, levels, err)
	}
	if r := cl.Classify([]byte("mail me at jo@example.com")); r.Class != "confidential" {
		t.Errorf("default rules classify an e-mail as %q", r.Class)
	}
	for _, u := range c.Upstreams {
		if u.Egress != "" || u.MaxClass != "restricted" {
			t.Errorf("upstream %s: egress %q max_class %q, want undeclared and restricted", u.Name, u.Egress, u.MaxClass)
		}
	}
	for _, e := range c.Endpoints {
		ts := e.EndpointTargets()
		if e.OnSensitive != "route" || len(ts) != 1 || ts[0].Upstream != e.Upstream || ts[0].Model != e.Model {
			t.Errorf("endpoint %s: on_sensitive %q, targets %+v", e.Name, e.OnSensitive, ts)
		}
	}
}

func TestNetworkGoodFile(t *testing.T) {
	c, err := parseFile(t, "testdata/network.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	ls := c.EffectiveListeners()
	if len(ls) != 2 {
		t.Fatalf("listeners = %d, want 2", len(ls))
	}
	lc, err := ls[0].Ingress()
	if err != nil {
		t.Fatal(err)
	}
	wantSrc := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.7.9/32")}
	if !slices.Equal(lc.AllowedSources, wantSrc) || len(lc.TrustedProxies) != 1 || !lc.ProxyProtocol {
		t.Errorf("listener 0 = %+v", lc)
	}
	if lc.TLS == nil || lc.TLS.ClientCAFile != "/etc/sluice/clients-ca.pem" || len(lc.TLS.CRLFiles) != 1 {
		t.Errorf("listener 0 TLS = %+v", lc.TLS)
	}
	p, err := c.Egress.Policy()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.PrivatePrefixes) != 2 || len(p.PublicHosts) != 2 {
		t.Errorf("policy = %+v", p)
	}
	if c.AuditEnabled() {
		t.Error("audit.enabled: false ignored")
	}
	cl, _, err := c.DataClasses.Classifier()
	if err != nil {
		t.Fatal(err)
	}
	for text, want := range map[string]string{
		"status of Project Nightjar?": "confidential",
		"ticket for EMP-123456":       "internal",
		"write to a@example.org":      "confidential", // the default rules stay on
		"the weather is fine":         "public",
	} {
		if got := cl.Classify([]byte(text)).Class; got != want {
			t.Errorf("Classify(%q) = %q, want %q", text, got, want)
		}
	}
	if c.DataClasses.TeamFloors["finance"] != "confidential" || c.DataClasses.Header != "X-Data-Class" {
		t.Errorf("data classes = %+v", c.DataClasses)
	}
	wantUp := map[string][2]string{
		"openai": {"public", "internal"},
		"azure":  {"public", "public"}, // public upstreams default to the lowest class
		"vllm":   {"private", "restricted"},
		"legacy": {"", "restricted"},
	}
	for _, u := range c.Upstreams {
		if got := [2]string{u.Egress, u.MaxClass}; got != wantUp[u.Name] {
			t.Errorf("upstream %s: egress, max_class = %v, want %v", u.Name, got, wantUp[u.Name])
		}
	}
	chat := c.Endpoints[0]
	if chat.OnSensitive != "mask" || chat.Upstream != "openai" {
		t.Errorf("chat endpoint: on_sensitive %q, upstream %q", chat.OnSensitive, chat.Upstream)
	}
	ts := chat.EndpointTargets()
	if len(ts) != 2 || ts[0].Model != "gpt-4o-mini" || ts[1].Price == nil || ts[1].Price.Input != "0.90" {
		t.Errorf("chat targets = %+v", ts)
	}
	old := c.Endpoints[1]
	if ts := old.EndpointTargets(); len(ts) != 1 || ts[0].Upstream != "legacy" || ts[0].Model != "old" {
		t.Errorf("single-target endpoint targets = %+v", ts)
	}
}

func TestNetworkBadFiles(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"testdata/network.bad.yml", []string{
			`line 1: listen: "0.0.0.0:8080" is not a loopback address`,
			`line 4: data_classes: keyword detector "card": name of a built-in detector`,
			`line 4: data_classes: rule for detector "email": classify: "secret": unknown data class`,
			`line 9: data_classes.team_floors: team "ops": "top" is not one of the classes`,
			`line 10: data_classes.header: "X Class" is not a valid HTTP header name`,
			`line 16: upstreams[0].max_class: "top" is not one of the classes`,
			`line 15: upstreams[0].egress: public upstream host "api.openai.com" is not on egress.public_hosts`,
			`line 20: upstreams[1].egress: private upstream address 8.8.8.8 is outside egress.private_prefixes`,
			`line 23: upstreams[2].egress: "somewhere" is not private or public`,
			`line 27: endpoints[0].on_sensitive: "shout" is not route, mask or block`,
			`line 28: endpoints[0].targets: use either targets or upstream/model/price, not both`,
			`line 30: endpoints[0].targets[1].upstream: "nowhere" is not a declared upstream`,
			`line 31: endpoints[0].targets[2]: upstream "openai" with model "chat" is listed twice`,
		}},
		{"testdata/network-ingress.bad.yml", []string{
			`line 2: listeners[0].allowed_sources: is empty on the non-loopback address "0.0.0.0:8443"`,
			`line 4: listeners[1].allowed_sources[0]: "not-a-cidr" is not a CIDR prefix or an IP address`,
			`line 3: listeners[1]: proxy_protocol: set but trusted_proxies is empty`,
			`line 3: listeners[1]: tls: cert_file and key_file are required`,
			`line 7: listeners[2].address: is required`,
			`line 9: egress.private_prefixes[0]: "10.0.0.0/33" is not a CIDR prefix`,
			`line 8: egress: public_hosts[0] "api openai com": invalid character ' '`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := parseFile(t, tt.file)
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("err = %v", err)
			}
			got := es.Error()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing error %q in:\n%s", w, got)
				}
			}
			if len(es) != len(tt.want) {
				t.Errorf("got %d errors, want %d:\n%s", len(es), len(tt.want), got)
			}
		})
	}
}

func TestNetworkSmallCases(t *testing.T) {
	tests := []struct {
		name, yaml string
		err        string // substring of the error; empty means valid
	}{
		{"public bind needs consent", "listeners: [{address: '0.0.0.0:8080', allow_public_bind: true}]", ""},
		{"allowlisted public bind", "listeners: [{address: '0.0.0.0:8080', allowed_sources: [10.1.0.0/16]}]", ""},
		{"hostname listen is not loopback", "listen: localhost:8080", "is not a loopback address"},
		{"ipv6 loopback listen", "listen: '[::1]:8080'", ""},
		{"custom levels need rules", "data_classes: {levels: [low, high]}", "data_classes.rules: are required"},
		{"custom levels with rules", "data_classes: {levels: [low, high], rules: [{detector: email, class: high}]}", ""},
		{"custom levels without scanning", "data_classes: {levels: [low, high], scan_content: false}", ""},
		{"bad level name", "data_classes: {levels: [Low]}", "data_classes.levels"},
		{"keyword without words", "data_classes: {keywords: [{detector: kw, class: internal}]}", `keyword detector "kw": no words`},
		{"bad pattern", "data_classes: {patterns: [{detector: p, class: internal, expr: '('}]}", `pattern detector "p"`},
		{"public allowed prefix", "egress: {public_allowed_prefixes: [100.64.0.0/10]}", ""},
		{"private upstream by name", `
egress: {private_prefixes: [10.0.0.0/8]}
upstreams: [{name: v, type: openai, base_url: 'http://vllm.internal/v1', egress: private}]`, ""},
		{"wildcard public host", `
egress: {public_hosts: ['*.openai.azure.com']}
upstreams: [{name: a, type: azure, base_url: 'https://x.openai.azure.com', api_version: v, egress: public}]`, ""},
		{"simulator may be labelled public", "upstreams: [{name: s, type: simulator, egress: public, max_class: internal}]", ""},
		{"bad target price", `
upstreams: [{name: s, type: simulator}]
endpoints: [{name: e, targets: [{upstream: s, price: {input_per_1m: x, output_per_1m: '1'}}]}]`, "targets[0].price.input_per_1m"},
		{"target model given on endpoint", `
upstreams: [{name: s, type: simulator}]
endpoints: [{name: e, model: m, targets: [{upstream: s}]}]`, "use either targets or upstream/model/price"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.yaml), nil)
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("err = %v, want one containing %q", err, tt.err)
			}
		})
	}
}

func TestEmptyRulesTurnBuiltinsOff(t *testing.T) {
	c, err := Parse(strings.NewReader("data_classes: {rules: []}"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, _, err := c.DataClasses.Classifier()
	if err != nil {
		t.Fatal(err)
	}
	if r := cl.Classify([]byte("jo@example.com 4111 1111 1111 1111")); r.Class != "public" || len(r.Findings) != 0 {
		t.Errorf("with rules: [] the built-in detectors still ran: %+v", r)
	}
	c, err = Parse(strings.NewReader("data_classes: {scan_content: false}"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cl, levels, err := c.DataClasses.Classifier(); cl != nil || err != nil || levels == nil {
		t.Errorf("scan_content: false gave classifier %v, levels %v, err %v", cl, levels, err)
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes([]string{"10.1.2.3/8", " 192.0.2.1 ", "2001:db8::1", "::ffff:10.0.0.0/104"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.1/32", "2001:db8::1/128", "::ffff:10.0.0.0/104"}
	for i, p := range got {
		if p.String() != want[i] {
			t.Errorf("prefix %d = %s, want %s", i, p, want[i])
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "fe80::1%eth0", "example.com", "10.0.0.0/8/8"} {
		if _, err := ParsePrefixes([]string{bad}); err == nil {
			t.Errorf("ParsePrefixes(%q) accepted", bad)
		}
	}
}
