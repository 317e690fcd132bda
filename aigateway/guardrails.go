// Package aigateway applies an endpoint's AI Gateway settings
// (sluice.AIGateway, Databricks' shape) that act on payloads: guardrails
// on requests and responses, and inference-table logging. Rate limits are
// applied by admission.RateLimits, usage tracking and fallback by the
// proxy.
//
// Guardrails and the inference log both find sensitive values with Sluice's
// classifier (package classify) and mask them inside the JSON strings they
// came from, so a masked body is still valid JSON with the same members:
//
//	g := aigateway.NewGuardrails(classifier) // a proxy.Admitter
//	body, masked, err := g.FilterOutput(ep.Gateway, responseBody)
//
//	l := aigateway.NewInferenceLogger(store, aigateway.LoggerOptions{Classifier: classifier})
//	go l.Run(ctx)             // proxy.Options{Payload: l.Log}
//	defer l.Close(context.Background())
package aigateway

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/classify"
	"github.com/sluice-gateway/sluice/proxy"
)

// PII behaviors of a guardrail.
const (
	Block = "BLOCK" // refuse a payload with detected values
	Mask  = "MASK"  // replace detected values with placeholders
	None  = "NONE"  // do nothing
)

// MaskedHeader is the response header that lists what the input
// guardrail masked, as "card=1,email=2" (spans per detector).
const MaskedHeader = "X-Sluice-Guardrail-Masked"

// BlockedCode is the error code of a payload a guardrail refused.
const BlockedCode = "guardrail_blocked"

// Guardrails applies an endpoint's AI Gateway guardrails
// (Gateway.Guardrails): as a proxy.Admitter to requests (Input), and
// through FilterOutput to complete responses (Output).
//
// PII is whatever the classifier detects: the built-in detectors (e-mail
// addresses, phone numbers, payment cards, IBANs, SSNs, IP addresses,
// credentials, high-entropy tokens) and the operator's keyword and pattern
// detectors. Only the text of a payload is scanned (messages, prompts and
// inputs of requests; contents, texts and tool-call arguments of
// responses), not its ids or model names. Invalid keywords match whole
// words, case-insensitively. Safety and ValidTopics are not enforced.
//
// Refusals are 400 errors with code BlockedCode whose message names the
// detectors that fired, never the values or the keywords.
type Guardrails struct {
	c *classify.Classifier
}

var _ proxy.Admitter = (*Guardrails)(nil)

// NewGuardrails returns Guardrails detecting with c; nil uses a
// classifier with classify's default detectors.
func NewGuardrails(c *classify.Classifier) *Guardrails {
	if c == nil {
		c = defaultClassifier()
	}
	return &Guardrails{c: c}
}

var defaultClassifier = sync.OnceValue(func() *classify.Classifier {
	c, err := classify.New(classify.Config{})
	if err != nil {
		panic("aigateway: the default classifier does not build: " + err.Error())
	}
	return c
})

// Admit implements proxy.Admitter with the endpoint's input guardrails:
// an invalid keyword or, with PII behavior BLOCK, a detected value refuses
// the call; with MASK the detected values are replaced in a.Body by typed
// placeholders such as [EMAIL_1] and MaskedHeader says what was masked.
func (g *Guardrails) Admit(_ context.Context, a *proxy.Admission) (func(*sluice.UsageRecord), error) {
	if a.Stream && NeedsOutput(a.Endpoint.Gateway) {
		// A streamed answer cannot be filtered before it is sent: refuse
		// rather than let an answer through unchecked.
		return nil, apierr.BadRequest("stream", "unsupported_parameter",
			"The endpoint '%s' checks its answers with output guardrails, which streamed answers cannot pass; send the request without stream.", a.Endpoint.Name)
	}
	p := params(a.Endpoint.Gateway, false)
	if p == nil {
		return nil, nil
	}
	d := parse(a.Body, requestShape)
	res, err := g.check(d, p, "request")
	if err != nil || len(res.Findings) == 0 || p.PII.Behavior != Mask {
		return nil, err
	}
	body, counts, merr := d.mask(res.Findings)
	if merr != nil {
		return nil, &apierr.Error{Status: 500, Type: "server_error", Code: "mask_failed",
			Msg: "The request could not be masked, so it was not sent.", Class: sluice.ErrClassInternal, Err: merr}
	}
	a.Body = body
	if a.Header == nil {
		a.Header = make(map[string][]string)
	}
	a.Header.Set(MaskedHeader, counts)
	return nil, nil
}

// NeedsOutput reports whether gw has output guardrails that act, so that
// the proxy knows to pass complete responses through FilterOutput.
func NeedsOutput(gw *sluice.AIGateway) bool {
	return params(gw, true) != nil
}

// FilterOutput applies gw's output guardrails to a complete, non-streamed
// response body, before it is sent. It returns the body to send, whether
// it was changed (values masked: Content-Length changes), and an
// *apierr.Error to send instead when a guardrail blocks the response.
// Bodies that are not JSON are scanned and masked as text.
//
// Streamed responses cannot be output-filtered (an event is sent as soon
// as it arrives, and a value can be split across events), so Admit refuses
// streamed calls to endpoints with output guardrails.
func (g *Guardrails) FilterOutput(gw *sluice.AIGateway, body []byte) ([]byte, bool, error) {
	p := params(gw, true)
	if p == nil || len(body) == 0 {
		return body, false, nil
	}
	d := parse(body, responseShape)
	res, err := g.check(d, p, "response")
	if err != nil {
		return nil, false, err
	}
	if len(res.Findings) == 0 || p.PII.Behavior != Mask {
		return body, false, nil
	}
	out, _, err := d.mask(res.Findings)
	if err != nil {
		return nil, false, &apierr.Error{Status: 500, Type: "server_error", Code: "mask_failed",
			Msg: "The response could not be masked, so it was not sent.", Class: sluice.ErrClassInternal, Err: err}
	}
	return out, true, nil
}

// params returns the input or output guardrail of gw if it does anything:
// PII BLOCK or MASK, or invalid keywords. Its PII is never nil.
func params(gw *sluice.AIGateway, output bool) *sluice.GuardrailParameters {
	if gw == nil || gw.Guardrails == nil {
		return nil
	}
	p := gw.Guardrails.Input
	if output {
		p = gw.Guardrails.Output
	}
	if p == nil {
		return nil
	}
	act := p.PII != nil && (p.PII.Behavior == Block || p.PII.Behavior == Mask)
	if !act && len(p.InvalidKeywords) == 0 {
		return nil
	}
	if p.PII == nil {
		q := *p
		q.PII = &sluice.PIIBehavior{Behavior: None}
		return &q
	}
	return p
}

// check applies p's keywords and, for BLOCK or MASK, its PII detection to
// d's text. what is "request" or "response", for the message.
func (g *Guardrails) check(d *doc, p *sluice.GuardrailParameters, what string) (classify.Result, error) {
	if hasKeyword(d.text, p.InvalidKeywords) {
		return classify.Result{}, &apierr.Error{Status: 400, Type: "invalid_request_error", Code: BlockedCode,
			Msg:   "The " + what + " contains a keyword this endpoint does not accept, so it was blocked.",
			Class: sluice.ErrClassDataPolicy}
	}
	if p.PII.Behavior != Block && p.PII.Behavior != Mask {
		return classify.Result{}, nil
	}
	res := g.c.Classify(d.text)
	if len(res.Findings) > 0 && p.PII.Behavior == Block {
		return res, &apierr.Error{Status: 400, Type: "invalid_request_error", Code: BlockedCode,
			Msg: "The " + what + " contains sensitive data (" + strings.Join(detectors(res.Findings), ", ") +
				") and this endpoint's guardrails block it.",
			Class: sluice.ErrClassDataPolicy}
	}
	return res, nil
}

// hasKeyword reports whether text contains any of words as a whole word
// (or phrase), ignoring case.
func hasKeyword(text []byte, words []string) bool {
	if len(words) == 0 || len(text) == 0 {
		return false
	}
	lower := bytes.ToLower(text)
	for _, w := range words {
		w = strings.ToLower(strings.TrimSpace(w))
		if w == "" {
			continue
		}
		for off := 0; off < len(lower); {
			i := bytes.Index(lower[off:], []byte(w))
			if i < 0 {
				break
			}
			start, end := off+i, off+i+len(w)
			if boundary(lower, start) && boundary(lower, end) {
				return true
			}
			_, size := utf8.DecodeRune(lower[start:])
			off = start + size
		}
	}
	return false
}

// boundary reports whether no word continues across offset i of text.
func boundary(text []byte, i int) bool {
	if i == 0 || i == len(text) {
		return true
	}
	before, _ := utf8.DecodeLastRune(text[:i])
	after, _ := utf8.DecodeRune(text[i:])
	return !isWord(before) || !isWord(after)
}

func isWord(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }
