package aigateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/aigateway"
	"github.com/sluice-gateway/sluice/proxy"
)

// chatBody is a typical chat request of about 2 KB: a system prompt and a
// short conversation; withEmail puts one address in the last message.
func chatBody(b *testing.B, withEmail bool) []byte {
	b.Helper()
	para := "The quarterly report covers revenue, operating costs and the hiring plan for the next two quarters. " +
		"Please keep the summary short, use plain language, and list open questions at the end. "
	last := "Summarise the numbers above for the finance team in five bullet points."
	if withEmail {
		last += " Send questions to jo.smith@example.com."
	}
	body, err := json.Marshal(map[string]any{
		"model": "chat", "max_tokens": 256, "temperature": 0.2,
		"messages": []map[string]string{
			{"role": "system", "content": "You are a careful analyst. " + strings.Repeat(para, 3)},
			{"role": "user", "content": strings.Repeat(para, 4)},
			{"role": "assistant", "content": "Understood. " + strings.Repeat(para, 2)},
			{"role": "user", "content": last},
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	if len(body) < 1800 || len(body) > 2300 {
		b.Fatalf("body is %d bytes, want about 2 KB", len(body))
	}
	return body
}

// BenchmarkGuardrailsAdmit measures the input guardrail on every request
// of an endpoint that enables it: parse, keyword check, detectors, and for
// "mask-email" the rewrite of the body.
func BenchmarkGuardrailsAdmit(b *testing.B) {
	g := aigateway.NewGuardrails(nil)
	for _, bc := range []struct {
		name  string
		gw    *sluice.AIGateway
		email bool
	}{
		{"block-clean", input(aigateway.Block, "bluebird", "project x"), false},
		{"mask-clean", input(aigateway.Mask), false},
		{"mask-email", input(aigateway.Mask), true},
		{"keywords-only", input(aigateway.None, "bluebird", "project x"), false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := chatBody(b, bc.email)
			ep := &proxy.Endpoint{Name: "chat", Gateway: bc.gw}
			ctx := context.Background()
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				a := &proxy.Admission{Endpoint: ep, Body: body, Header: http.Header{}}
				if _, err := g.Admit(ctx, a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
