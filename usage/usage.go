// Package usage finds and estimates the token usage of OpenAI-style
// requests and responses, for metering.
//
// Reported usage comes first: FromBody reads the top-level "usage" of a
// response body and ParseChunk that of a streaming chunk. Both scan only
// the top level of the JSON and decode nothing but the usage object and the
// model name, so they stay cheap on large bodies and cannot be fooled by a
// "usage" key inside generated content.
//
// When an upstream reports nothing (or a stream is cut before its usage
// chunk), a Counter estimates with OpenAI's tokenizers: PromptTokens for a
// request body, and Count over the text gathered with AppendText from the
// response.
package usage

import (
	"bytes"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Usage is a token count as OpenAI reports it.
type Usage struct {
	Prompt, Completion, Total int64
}

// top is what a scan of a response's top level found.
type top struct {
	usage    Usage
	hasUsage bool
	model    []byte // raw contents of the "model" string, nil if none
	choices  int    // -1: absent or null; 0: empty array; 1: non-empty
}

// scanTop scans the top-level object of b. ok is false if b is not a JSON
// object.
func scanTop(b []byte) (t top, ok bool) {
	t.choices = -1
	o := openObject(b, skipWS(b, 0))
	for o.next() {
		switch topKey(o.key) {
		case "usage":
			var end int
			t.usage, end, t.hasUsage = parseUsage(b, o.val)
			o.done(end)
		case "model":
			raw, end, isStr := stringAt(b, o.val)
			t.model = nil
			if isStr {
				t.model = raw
			}
			o.done(end)
		case "choices":
			t.choices = -1
			if b[o.val] == '[' {
				t.choices = 1
				if i := skipWS(b, o.val+1); i < len(b) && b[i] == ']' {
					t.choices = 0
				}
			}
			o.skip()
		default:
			o.skip()
		}
	}
	if o.err || skipWS(b, o.end) != len(b) {
		return top{choices: -1}, false
	}
	return t, true
}

// topKey returns the name of a top-level member scanTop reads, or "".
func topKey(raw []byte) string {
	switch string(raw) {
	case "usage":
		return "usage"
	case "model":
		return "model"
	case "choices":
		return "choices"
	}
	if bytes.IndexByte(raw, '\\') >= 0 {
		for _, k := range [...]string{"usage", "model", "choices"} {
			if keyIs(raw, k) {
				return k
			}
		}
	}
	return ""
}

// parseUsage parses the usage value at b[i]. ok is false unless it is an
// object whose token counts are all valid (null or a non-negative integer).
func parseUsage(b []byte, i int) (u Usage, end int, ok bool) {
	if b[i] != '{' {
		return Usage{}, skipValue(b, i), false
	}
	var bad [3]bool
	o := openObject(b, i)
	for o.next() {
		var dst *int64
		var f int
		switch {
		case keyIs(o.key, "prompt_tokens"):
			dst, f = &u.Prompt, 0
		case keyIs(o.key, "completion_tokens"):
			dst, f = &u.Completion, 1
		case keyIs(o.key, "total_tokens"):
			dst, f = &u.Total, 2
		default:
			o.skip()
			continue
		}
		n, e, valid := tokenCount(b, o.val)
		*dst, bad[f] = n, !valid
		o.done(e)
	}
	if o.err {
		return Usage{}, -1, false
	}
	if bad[0] || bad[1] || bad[2] {
		return Usage{}, o.end, false
	}
	if u.Total == 0 {
		u.Total = u.Prompt + u.Completion
	}
	return u, o.end, true
}

// FromBody returns the usage and model reported by an OpenAI-style response
// body (chat completion, completion or embeddings). ok is false when the
// body is not a JSON object or has no valid top-level "usage" object: one
// whose prompt_tokens, completion_tokens and total_tokens are each absent,
// null or a non-negative integer. A missing or zero total_tokens is taken
// as prompt plus completion. model is "" unless the top-level "model" is a
// string. With duplicate keys the last one counts, as with encoding/json.
func FromBody(body []byte) (u Usage, model string, ok bool) {
	t, valid := scanTop(body)
	if !valid {
		return Usage{}, "", false
	}
	if t.model != nil {
		model = modelName(t.model)
	}
	return t.usage, model, t.hasUsage
}

// Chunk is what ParseChunk found in a streaming chunk.
type Chunk struct {
	Usage    Usage
	HasUsage bool // the chunk has a valid "usage" object (see FromBody)
	// UsageOnly marks the final usage chunk OpenAI sends when asked with
	// stream_options.include_usage: usage is present and "choices" is an
	// empty array (or absent, as some compatible servers send it).
	UsageOnly bool
	Model     string
	Done      bool // the data is the [DONE] sentinel
}

// ParseChunk parses the data of one streaming event. It does not allocate
// for model names it has seen before. Data that is neither [DONE] nor a
// JSON object gives the zero Chunk.
func ParseChunk(data []byte) Chunk {
	if string(bytes.TrimSpace(data)) == "[DONE]" {
		return Chunk{Done: true}
	}
	t, ok := scanTop(data)
	if !ok {
		return Chunk{}
	}
	c := Chunk{Usage: t.usage, HasUsage: t.hasUsage, UsageOnly: t.hasUsage && t.choices <= 0}
	if t.model != nil {
		c.Model = modelName(t.model)
	}
	return c
}

// modelName decodes a raw model string, reusing the strings of names seen
// before.
func modelName(raw []byte) string {
	if bytes.IndexByte(raw, '\\') >= 0 || !utf8.Valid(raw) {
		return string(appendUnquote(nil, raw))
	}
	return intern(raw)
}

// Interned model names. Readers load the map without locking; a writer
// copies it. The number of names is bounded so that a hostile upstream
// cannot grow it without limit; past the bound names are allocated.
var (
	internMu  sync.Mutex
	interned  atomic.Pointer[map[string]string]
	maxIntern = 512
)

func intern(b []byte) string {
	if m := interned.Load(); m != nil {
		if s, ok := (*m)[string(b)]; ok {
			return s
		}
	}
	s := string(b)
	if len(s) > 200 {
		return s
	}
	internMu.Lock()
	defer internMu.Unlock()
	old := interned.Load()
	if old != nil && len(*old) >= maxIntern {
		return s
	}
	m := make(map[string]string, 1+lenMap(old))
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[s] = s
	interned.Store(&m)
	return s
}

func lenMap(m *map[string]string) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// AppendText appends to dst the text generated in an OpenAI-style chunk or
// response and returns the extended slice. For every element of the
// top-level "choices" it appends, in this order: "text" (completions), and
// from "delta" (chat chunks) or else "message" (chat responses): "content",
// "refusal", "reasoning_content", "reasoning", then the function name and
// arguments of each "tool_calls" entry and of "function_call". Values that
// are not strings are ignored.
//
// Counting tokens piece by piece overstates the total; gather the text of a
// whole stream and count it once.
func AppendText(dst, data []byte) []byte {
	mark := len(dst)
	o := openObject(data, skipWS(data, 0))
	for o.next() {
		if !keyIs(o.key, "choices") || data[o.val] != '[' {
			if keyIs(o.key, "choices") {
				dst = dst[:mark] // a later "choices" replaces an earlier one
			}
			o.skip()
			continue
		}
		dst = dst[:mark]
		a := openArray(data, o.val)
		for a.next() {
			dst = appendChoice(dst, data, a.val)
			a.skip()
		}
		o.done(a.end)
	}
	if o.err {
		return dst[:mark]
	}
	return dst
}

// The fields of a choice that AppendText reads, in output order.
var (
	choiceTextKeys = [...]string{"content", "refusal", "reasoning_content", "reasoning"}
	functionKeys   = [...]string{"name", "arguments"}
)

// appendChoice appends the text of the choice object at b[i].
func appendChoice(dst, b []byte, i int) []byte {
	text, delta, msg := -1, -1, -1
	o := openObject(b, i)
	for o.next() {
		switch {
		case keyIs(o.key, "text"):
			text = o.val
		case keyIs(o.key, "delta"):
			delta = o.val
		case keyIs(o.key, "message"):
			msg = o.val
		}
		o.skip()
	}
	if o.err {
		return dst
	}
	if delta >= 0 {
		msg = delta
	}
	if text >= 0 {
		dst = appendString(dst, b, text)
	}
	if msg < 0 || b[msg] != '{' {
		return dst
	}
	var fields [len(choiceTextKeys)]int
	toolCalls, functionCall := -1, -1
	for k := range fields {
		fields[k] = -1
	}
	o = openObject(b, msg)
	for o.next() {
		for k, name := range choiceTextKeys {
			if keyIs(o.key, name) {
				fields[k] = o.val
			}
		}
		switch {
		case keyIs(o.key, "tool_calls"):
			toolCalls = o.val
		case keyIs(o.key, "function_call"):
			functionCall = o.val
		}
		o.skip()
	}
	if o.err {
		return dst
	}
	for _, v := range fields {
		if v >= 0 {
			dst = appendString(dst, b, v)
		}
	}
	if toolCalls >= 0 && b[toolCalls] == '[' {
		a := openArray(b, toolCalls)
		for a.next() {
			fn := memberOf(b, a.val, "function")
			if fn >= 0 {
				dst = appendFunction(dst, b, fn)
			}
			a.skip()
		}
	}
	if functionCall >= 0 {
		dst = appendFunction(dst, b, functionCall)
	}
	return dst
}

// appendFunction appends the name and arguments of the function object at
// b[i].
func appendFunction(dst, b []byte, i int) []byte {
	for _, k := range functionKeys {
		if v := memberOf(b, i, k); v >= 0 {
			dst = appendString(dst, b, v)
		}
	}
	return dst
}

// memberOf returns the position of the value of the last member named key
// of the object at b[i], or -1.
func memberOf(b []byte, i int, key string) int {
	v := -1
	o := openObject(b, i)
	for o.next() {
		if keyIs(o.key, key) {
			v = o.val
		}
		o.skip()
	}
	if o.err {
		return -1
	}
	return v
}

// appendString appends the decoded string at b[i], if it is one.
func appendString(dst, b []byte, i int) []byte {
	if raw, _, ok := stringAt(b, i); ok {
		return appendUnquote(dst, raw)
	}
	return dst
}
