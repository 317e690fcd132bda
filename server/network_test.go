package server_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/audit"
	"github.com/sluice-gateway/sluice/auth"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/server"
	"github.com/sluice-gateway/sluice/simulator"
)

// upstream is a simulator on a loopback port that remembers the bodies it
// was sent.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	sim := simulator.New(simulator.Options{})
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.bodies = append(u.bodies, string(b))
		u.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) addr() string { return strings.TrimPrefix(u.URL, "http://") }

// received reports whether some body the upstream got contains s.
func (u *upstream) received(s string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, b := range u.bodies {
		if strings.Contains(b, s) {
			return true
		}
	}
	return false
}

// gateway is a real Sluice serving on the listeners its config declares.
type gateway struct {
	srv   *server.Server
	urls  []string // one per listener
	db    string   // the SQLite ledger file
	stop  func()   // shuts the server down; the store stays open
	keys  map[string]string
	store sluice.Store
}

func startNetGateway(t *testing.T, yaml string) *gateway {
	t.Helper()
	g := &gateway{db: filepath.Join(t.TempDir(), "sluice.db"), keys: map[string]string{}}
	cfg, err := config.Parse(strings.NewReader(strings.ReplaceAll(yaml, "LEDGER", g.db)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.srv, err = server.New(ctx, cfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g.store = g.srv.Store()
	lns, err := g.srv.Listeners()
	if err != nil {
		t.Fatal(err)
	}
	for _, ln := range lns {
		g.urls = append(g.urls, "http://"+ln.Addr().String())
	}
	served := make(chan error, 1)
	go func() { served <- g.srv.Serve(ctx, lns...) }()
	var once sync.Once
	g.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-served; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		g.stop()
		g.srv.Close()
	})
	return g
}

// key creates a key and returns its secret.
func (g *gateway) key(t *testing.T, team string, sources ...string) string {
	t.Helper()
	secret, k, err := auth.NewKey(team, "test", false, nil, time.Time{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sources {
		k.SourceCIDRs = append(k.SourceCIDRs, netip.MustParsePrefix(s))
	}
	if err := g.store.CreateKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	return secret
}

// noProxy is a client that ignores proxy settings in the environment.
var noProxy = &http.Client{Transport: &http.Transport{}}

type reply struct {
	status int
	header http.Header
	body   string
}

func (g *gateway) chat(t *testing.T, client *http.Client, base, key, model, content string, header ...string) reply {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": content}}})
	req, _ := http.NewRequest("POST", base+"/v1/chat/completions", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return reply{resp.StatusCode, resp.Header, string(b)}
}

const hybridYAML = `
ledger: {dsn: LEDGER}
listeners:
  - address: 127.0.0.1:0
    allowed_sources: [127.0.0.1/32]
  - address: 127.0.0.1:0
    allowed_sources: [127.0.0.1/32]
    trusted_proxies: [127.0.0.1/32]
egress:
  private_prefixes: [127.0.0.1/32]
  public_hosts: [127.0.0.1]
  public_allowed_prefixes: [127.0.0.1/32]
upstreams:
  - {name: private-llm, type: openai, base_url: "PRIVATE/v1", egress: private, max_class: restricted}
  - {name: public-llm, type: openai, base_url: "PUBLIC/v1", egress: public, max_class: internal}
endpoints:
  - name: chat
    targets: &targets
      - {upstream: private-llm, model: llama, price: {input_per_1m: "0.90", output_per_1m: "0.90"}}
      - {upstream: public-llm, model: gpt-4o-mini, price: {input_per_1m: "0.15", output_per_1m: "0.60"}}
  - {name: chat-mask, on_sensitive: mask, targets: *targets}
  - {name: chat-block, on_sensitive: block, targets: *targets}
`

// TestHybrid is issue 4's end-to-end test: a real Sluice with a private and
// a cheaper public upstream, both on loopback.
func TestHybrid(t *testing.T) {
	priv, pub := newUpstream(t), newUpstream(t)
	g := startNetGateway(t, strings.NewReplacer("PRIVATE", priv.URL, "PUBLIC", pub.URL).Replace(hybridYAML))
	key := g.key(t, "eng")
	c := noProxy
	base := g.urls[0]
	ids := map[string]string{} // step → request id

	// Public text goes to the cheaper, public upstream.
	r := g.chat(t, c, base, key, "chat", "What is the capital of France? (public-question)")
	if r.status != 200 || r.header.Get("X-Sluice-Data-Class") != "public" {
		t.Fatalf("public request: %d %v %s", r.status, r.header, r.body)
	}
	if !pub.received("public-question") || priv.received("public-question") {
		t.Error("the public request did not go (only) to the public upstream")
	}
	ids["public"] = r.header.Get("X-Request-Id")

	// An e-mail address makes it confidential: the private upstream.
	r = g.chat(t, c, base, key, "chat", "Draft a reply to jo.bloggs@example.com (confidential-question)")
	if r.status != 200 || r.header.Get("X-Sluice-Data-Class") != "confidential" {
		t.Fatalf("confidential request: %d %v %s", r.status, r.header, r.body)
	}
	if !priv.received("confidential-question") || pub.received("confidential-question") || pub.received("jo.bloggs") {
		t.Error("the confidential request did not go (only) to the private upstream")
	}
	ids["confidential"] = r.header.Get("X-Request-Id")

	// A card number is restricted: private too.
	r = g.chat(t, c, base, key, "chat", "Charge 4111 1111 1111 1111 (restricted-question)")
	if r.status != 200 || !priv.received("restricted-question") || pub.received("4111") {
		t.Errorf("restricted request: %d %s", r.status, r.body)
	}

	// Mask mode sends to the cheap upstream with the address replaced.
	r = g.chat(t, c, base, key, "chat-mask", "Draft a reply to jo.bloggs@example.com (masked-question)")
	if r.status != 200 || r.header.Get("X-Sluice-Masked") != "email=1" {
		t.Fatalf("masked request: %d %v %s", r.status, r.header, r.body)
	}
	if !pub.received("Draft a reply to [EMAIL_1] (masked-question)") || pub.received("jo.bloggs") {
		t.Error("the public upstream did not get the masked text, or got the address")
	}
	ids["masked"] = r.header.Get("X-Request-Id")

	// Block mode refuses, naming the class and rule but not the text.
	r = g.chat(t, c, base, key, "chat-block", "Draft a reply to jo.bloggs@example.com (blocked-question)")
	if r.status != 403 || !strings.Contains(r.body, "confidential") || !strings.Contains(r.body, "detector:email") || strings.Contains(r.body, "jo.bloggs") {
		t.Errorf("blocked request: %d %s", r.status, r.body)
	}
	if priv.received("blocked-question") || pub.received("blocked-question") {
		t.Error("a blocked request reached an upstream")
	}
	ids["blocked"] = r.header.Get("X-Request-Id")

	// A key restricted to 127.0.0.2/32, used from 127.0.0.1.
	narrow := g.key(t, "eng", "127.0.0.2/32")
	r = g.chat(t, c, base, narrow, "chat", "hello (narrow-key)")
	if r.status != 403 || !strings.Contains(r.body, "source_not_allowed") || pub.received("narrow-key") {
		t.Errorf("key used from outside its sources: %d %s", r.status, r.body)
	}
	ids["narrow"] = r.header.Get("X-Request-Id")

	// The same key through the listener that trusts 127.0.0.1 as a proxy,
	// which says the client is 127.0.0.2; the other listener ignores that.
	r = g.chat(t, c, g.urls[1], narrow, "chat", "hello (proxied)", "X-Forwarded-For", "127.0.0.2")
	if r.status != 200 {
		t.Errorf("key used through a trusted proxy from its source: %d %s", r.status, r.body)
	}
	r = g.chat(t, c, base, narrow, "chat", "hello (spoofed)", "X-Forwarded-For", "127.0.0.2")
	if r.status != 403 {
		t.Errorf("X-Forwarded-For believed from an untrusted peer: %d %s", r.status, r.body)
	}

	// A client on 127.0.0.2 is refused by the listener before HTTP.
	from2 := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}).DialContext}}
	req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(`{}`))
	if resp, err := from2.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a client on 127.0.0.2 got an answer: %s", resp.Status)
	}

	// Shutting down closes the listeners, which writes their queued
	// refusals; the store stays open to read the trail.
	g.stop()
	ctx := context.Background()
	as := g.store.(audit.Store)
	recs, err := as.Audit(ctx, audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]audit.Record{}
	var refusedConns []audit.Record
	for _, rec := range recs {
		if rec.Kind == audit.KindConnectionRefused {
			refusedConns = append(refusedConns, rec)
		}
		byID[rec.RequestID] = rec
	}
	check := func(step, kind, class, upstream, egressClass, dialed, decision string) {
		t.Helper()
		rec, ok := byID[ids[step]]
		if !ok {
			t.Errorf("%s: no audit record for request %q", step, ids[step])
			return
		}
		if rec.Kind != kind || rec.Class != class || rec.Upstream != upstream || rec.EgressClass != egressClass ||
			rec.DialedAddr != dialed || rec.Decision != decision || rec.ClientAddr != "127.0.0.1" {
			t.Errorf("%s: audit record %+v\nwant kind %s class %s upstream %s egress %s dialed %s decision %s",
				step, rec, kind, class, upstream, egressClass, dialed, decision)
		}
	}
	check("public", audit.KindRequest, "public", "public-llm", "public", pub.addr(), "allowed")
	check("confidential", audit.KindRequest, "confidential", "private-llm", "private", priv.addr(), "routed")
	check("masked", audit.KindRequest, "confidential", "public-llm", "public", pub.addr(), "masked")
	check("blocked", audit.KindRequestRefused, "confidential", "", "", "", "blocked")
	check("narrow", audit.KindRequestRefused, "", "", "", "", "refused")
	if rec := byID[ids["confidential"]]; strings.Join(rec.Candidates, ",") != "public-llm,private-llm" || strings.Join(rec.ClassReasons, ",") != "detector:email" {
		t.Errorf("confidential request: candidates %v, reasons %v", rec.Candidates, rec.ClassReasons)
	}
	if len(refusedConns) != 1 || !strings.HasPrefix(refusedConns[0].ClientAddr, "127.0.0.2:") ||
		!strings.HasPrefix(refusedConns[0].Reason, "source_not_allowed") {
		t.Errorf("refused connections in the audit: %+v", refusedConns)
	}
	if n := counter(t, g.srv, "sluice_ingress_refused_connections_total", "reason", "source_not_allowed"); n != 1 {
		t.Errorf("refused-connection counter = %v, want 1", n)
	}
	if _, err := audit.VerifyStore(ctx, as); err != nil {
		t.Fatalf("the audit trail does not verify: %v", err)
	}

	// Someone with write access to the ledger rewrites where the
	// confidential request went: verification names the record.
	db, err := sql.Open("sqlite", g.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	seq := byID[ids["confidential"]].Seq
	if _, err := db.ExecContext(ctx, `UPDATE audit SET upstream = 'public-llm', egress_class = 'public' WHERE seq = ?`, seq); err != nil {
		t.Fatal(err)
	}
	_, err = audit.VerifyStore(ctx, as)
	var ve *audit.VerifyError
	if !errors.As(err, &ve) || ve.Seq != seq || !errors.Is(err, audit.ErrEdited) {
		t.Fatalf("after editing record %d, verify = %v", seq, err)
	}
}

// counter returns the value of the counter name with label=value.
func counter(t *testing.T, srv *server.Server, name, label, value string) float64 {
	t.Helper()
	mfs, err := srv.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabel(m, label, value) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// TestNoEligibleUpstreamIsNeverSent: an endpoint whose only upstream may
// not receive the class refuses the request; nothing reaches it.
func TestNoEligibleUpstreamIsNeverSent(t *testing.T) {
	pub := newUpstream(t)
	g := startNetGateway(t, strings.ReplaceAll(`
ledger: {dsn: LEDGER}
listen: 127.0.0.1:0
egress: {public_hosts: [127.0.0.1], public_allowed_prefixes: [127.0.0.1/32]}
upstreams: [{name: public-llm, type: openai, base_url: "PUBLIC/v1", egress: public, max_class: internal}]
endpoints: [{name: chat, upstream: public-llm}]
`, "PUBLIC", pub.URL))
	key := g.key(t, "eng")
	r := g.chat(t, noProxy, g.urls[0], key, "chat", "SSN 219-45-6789 please")
	if r.status != 403 || !strings.Contains(r.body, "no_eligible_upstream") || strings.Contains(r.body, "219-45") {
		t.Errorf("restricted request to a public-only endpoint: %d %s", r.status, r.body)
	}
	if pub.received("SSN") {
		t.Error("the request reached the public upstream")
	}
	if r := g.chat(t, noProxy, g.urls[0], key, "chat", "hello"); r.status != 200 {
		t.Errorf("public request: %d %s", r.status, r.body)
	}
}

// TestUndeclaredUpstreamStillWorks: an upstream written before egress
// classes existed keeps working, through the egress transport, and the
// audit does not count it as private.
func TestUndeclaredUpstreamStillWorks(t *testing.T) {
	up := newUpstream(t)
	g := startNetGateway(t, strings.ReplaceAll(`
ledger: {dsn: LEDGER}
listen: 127.0.0.1:0
upstreams: [{name: legacy, type: openai, base_url: "URL/v1"}]
endpoints: [{name: chat, upstream: legacy}]
`, "URL", up.URL))
	r := g.chat(t, noProxy, g.urls[0], g.key(t, "eng"), "chat", "write to jo@example.com")
	if r.status != 200 || !up.received("jo@example.com") {
		t.Fatalf("request to an undeclared upstream: %d %s", r.status, r.body)
	}
	g.stop()
	recs, err := g.store.(audit.Store).Audit(context.Background(), audit.Query{Kind: audit.KindRequest})
	if err != nil || len(recs) != 1 {
		t.Fatalf("audit: %d records, %v", len(recs), err)
	}
	if rec := recs[0]; rec.EgressClass != "undeclared" || rec.DialedAddr != up.addr() || rec.Class != "confidential" {
		t.Errorf("audit record %+v", rec)
	}
}

// BenchmarkGatewayDetectors drives the real handler over loopback HTTP
// with a 2 KB prompt to the in-process simulator, with the content
// detectors on and off (the audit trail on), and with both off.
func BenchmarkGatewayDetectors(b *testing.B) {
	prompt := strings.Repeat("Please summarise the quarterly figures for the regional teams and list open questions. ", 24)[:2048]
	body, _ := json.Marshal(map[string]any{"model": "sim-chat", "messages": []map[string]string{{"role": "user", "content": prompt}}})
	for _, tc := range []struct{ name, extra string }{
		{"detectors-on", ""},
		{"detectors-off", "data_classes: {scan_content: false}\n"},
		{"detectors-off-audit-off", "data_classes: {scan_content: false}\naudit: {enabled: false}\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dir := b.TempDir()
			cfg, err := config.Parse(strings.NewReader(`
ledger: {dsn: `+filepath.Join(dir, "sluice.db")+`}
listen: 127.0.0.1:0
upstreams: [{name: sim, type: simulator, simulator: {output_tokens: 16}}]
endpoints: [{name: sim-chat, upstream: sim}]
`+tc.extra), nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			srv, err := server.New(ctx, cfg, server.Options{})
			if err != nil {
				b.Fatal(err)
			}
			secret, k, _ := auth.NewKey("bench", "bench", false, nil, time.Time{}, time.Now())
			if err := srv.Store().CreateKey(ctx, k); err != nil {
				b.Fatal(err)
			}
			lns, err := srv.Listeners()
			if err != nil {
				b.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ctx, lns...) }()
			defer func() { cancel(); <-served; srv.Close() }()
			url := "http://" + lns[0].Addr().String() + "/v1/chat/completions"
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+secret)
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
