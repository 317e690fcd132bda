package route

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/audit"
	"github.com/sluice-gateway/sluice/proxy"
)

// prompt returns about n bytes of chat-like prose; with secret, one
// e-mail address sits in the middle.
func prompt(n int, secret bool) string {
	words := strings.Fields(`the quarterly report shows revenue growth in three regions while costs
		rose slightly please summarise the main drivers and list open questions for the team meeting
		on Thursday at 10:30 include version 2.4.1 of the rollout plan and ticket 48213`)
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		if secret && i == len(words)*3 {
			b.WriteString("contact jo.bloggs@example.com ")
		}
		b.WriteString(words[i%len(words)])
		b.WriteByte(' ')
	}
	return b.String()[:n]
}

func chatBody(p string) []byte {
	body, _ := json.Marshal(map[string]any{"model": "chat", "messages": []map[string]string{
		{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": p}}})
	return body
}

// BenchmarkAdmit is classification plus routing, per call, with the audit
// record written to memory.
func BenchmarkAdmit(b *testing.B) {
	for _, size := range []int{2 << 10, 100 << 10} {
		for _, tc := range []struct {
			name   string
			mode   Mode
			secret bool
			off    bool
		}{
			{"public", ModeRoute, false, false},
			{"confidential-route", ModeRoute, true, false},
			{"confidential-mask", ModeMask, true, false},
			{"detectors-off", ModeRoute, true, true},
		} {
			b.Run(fmt.Sprintf("%dKB/%s", size>>10, tc.name), func(b *testing.B) {
				e := newEnv(b, tc.mode, func(o *Options) {
					if tc.off {
						o.Classifier = nil
					}
					o.Audit = audit.NewChain(&discardStore{}, audit.ChainOptions{})
				})
				body := chatBody(prompt(size, tc.secret))
				req := httptest.NewRequest("POST", "/v1/chat/completions", nil)
				key := &sluice.Key{ID: "k1", Team: "eng"}
				ep := &proxy.Endpoint{Name: "chat", Targets: []*proxy.Target{pricey, cheap}}
				rec := &sluice.UsageRecord{RequestID: "r", ClientAddr: "127.0.0.1"}
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					a := &proxy.Admission{Request: req, Key: key, Endpoint: ep, Body: body, Targets: ep.Targets, Record: rec}
					done, err := e.r.Admit(context.Background(), a)
					if err != nil {
						b.Fatal(err)
					}
					done(&sluice.UsageRecord{RequestID: "r", Upstream: a.Targets[0].Upstream.Name, Status: 200})
				}
			})
		}
	}
}

// discardStore is an audit.Store that keeps only the head, so benchmarks
// measure routing, not a growing slice.
type discardStore struct{ last audit.Record }

func (s *discardStore) AppendAudit(_ context.Context, recs []audit.Record) error {
	s.last = recs[len(recs)-1]
	return nil
}
func (s *discardStore) Audit(context.Context, audit.Query) ([]audit.Record, error) { return nil, nil }
func (s *discardStore) LastAudit(context.Context) (audit.Record, error) {
	if s.last.Seq == 0 {
		return s.last, fmt.Errorf("empty: %w", sluice.ErrNotFound)
	}
	return s.last, nil
}
