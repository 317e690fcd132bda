package classify

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// ExtractText returns the user-visible text of an OpenAI-style chat,
// completions, embeddings or responses request body, one string per line,
// so that detectors see what the user wrote and not the JSON around it
// (keys, model names, numbers). JSON escapes are decoded, so "\u0040"
// cannot hide an '@'.
//
// It collects the strings under the top-level fields messages, prompt,
// input, system and instructions, reached only through array elements and
// the keys content, text, tool_calls, function and arguments. That covers
// messages[].content (a string or the "text" of each part),
// messages[].tool_calls[].function.arguments, prompt and input as strings,
// arrays of strings or message items, and skips roles, names, image URLs
// and token-id arrays.
//
// A body that is not a valid JSON object is returned unchanged: scanning
// too much is safer than scanning nothing.
func ExtractText(body []byte) []byte {
	out, err := extract(body)
	if err != nil {
		return body
	}
	return out
}

var (
	extractTop  = map[string]bool{"messages": true, "prompt": true, "input": true, "system": true, "instructions": true}
	extractPath = map[string]bool{"content": true, "text": true, "tool_calls": true, "function": true, "arguments": true}
)

// frame is one open JSON container on the walk: whether it is an object,
// whether strings inside it are wanted, and, for objects, the key whose
// value comes next.
type frame struct {
	object bool
	wanted bool
	key    string
	expect bool // an object expects a key next
}

func extract(body []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	out := make([]byte, 0, len(body)) // decoded text never outgrows its JSON
	var stack []frame
	first := true
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF // the object was never closed
		}
		if err != nil {
			return nil, err
		}
		if first {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return nil, errNotObject
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
						return nil, errNotObject // trailing data
					}
					return out, nil
				}
				continue
			}
			top.key, _ = tok.(string)
			top.expect = false
			continue
		}
		// A value: is it wanted where it stands?
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
			if wanted && v != "" {
				if len(out) > 0 {
					out = append(out, '\n')
				}
				out = append(out, v...)
			}
		}
	}
}

var errNotObject = errors.New("classify: request body is not a single JSON object")
