package classify

import (
	"bytes"
	"encoding/json"
)

// ExtractText returns the user-visible text of an OpenAI-style chat,
// completions, embeddings or responses request body, one string per line,
// so that detectors see what the user wrote and not the JSON around it
// (keys, model names, numbers). JSON escapes are decoded, so "\u0040"
// cannot hide an '@'.
//
// It collects messages[].content (a string, or the "text" of each part),
// messages[].tool_calls[].function.arguments, prompt, input (strings,
// arrays of strings, or message items with content), system and
// instructions. Token-id arrays are skipped.
//
// A body that is not a JSON object is returned unchanged: scanning too
// much is safer than scanning nothing.
func ExtractText(body []byte) []byte {
	var req struct {
		Messages     []json.RawMessage `json:"messages"`
		Prompt       json.RawMessage   `json:"prompt"`
		Input        json.RawMessage   `json:"input"`
		System       json.RawMessage   `json:"system"`
		Instructions json.RawMessage   `json:"instructions"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return body
	}
	var x extractor
	for _, m := range req.Messages {
		x.message(m)
	}
	for _, v := range []json.RawMessage{req.System, req.Instructions, req.Prompt, req.Input} {
		x.value(v, 0)
	}
	return x.out
}

type extractor struct {
	out []byte
}

const maxExtractDepth = 8

func (x *extractor) emit(s string) {
	if s == "" {
		return
	}
	if len(x.out) > 0 {
		x.out = append(x.out, '\n')
	}
	x.out = append(x.out, s...)
}

// message handles a chat message object: its content and its tool calls.
func (x *extractor) message(raw json.RawMessage) {
	var m struct {
		Content   json.RawMessage `json:"content"`
		ToolCalls []struct {
			Function struct {
				Arguments string `json:"arguments"`
			} `json:"function"`
		} `json:"tool_calls"`
	}
	if json.Unmarshal(raw, &m) != nil {
		x.value(raw, 1)
		return
	}
	x.value(m.Content, 1)
	for _, tc := range m.ToolCalls {
		x.emit(tc.Function.Arguments)
	}
}

// value emits the strings of a content value: a string, an array of
// strings or parts, or an object with "text" or "content".
func (x *extractor) value(raw json.RawMessage, depth int) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || depth > maxExtractDepth {
		return
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			x.emit(s)
		}
	case '[':
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) == nil {
			for _, it := range items {
				x.value(it, depth+1)
			}
		}
	case '{':
		var part struct {
			Text      json.RawMessage `json:"text"`
			Content   json.RawMessage `json:"content"`
			Arguments json.RawMessage `json:"arguments"`
		}
		if json.Unmarshal(raw, &part) == nil {
			x.value(part.Text, depth+1)
			x.value(part.Content, depth+1)
			x.value(part.Arguments, depth+1)
		}
	}
}
