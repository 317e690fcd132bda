package route

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/audit"
	"github.com/sluice-gateway/sluice/classify"
	"github.com/sluice-gateway/sluice/pricing"
	"github.com/sluice-gateway/sluice/proxy"
)

// A hybrid endpoint: a cheap public provider that may take internal data,
// a dearer private backend that may take anything.
var (
	cheap  = target("public-llm", 150_000, 600_000)
	pricey = target("private-llm", 900_000, 900_000)
)

func target(upstream string, in, out int64) *proxy.Target {
	return &proxy.Target{Upstream: &proxy.Upstream{Name: upstream, Transport: http.DefaultTransport}, Model: "m",
		Price: pricing.Price{InputPer1M: in, OutputPer1M: out}, Priced: true}
}

var upstreams = map[string]Upstream{
	"public-llm":  {Egress: EgressPublic, MaxClass: "internal"},
	"private-llm": {Egress: EgressPrivate, MaxClass: "restricted"},
	"partner-llm": {Egress: EgressPublic, MaxClass: "confidential"},
}

type env struct {
	r     *Router
	store *audit.MemoryStore
}

func newEnv(t testing.TB, mode Mode, mutate ...func(*Options)) *env {
	t.Helper()
	st := &audit.MemoryStore{}
	o := Options{
		Levels:     classify.DefaultLevels(),
		Classifier: newClassifier(t),
		TeamFloors: map[string]string{"finance": "confidential"},
		Upstreams:  upstreams,
		Modes:      map[string]Mode{"chat": mode},
		Audit:      audit.NewChain(st, audit.ChainOptions{}),
	}
	for _, m := range mutate {
		m(&o)
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return &env{r: r, store: st}
}

type call struct {
	content string
	key     sluice.Key
	header  string // X-Sluice-Data-Class
	client  string
	targets []*proxy.Target
}

func admission(c call) *proxy.Admission {
	req := httptest.NewRequest("POST", "/v1/chat/completions", nil)
	if c.header != "" {
		req.Header.Set(ClassHeader, c.header)
	}
	if c.key.ID == "" {
		c.key.ID, c.key.Team = "k1", "eng"
	}
	if c.client == "" {
		c.client = "127.0.0.1"
	}
	if c.targets == nil {
		c.targets = []*proxy.Target{pricey, cheap} // config order: dear first
	}
	body, _ := json.Marshal(map[string]any{"model": "chat", "stream": false,
		"messages": []map[string]string{{"role": "user", "content": c.content}}})
	return &proxy.Admission{
		Request: req, Key: &c.key, Endpoint: &proxy.Endpoint{Name: "chat", Targets: c.targets}, API: sluice.APIChat,
		Model: "chat", Body: body, Targets: c.targets,
		Record: &sluice.UsageRecord{RequestID: "req-1", KeyID: c.key.ID, Team: c.key.Team, Endpoint: "chat", ClientAddr: c.client},
	}
}

func upstreamNames(ts []*proxy.Target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Upstream.Name)
	}
	return out
}

func TestRouting(t *testing.T) {
	tests := []struct {
		name     string
		mode     Mode
		call     call
		status   int      // 0: admitted
		targets  []string // when admitted
		class    string
		decision string
	}{
		{"public text goes cheapest first", ModeRoute, call{content: "what is 2+2?"},
			0, []string{"public-llm", "private-llm"}, "public", DecisionAllowed},
		{"an IP address is internal: still cheap", ModeRoute, call{content: "ping 10.1.2.3"},
			0, []string{"public-llm", "private-llm"}, "internal", DecisionAllowed},
		{"an e-mail is confidential: private", ModeRoute, call{content: "write to jo@example.com"},
			0, []string{"private-llm"}, "confidential", DecisionRouted},
		{"a card is restricted: private", ModeRoute, call{content: "card 4111 1111 1111 1111"},
			0, []string{"private-llm"}, "restricted", DecisionRouted},
		{"the header raises the class", ModeRoute, call{content: "hi", header: "Confidential"},
			0, []string{"private-llm"}, "confidential", DecisionRouted},
		{"the header cannot lower it", ModeRoute, call{content: "jo@example.com", header: "public"},
			0, []string{"private-llm"}, "confidential", DecisionRouted},
		{"key floor", ModeRoute, call{content: "hi", key: sluice.Key{ID: "k2", Team: "eng", ClassFloor: "restricted"}},
			0, []string{"private-llm"}, "restricted", DecisionRouted},
		{"team floor", ModeRoute, call{content: "hi", key: sluice.Key{ID: "k3", Team: "finance"}},
			0, []string{"private-llm"}, "confidential", DecisionRouted},
		{"an unknown key floor is refused", ModeRoute, call{content: "hi", key: sluice.Key{ID: "k4", Team: "eng", ClassFloor: "secret"}},
			403, nil, "", DecisionRefused},
		{"an unknown header class is a bad request", ModeRoute, call{content: "hi", header: "top-secret"},
			400, nil, "", DecisionRefused},
		{"block names the class and rule", ModeBlock, call{content: "write to jo@example.com"},
			403, nil, "confidential", DecisionBlocked},
		{"block lets public text through", ModeBlock, call{content: "hello"},
			0, []string{"public-llm", "private-llm"}, "public", DecisionAllowed},
		{"mask sends cheaply", ModeMask, call{content: "write to jo@example.com"},
			0, []string{"public-llm", "private-llm"}, "confidential", DecisionMasked},
		{"mask cannot lower a floor: routed", ModeMask, call{content: "jo@example.com", key: sluice.Key{ID: "k3", Team: "finance"}},
			0, []string{"private-llm"}, "confidential", DecisionRouted},
		{"no eligible upstream", ModeRoute, call{content: "card 4111 1111 1111 1111", targets: []*proxy.Target{cheap}},
			403, nil, "restricted", DecisionRefused},
		{"mask rescues an endpoint with only a cheap target", ModeMask, call{content: "card 4111 1111 1111 1111", targets: []*proxy.Target{cheap}},
			0, []string{"public-llm"}, "restricted", DecisionMasked},
		{"no private one: any eligible", ModeRoute, call{content: "jo@example.com", targets: []*proxy.Target{cheap, target("partner-llm", 300_000, 900_000)}},
			0, []string{"partner-llm"}, "confidential", DecisionRouted},
		{"an unknown upstream takes only the lowest class", ModeRoute, call{content: "ping 10.1.2.3", targets: []*proxy.Target{target("mystery", 1, 1), pricey}},
			0, []string{"private-llm"}, "internal", DecisionRouted},
		{"unpriced targets come last", ModeRoute, call{content: "hi", targets: []*proxy.Target{{Upstream: cheap.Upstream}, pricey}},
			0, []string{"private-llm", "public-llm"}, "public", DecisionAllowed},
		{"key used from outside its sources", ModeRoute, call{content: "hi", client: "127.0.0.1",
			key: sluice.Key{ID: "k5", Team: "eng", SourceCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}},
			403, nil, "", DecisionRefused},
		{"key used from its sources", ModeRoute, call{content: "hi", client: "::ffff:127.0.0.2",
			key: sluice.Key{ID: "k5", Team: "eng", SourceCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}},
			0, []string{"public-llm", "private-llm"}, "public", DecisionAllowed},
		{"unknown client address fails closed", ModeRoute, call{content: "hi", client: "unknown",
			key: sluice.Key{ID: "k5", Team: "eng", SourceCIDRs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}},
			403, nil, "", DecisionRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.mode)
			a := admission(tt.call)
			orig := string(a.Body)
			done, err := e.r.Admit(context.Background(), a)
			if done == nil {
				t.Fatal("Admit returned no completion")
			}
			if tt.status != 0 {
				var ae *apierr.Error
				if !errors.As(err, &ae) || ae.Status != tt.status {
					t.Fatalf("Admit = %v, want status %d", err, tt.status)
				}
				if strings.Contains(ae.Msg, "jo@example.com") || strings.Contains(ae.Msg, "4111") {
					t.Errorf("the refusal repeats the matched text: %s", ae.Msg)
				}
				if tt.decision == DecisionBlocked && (!strings.Contains(ae.Msg, "confidential") || !strings.Contains(ae.Msg, "detector:email")) {
					t.Errorf("the block message does not name the class and rule: %s", ae.Msg)
				}
			} else if err != nil {
				t.Fatalf("Admit: %v", err)
			} else if got := upstreamNames(a.Targets); !slices.Equal(got, tt.targets) {
				t.Errorf("targets = %v, want %v", got, tt.targets)
			}
			if got := a.Header.Get(ClassHeader); got != tt.class {
				t.Errorf("%s = %q, want %q", ClassHeader, got, tt.class)
			}
			if tt.decision == DecisionMasked {
				if a.Header.Get(MaskedHeader) == "" || string(a.Body) == orig || strings.Contains(string(a.Body), "jo@example.com") {
					t.Errorf("masked body %s, header %q", a.Body, a.Header.Get(MaskedHeader))
				}
			} else if string(a.Body) != orig {
				t.Errorf("body changed without masking: %s", a.Body)
			}

			rec := *a.Record
			if err == nil {
				rec.Upstream, rec.Status = a.Targets[0].Upstream.Name, 200
			} else {
				rec.Status, rec.ErrorClass = tt.status, apierr.As(err).Class
			}
			done(&rec)
			recs, _ := e.store.Audit(context.Background(), audit.Query{})
			if len(recs) != 1 {
				t.Fatalf("%d audit records, want 1", len(recs))
			}
			ar := recs[0]
			if ar.Decision != tt.decision || ar.Class != tt.class || ar.RequestID != "req-1" || ar.ClientAddr != tt.call.client && tt.call.client != "" {
				t.Errorf("audit record %+v", ar)
			}
			wantKind := audit.KindRequest
			if err != nil {
				wantKind = audit.KindRequestRefused
			}
			if ar.Kind != wantKind {
				t.Errorf("audit kind %q, want %q", ar.Kind, wantKind)
			}
			if err == nil {
				if want := string(upstreams[rec.Upstream].Egress); ar.EgressClass != want && !(want == "" && ar.EgressClass == "undeclared") {
					t.Errorf("audit egress %q, want %q", ar.EgressClass, want)
				}
			}
			for _, r := range append(ar.ClassReasons, ar.Reason) {
				if strings.Contains(r, "@") || strings.Contains(r, "4111") {
					t.Errorf("audit record carries matched text: %q", r)
				}
			}
		})
	}
}

func TestAuditRecordsWhatHappened(t *testing.T) {
	e := newEnv(t, ModeRoute)
	a := admission(call{content: "write to jo@example.com"})
	done, err := e.r.Admit(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	a.DialedAddr = netip.MustParseAddrPort("10.0.3.4:8000")
	done(&sluice.UsageRecord{RequestID: "req-1", KeyID: "k1", Team: "eng", Endpoint: "chat", Upstream: "private-llm",
		Status: 502, ErrorClass: sluice.ErrClassUpstreamError, ClientAddr: "127.0.0.1"})

	// A later admitter refused this one after routing admitted it.
	a2 := admission(call{content: "hello"})
	a2.Record.RequestID = "req-2"
	done2, err := e.r.Admit(context.Background(), a2)
	if err != nil {
		t.Fatal(err)
	}
	done2(&sluice.UsageRecord{RequestID: "req-2", Endpoint: "chat", Status: 429, ErrorClass: "rate_limited"})

	recs, _ := e.store.Audit(context.Background(), audit.Query{})
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	r := recs[0]
	if r.Kind != audit.KindRequest || r.Upstream != "private-llm" || r.EgressClass != "private" || r.DialedAddr != "10.0.3.4:8000" ||
		!slices.Equal(r.Candidates, []string{"public-llm", "private-llm"}) || !slices.Equal(r.ClassReasons, []string{"detector:email"}) ||
		r.Decision != DecisionRouted || !strings.Contains(r.Reason, "exceeds max_class internal of the cheapest upstream public-llm") ||
		!strings.Contains(r.Reason, "status 502 upstream_error") {
		t.Errorf("first record %+v", r)
	}
	if r := recs[1]; r.Kind != audit.KindRequestRefused || r.Decision != DecisionRefused || r.Reason != "status 429 rate_limited" {
		t.Errorf("second record %+v", r)
	}
	if _, err := audit.VerifyStore(context.Background(), e.store); err != nil {
		t.Error(err)
	}
}

func TestObserveAuditsOnlyUnroutedRequests(t *testing.T) {
	e := newEnv(t, ModeRoute)
	a := admission(call{content: "hello"})
	done, _ := e.r.Admit(context.Background(), a)
	rec := &sluice.UsageRecord{RequestID: "req-1", Upstream: "public-llm", Status: 200}
	done(rec)
	e.r.Observe(rec) // already audited by done
	e.r.Observe(&sluice.UsageRecord{RequestID: "req-9", Status: 401, ErrorClass: sluice.ErrClassAuthentication, ClientAddr: "127.0.0.9"})
	recs, _ := e.store.Audit(context.Background(), audit.Query{})
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	if r := recs[1]; r.RequestID != "req-9" || r.Kind != audit.KindRequestRefused || r.Reason != "status 401 authentication" || r.ClientAddr != "127.0.0.9" {
		t.Errorf("unrouted record %+v", r)
	}
}

func TestRecentSetIsBounded(t *testing.T) {
	var s recentSet
	s.init(4)
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		s.add(id)
	}
	if s.take("a") {
		t.Error("the oldest id was kept beyond the bound")
	}
	if !s.take("e") || s.take("e") {
		t.Error("take should report a recent id once")
	}
	if len(s.ids) != 3 {
		t.Errorf("%d ids kept", len(s.ids))
	}
}

func TestNewChecksOptions(t *testing.T) {
	levels := classify.DefaultLevels()
	other, _ := classify.New(classify.Config{Levels: []string{"low", "high"}, Rules: []classify.Rule{{Detector: "email", Class: "high"}}})
	for name, o := range map[string]Options{
		"no levels":          {},
		"unknown max class":  {Levels: levels, Upstreams: map[string]Upstream{"u": {MaxClass: "top"}}},
		"unknown team floor": {Levels: levels, TeamFloors: map[string]string{"t": "top"}},
		"unknown mode":       {Levels: levels, Modes: map[string]Mode{"e": "shout"}},
		"classifier levels":  {Levels: levels, Classifier: other},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
}
