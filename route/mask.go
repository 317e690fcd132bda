package route

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/sluice-gateway/sluice/classify"
)

// errTextMismatch means the strings maskBody found are not the text the
// findings refer to; it never masks in that case.
var errTextMismatch = errors.New("route: request text does not match classify.ExtractText")

// segment is one JSON string of the body whose decoded value is part of
// the extracted text: body[rawStart:rawEnd] is the string token, quotes
// included, and text[start:end] its value.

// These mirror classify.ExtractText's path rule; segments checks the text
// it collects against ExtractText's, byte for byte, so a change there
// makes masking refuse rather than mask the wrong bytes.
var (
	extractTop  = map[string]bool{"messages": true, "prompt": true, "input": true, "system": true, "instructions": true}
	extractPath = map[string]bool{"content": true, "text": true, "tool_calls": true, "function": true, "arguments": true}
)

type frame struct {
	object, wanted, expect bool
	key                    string
}

// segments walks body as classify.ExtractText does and returns where each
// piece of text came from. text must be ExtractText(body).
func segments(body, text []byte) ([]classify.Segment, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var (
		segs  []classify.Segment
		stack []frame
		pos   int // bytes of text accounted for
	)
	for first := true; ; {
		off := int(dec.InputOffset())
		tok, err := dec.Token()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("route: request body: %w", err)
		}
		if first {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return nil, errors.New("route: request body is not a JSON object")
			}
			stack = append(stack, frame{object: true, expect: true})
			first = false
			continue
		}
		top := &stack[len(stack)-1]
		if top.object && top.expect {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					if _, err := dec.Token(); err != io.EOF {
						return nil, errors.New("route: data after the request body")
					}
					if pos != len(text) {
						return nil, errTextMismatch
					}
					return segs, nil
				}
				continue
			}
			top.key, _ = tok.(string)
			top.expect = false
			continue
		}
		wanted := top.wanted
		if top.object {
			if len(stack) == 1 {
				wanted = extractTop[top.key]
			} else {
				wanted = wanted && extractPath[top.key]
			}
			top.expect = true
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, frame{object: true, wanted: wanted, expect: true})
			case '[':
				stack = append(stack, frame{wanted: wanted})
			case ']':
				stack = stack[:len(stack)-1]
			}
		case string:
			if !wanted || v == "" {
				continue
			}
			if pos > 0 {
				if pos >= len(text) || text[pos] != '\n' {
					return nil, errTextMismatch
				}
				pos++
			}
			if len(text)-pos < len(v) || string(text[pos:pos+len(v)]) != v {
				return nil, errTextMismatch
			}
			q := bytes.IndexByte(body[off:], '"')
			if q < 0 {
				return nil, errTextMismatch
			}
			segs = append(segs, classify.Segment{RawStart: off + q, RawEnd: int(dec.InputOffset()), Start: pos, End: pos + len(v)})
			pos += len(v)
		}
	}
}

// maskBody replaces each finding, a span of text = classify.ExtractText(body),
// inside the JSON string it came from with a typed placeholder such as
// [EMAIL_1] (equal values of one detector share a number), and returns the
// new body, still a JSON object with every other byte unchanged, and what
// was masked ("card=1,email=2": spans per detector). A finding that spans
// two strings is replaced in the first and removed from the second.
func maskBody(body, text []byte, findings []classify.Finding) ([]byte, string, error) {
	segs, err := segments(body, text)
	if err != nil {
		return nil, "", err
	}
	return classify.MaskSegments(body, text, segs, findings)
}
