package aigateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/aigateway"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/proxy"
)

const secretBody = `{"model":"chat","stream":true,"max_tokens":50,"messages":[` +
	`{"role":"system","content":"You are a billing assistant."},` +
	`{"role":"user","content":"Charge 4111 1111 1111 1111 and mail the receipt to jo@example.com."}]}`

func input(behavior string, keywords ...string) *sluice.AIGateway {
	p := &sluice.GuardrailParameters{InvalidKeywords: keywords}
	if behavior != "" {
		p.PII = &sluice.PIIBehavior{Behavior: behavior}
	}
	return &sluice.AIGateway{Guardrails: &sluice.Guardrails{Input: p}}
}

func output(behavior string, keywords ...string) *sluice.AIGateway {
	gw := input(behavior, keywords...)
	gw.Guardrails.Output, gw.Guardrails.Input = gw.Guardrails.Input, nil
	return gw
}

func admission(gw *sluice.AIGateway, body string) *proxy.Admission {
	ep := &proxy.Endpoint{Name: "chat", Gateway: gw}
	return &proxy.Admission{Key: &sluice.Key{ID: "k", Team: "t"}, Endpoint: ep, API: sluice.APIChat, Model: "chat",
		Body: []byte(body), Header: http.Header{}, Record: &sluice.UsageRecord{}}
}

// blocked checks that err is a guardrail refusal and returns its message.
func blocked(t *testing.T, err error) string {
	t.Helper()
	var ae *apierr.Error
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Code != aigateway.BlockedCode || ae.Class != sluice.ErrClassDataPolicy {
		t.Fatalf("got %v, want a 400 %s", err, aigateway.BlockedCode)
	}
	return ae.Msg
}

func TestInputBlock(t *testing.T) {
	g := aigateway.NewGuardrails(nil)
	a := admission(input(aigateway.Block), secretBody)
	_, err := g.Admit(context.Background(), a)
	msg := blocked(t, err)
	if !strings.Contains(msg, "(card, email)") {
		t.Errorf("message %q does not name the detectors", msg)
	}
	if strings.Contains(msg, "4111") || strings.Contains(msg, "jo@") || strings.Contains(err.Error(), "example.com") {
		t.Errorf("the refusal shows a detected value: %q", err)
	}
	if string(a.Body) != secretBody {
		t.Error("BLOCK changed the body")
	}
	// Nothing sensitive: the call passes as it came.
	clean := `{"model":"chat","messages":[{"role":"user","content":"What is a receipt?"}]}`
	a = admission(input(aigateway.Block), clean)
	if done, err := g.Admit(context.Background(), a); err != nil || done != nil || string(a.Body) != clean {
		t.Fatalf("clean call: err=%v body=%s", err, a.Body)
	}
}

func TestInputMask(t *testing.T) {
	g := aigateway.NewGuardrails(nil)
	a := admission(input(aigateway.Mask), secretBody)
	if _, err := g.Admit(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	want := strings.NewReplacer("4111 1111 1111 1111", "[CARD_1]", "jo@example.com", "[EMAIL_1]").Replace(secretBody)
	if string(a.Body) != want {
		t.Fatalf("masked body\n  %s\nwant\n  %s", a.Body, want)
	}
	var req struct {
		Model    string
		Stream   bool
		Messages []struct{ Content string }
	}
	if err := json.Unmarshal(a.Body, &req); err != nil || req.Model != "chat" || !req.Stream || len(req.Messages) != 2 {
		t.Fatalf("masked body does not parse as the same request: %+v, %v", req, err)
	}
	if got := a.Header.Get(aigateway.MaskedHeader); got != "card=1,email=1" {
		t.Errorf("%s = %q", aigateway.MaskedHeader, got)
	}
}

// TestInputMaskForwarded runs the guardrail in a real proxy: the upstream
// receives the masked body.
func TestInputMaskForwarded(t *testing.T) {
	env := newProxyEnv(t, input(aigateway.Mask))
	resp, body := env.post(t, `{"model":"chat","messages":[{"role":"user","content":"My IBAN is DE89 3704 0044 0532 0130 00, SSN 219-45-6789."}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	got := env.upstreamBody()
	if strings.Contains(got, "DE89") || strings.Contains(got, "219-45") || !strings.Contains(got, "My IBAN is [IBAN_1], SSN [SSN_1].") {
		t.Fatalf("upstream received %s", got)
	}
	if !json.Valid([]byte(got)) {
		t.Fatalf("upstream received invalid JSON: %s", got)
	}
	if h := resp.Header.Get(aigateway.MaskedHeader); h != "iban=1,ssn=1" {
		t.Errorf("%s = %q", aigateway.MaskedHeader, h)
	}

	env = newProxyEnv(t, input(aigateway.Block))
	resp, body = env.post(t, `{"model":"chat","messages":[{"role":"user","content":"SSN 219-45-6789"}]}`)
	if resp.StatusCode != 400 || !strings.Contains(body, `"code":"`+aigateway.BlockedCode+`"`) || strings.Contains(body, "219-45") {
		t.Fatalf("BLOCK: status %d: %s", resp.StatusCode, body)
	}
	if got := env.upstreamBody(); got != "" {
		t.Fatalf("a blocked call reached the upstream: %s", got)
	}
}

func TestInputNone(t *testing.T) {
	g := aigateway.NewGuardrails(nil)
	for name, gw := range map[string]*sluice.AIGateway{
		"NONE":           input(aigateway.None),
		"no pii":         input(""),
		"no guardrails":  {},
		"no AI Gateway":  nil,
		"only output":    output(aigateway.Block),
		"safety, topics": {Guardrails: &sluice.Guardrails{Input: &sluice.GuardrailParameters{Safety: true, ValidTopics: []string{"x"}}}},
	} {
		a := admission(gw, secretBody)
		if done, err := g.Admit(context.Background(), a); err != nil || done != nil || string(a.Body) != secretBody || len(a.Header) != 0 {
			t.Errorf("%s: err=%v body changed=%v header=%v", name, err, string(a.Body) != secretBody, a.Header)
		}
	}
}

func TestInputKeywords(t *testing.T) {
	g := aigateway.NewGuardrails(nil)
	gw := input(aigateway.None, "Bluebird", "  project x ", "Übermensch")
	for body, refuse := range map[string]bool{
		`{"model":"chat","messages":[{"role":"user","content":"tell me about BLUEBIRD."}]}`:        true,
		`{"model":"chat","messages":[{"role":"user","content":"bluebirds sing"}]}`:                 false,
		`{"model":"chat","messages":[{"role":"user","content":"the bluebird_v2 build"}]}`:          false,
		`{"model":"chat","prompt":"Status of Project X?"}`:                                         true,
		`{"model":"chat","prompt":"project xylophone"}`:                                            false,
		`{"model":"chat","messages":[{"role":"user","content":"ein übermensch"}]}`:                 true,
		`{"model":"chat","messages":[{"role":"user","content":"hi"}],"metadata":{"t":"bluebird"}}`: false,
		`{"model":"bluebird","messages":[{"role":"user","content":"hi"}]}`:                         false,
	} {
		_, err := g.Admit(context.Background(), admission(gw, body))
		if !refuse {
			if err != nil {
				t.Errorf("%s: refused: %v", body, err)
			}
			continue
		}
		msg := blocked(t, err)
		if strings.Contains(strings.ToLower(msg), "bluebird") || strings.Contains(strings.ToLower(msg), "project") {
			t.Errorf("the refusal names the keyword: %q", msg)
		}
	}
	// Keywords apply with MASK too, before masking.
	_, err := g.Admit(context.Background(), admission(input(aigateway.Mask, "refund"), `{"model":"chat","prompt":"Refund jo@example.com"}`))
	blocked(t, err)
}

func TestFilterOutput(t *testing.T) {
	g := aigateway.NewGuardrails(nil)
	resp := `{"id":"chatcmpl-1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Call +1 415 555 0132 or write to jo@example.com."},"finish_reason":"stop"}],"usage":{"total_tokens":9}}`

	out, changed, err := g.FilterOutput(output(aigateway.Mask), []byte(resp))
	want := strings.NewReplacer("+1 415 555 0132", "[PHONE_1]", "jo@example.com", "[EMAIL_1]").Replace(resp)
	if err != nil || !changed || string(out) != want {
		t.Fatalf("MASK: %s (changed %v, err %v)\nwant %s", out, changed, err, want)
	}

	_, _, err = g.FilterOutput(output(aigateway.Block), []byte(resp))
	if msg := blocked(t, err); !strings.Contains(msg, "response") || !strings.Contains(msg, "(email, phone)") {
		t.Errorf("BLOCK message %q", msg)
	}

	_, _, err = g.FilterOutput(output(aigateway.None, "WRITE"), []byte(resp))
	blocked(t, err)

	for name, gw := range map[string]*sluice.AIGateway{"NONE": output(aigateway.None), "input only": input(aigateway.Block), "nil": nil} {
		if out, changed, err := g.FilterOutput(gw, []byte(resp)); err != nil || changed || string(out) != resp {
			t.Errorf("%s: changed=%v err=%v", name, changed, err)
		}
		if aigateway.NeedsOutput(gw) {
			t.Errorf("%s: NeedsOutput", name)
		}
	}
	if !aigateway.NeedsOutput(output(aigateway.Mask)) || !aigateway.NeedsOutput(output("", "x")) {
		t.Error("NeedsOutput false for acting output guardrails")
	}
	clean := `{"choices":[{"message":{"content":"fine"}}]}`
	if out, changed, err := g.FilterOutput(output(aigateway.Mask), []byte(clean)); err != nil || changed || string(out) != clean {
		t.Errorf("clean response: %s changed=%v err=%v", out, changed, err)
	}
}

func TestOutputGuardrailsRefuseStreams(t *testing.T) {
	g := aigateway.NewGuardrails(nil)
	for _, b := range []string{aigateway.Mask, aigateway.Block} {
		a := admission(output(b), `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
		a.Stream = true
		_, err := g.Admit(context.Background(), a)
		var ae *apierr.Error
		if !errors.As(err, &ae) || ae.Status != 400 || ae.Param != "stream" {
			t.Fatalf("%s: streamed call admitted: %v", b, err)
		}
		a.Stream = false
		a.Body = []byte(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
		if _, err := g.Admit(context.Background(), a); err != nil {
			t.Fatalf("%s: unstreamed call refused: %v", b, err)
		}
	}
	// Output guardrails set to NONE filter nothing, so streams pass.
	a := admission(output(aigateway.None), `{"model":"chat","stream":true,"messages":[]}`)
	a.Stream = true
	if _, err := g.Admit(context.Background(), a); err != nil {
		t.Fatalf("NONE: %v", err)
	}
}
