package proxy

import (
	"context"
	"net/http"
	"net/netip"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/usage"
)

// Admission is a call as admitters see it: who calls, what for, and where
// it may go. Admitters may narrow Targets, replace Body, and add response
// headers; the proxy sends the call to Targets[0].
type Admission struct {
	Request  *http.Request
	Key      *sluice.Key
	Endpoint *Endpoint
	API      sluice.API
	Model    string // the endpoint name the client sent
	Stream   bool
	User     string // OpenAI's `user` field
	// MaxTokens is the completion cap the client set (0: none).
	MaxTokens int64
	// Body is the client's JSON body. An admitter that rewrites it (to
	// mask detected values) must keep it a valid JSON object with the same
	// model and stream members.
	Body []byte
	// Targets are the candidates, in order of preference.
	Targets []*Target
	// Header holds headers to add to the response.
	Header http.Header
	// Record is the call's usage record as far as it is known.
	Record *sluice.UsageRecord
	// DialedAddr is the upstream address the call's connection reached,
	// set after the upstream call when Options.TraceDial is on.
	DialedAddr netip.AddrPort

	// Counter counts prompt tokens for PromptTokens; nil uses a shared one.
	Counter *usage.Counter

	c       *call
	prompt  int64
	counted bool
}

var sharedCounter usage.Counter

// PromptTokens is the call's prompt size counted with the tokenizer,
// computed once on first use.
func (a *Admission) PromptTokens() int64 {
	if !a.counted {
		a.counted = true
		model := a.Endpoint.Name
		if len(a.Targets) > 0 {
			model = a.Targets[0].Model
		}
		c := a.Counter
		if c == nil {
			c = &sharedCounter
		}
		a.prompt, _ = c.PromptTokens(a.API, model, a.Body)
	}
	return a.prompt
}

// WorstCaseOutput is the most completion tokens the call can produce as
// far as Sluice knows: the client's max_tokens, else the endpoint's cap.
func (a *Admission) WorstCaseOutput() int64 {
	if a.MaxTokens > 0 {
		return a.MaxTokens
	}
	return a.Endpoint.MaxOutputTokens
}

// Admitter is one admission step: data classification and routing, rate
// limits, budget reservations.
type Admitter interface {
	// Admit checks the call. An error refuses it; an *apierr.Error gives
	// the client's answer, anything else is a 500. A non-nil done is
	// called exactly once with the final usage record, after it was
	// committed, whether the call succeeded or not, including when a later
	// admitter refuses the call.
	Admit(ctx context.Context, a *Admission) (done func(*sluice.UsageRecord), err error)
}

// admit runs the admitters and picks the call's target.
func (c *call) admit() error {
	a := &Admission{
		Request: c.r, Key: c.key, Endpoint: c.ep, API: c.api, Model: c.req.model, Stream: c.req.stream,
		User: c.req.user, MaxTokens: c.req.maxTokens, Body: c.req.body, Targets: c.ep.Targets,
		Record: &c.rec, Counter: c.p.o.Counter, c: c,
	}
	c.adm = a
	for _, ad := range c.p.o.Admitters {
		done, err := ad.Admit(c.r.Context(), a)
		if done != nil {
			c.dones = append(c.dones, done)
		}
		if err != nil {
			c.addHeaders()
			return err
		}
	}
	if len(a.Targets) == 0 {
		return &apierr.Error{Status: 503, Type: "server_error", Code: "no_upstream",
			Msg: "The model '" + c.ep.Name + "' has no upstream that may take this request.", Class: sluice.ErrClassPermission}
	}
	c.addHeaders()
	if len(a.Body) != len(c.req.body) || len(a.Body) == 0 || &a.Body[0] != &c.req.body[0] {
		req, perr := parseRequest(c.api, a.Body, c.popts)
		if perr != nil {
			return &apierr.Error{Status: 500, Type: "server_error", Msg: "internal error", Class: sluice.ErrClassInternal, Err: perr}
		}
		c.req = req
	}
	c.tgt = a.Targets[0]
	return nil
}

func (c *call) addHeaders() {
	h := c.w.Header()
	for k, v := range c.adm.Header {
		h[k] = v
	}
}
