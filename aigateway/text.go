package aigateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"

	"github.com/sluice-gateway/sluice/classify"
)

// shape says which strings of a JSON body are text a person or a model
// wrote, as opposed to ids, roles and model names.
type shape int

const (
	// requestShape follows classify.ExtractText: strings under messages,
	// prompt, input, system and instructions, through content, text,
	// tool_calls, function and arguments.
	requestShape shape = iota
	// responseShape takes the strings held by a textKeys key at any depth
	// (choices[].message.content, choices[].delta.content,
	// choices[].text, tool call arguments, content parts' text, error
	// messages) and every string under a custom model's predictions or
	// outputs except idKeys. It also reads a stream's events: a sequence of
	// JSON values, optionally ending with [DONE].
	responseShape
)

var (
	requestTop  = map[string]bool{"messages": true, "prompt": true, "input": true, "system": true, "instructions": true}
	requestPath = map[string]bool{"content": true, "text": true, "tool_calls": true, "function": true, "arguments": true}

	textKeys = map[string]bool{"content": true, "text": true, "arguments": true, "refusal": true,
		"reasoning_content": true, "reasoning": true, "output_text": true, "generated_text": true,
		"completion": true, "message": true, "error": true, "detail": true}
	freeTop = map[string]bool{"predictions": true, "outputs": true}
	idKeys  = map[string]bool{"id": true, "object": true, "model": true, "role": true, "type": true,
		"finish_reason": true, "tool_call_id": true, "call_id": true}
)

// segment is one JSON string of a body whose value is part of the text:
// body[rawStart:rawEnd] is the string token, quotes included, and
// text[start:end] its decoded value.

// doc is a body and its text: the wanted strings joined by '\n' (by
// nothing between a stream's events, so that a value split across deltas
// reads whole).
type doc struct {
	body  []byte
	text  []byte
	segs  []classify.Segment
	plain bool // not JSON of the expected shape: text is the whole body
}

// frame is one open JSON container.
type frame struct {
	object bool
	expect bool   // an object expects a key next
	key    string // an object's current key; an array's holder's key
	wanted bool   // requestShape: strings here are text
	free   bool   // responseShape: inside predictions or outputs
}

// parse reads body as sh describes. A body that is not JSON of that shape
// gives a plain doc, whose text is the whole body: scanning too much is
// safer than scanning nothing.
func parse(body []byte, sh shape) *doc {
	d, err := walk(body, sh)
	if err != nil {
		return &doc{body: body, text: body, plain: true}
	}
	return d
}

var errNotObject = errors.New("aigateway: request body is not a JSON object")

func walk(body []byte, sh shape) (*doc, error) {
	in := body
	if sh == responseShape {
		in = bytes.TrimRight(in, " \t\r\n")
		in = bytes.TrimRight(bytes.TrimSuffix(in, []byte("[DONE]")), " \t\r\n")
	}
	d := &doc{body: body, text: make([]byte, 0, len(in)/2)}
	dec := json.NewDecoder(bytes.NewReader(in))
	var stack []frame
	docStart := true // the next string is the first of a JSON value
	for values := 0; ; {
		off := int(dec.InputOffset())
		tok, err := dec.Token()
		if err == io.EOF && len(stack) == 0 && values > 0 {
			return d, nil
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if len(stack) == 0 { // a top-level value
			values++
			if sh == requestShape && values > 1 {
				return nil, errors.New("aigateway: data after the request body")
			}
			docStart = true
			switch v := tok.(type) {
			case json.Delim:
				if sh == requestShape && v != '{' {
					return nil, errNotObject
				}
				stack = append(stack, frame{object: v == '{', expect: v == '{'})
			case string:
				if sh == requestShape {
					return nil, errNotObject
				}
				d.add(body, off, dec, v, docStart)
				docStart = false
			default:
				if sh == requestShape {
					return nil, errNotObject
				}
			}
			continue
		}
		top := &stack[len(stack)-1]
		if top.object && top.expect {
			if delim, ok := tok.(json.Delim); ok && delim == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			top.key, _ = tok.(string)
			top.expect = false
			continue
		}
		// A value inside top: is it text where it stands?
		atTop := len(stack) == 1 && top.object
		var wanted, free bool
		if sh == requestShape {
			wanted = top.wanted
			if top.object {
				wanted = atTop && requestTop[top.key] || !atTop && wanted && requestPath[top.key]
			}
		} else {
			free = top.free || atTop && freeTop[top.key]
			wanted = free && !idKeys[top.key] || !free && textKeys[top.key]
		}
		if top.object {
			top.expect = true
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, frame{object: true, expect: true, wanted: wanted, free: free})
			case '[':
				stack = append(stack, frame{key: top.key, wanted: wanted, free: free})
			case ']':
				stack = stack[:len(stack)-1]
			}
		case string:
			if wanted && v != "" {
				d.add(body, off, dec, v, docStart)
				docStart = false
			}
		}
	}
}

// add records the string value v whose token starts at or after off.
func (d *doc) add(body []byte, off int, dec *json.Decoder, v string, first bool) {
	if len(d.text) > 0 && !first {
		d.text = append(d.text, '\n')
	}
	q := off + bytes.IndexByte(body[off:], '"')
	start := len(d.text)
	d.text = append(d.text, v...)
	d.segs = append(d.segs, classify.Segment{RawStart: q, RawEnd: int(dec.InputOffset()), Start: start, End: len(d.text)})
}

// mask returns the body with each finding, a span of d.text, replaced by a
// typed placeholder such as [EMAIL_1] inside the JSON string it came from
// (equal values of one detector share a number, as classify.Mask numbers
// them), every other byte unchanged, and what was masked as
// "card=1,email=2" (spans per detector). A finding that spans two strings
// is replaced in the first and removed from the others. A plain doc is
// masked as text with classify.Mask.
func (d *doc) mask(findings []classify.Finding) ([]byte, string, error) {
	if d.plain {
		fs := make([]classify.Finding, 0, len(findings))
		for _, f := range findings {
			if f.Start >= 0 && f.End <= len(d.text) && f.Start < f.End {
				fs = append(fs, f)
			}
		}
		if len(fs) == 0 {
			return d.body, "", nil
		}
		return classify.Mask(d.body, fs), classify.CountSpans(fs), nil
	}
	if len(findings) == 0 {
		return d.body, "", nil
	}
	return classify.MaskSegments(d.body, d.text, d.segs, findings)
}

// detectors lists the detectors of fs, sorted, once each.
func detectors(fs []classify.Finding) []string {
	seen := map[string]int{}
	for _, f := range fs {
		seen[f.Detector]++
	}
	return sortedKeys(seen)
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// maskText classifies a body of shape sh and masks what it finds; it
// returns the body itself when nothing was found.
func maskText(c *classify.Classifier, body []byte, sh shape) []byte {
	if len(body) == 0 {
		return body
	}
	d := parse(body, sh)
	res := c.Classify(d.text)
	out, _, err := d.mask(res.Findings)
	if err != nil {
		// Cannot happen for strings the decoder produced; never keep
		// the values in that case.
		return classify.Mask(body, c.Classify(body).Findings)
	}
	return out
}
