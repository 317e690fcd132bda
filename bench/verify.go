package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// The harness checks every answer cheaply under load (status, the expected
// content's bytes, the [DONE] terminator and event count) after checking
// one answer of each kind thoroughly (a probe) before the load starts.

// chatAnswer is what the harness reads of a chat completion.
type chatAnswer struct {
	Choices []struct {
		Message struct {
			Content json.RawMessage `json:"content"`
		} `json:"message"`
		Delta struct {
			Content *string `json:"content"`
		} `json:"delta"`
	} `json:"choices"`
	Usage *struct {
		TotalTokens int64 `json:"total_tokens"`
	} `json:"usage"`
}

// probeResult is what a thorough check of one answer found.
type probeResult struct {
	content string // the assistant's text
	needle  []byte // the content's bytes as they appear in a non-streamed answer
	events  int    // "data:" occurrences in a streamed answer, [DONE] included
	usage   bool   // the answer reported usage (streams: a usage chunk)
}

// analyseChat checks a non-streamed chat completion thoroughly.
func analyseChat(status int, body []byte) (probeResult, error) {
	if status != http.StatusOK {
		return probeResult{}, fmt.Errorf("status %d: %s", status, clip(body))
	}
	var a chatAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return probeResult{}, fmt.Errorf("answer is not JSON: %w: %s", err, clip(body))
	}
	if len(a.Choices) != 1 {
		return probeResult{}, fmt.Errorf("answer has %d choices, want 1: %s", len(a.Choices), clip(body))
	}
	raw := a.Choices[0].Message.Content
	var content string
	if err := json.Unmarshal(raw, &content); err != nil || content == "" {
		return probeResult{}, fmt.Errorf("answer has no text content: %s", clip(body))
	}
	return probeResult{content: content, needle: bytes.Clone(raw), usage: a.Usage != nil && a.Usage.TotalTokens > 0}, nil
}

// analyseStream checks a streamed chat completion thoroughly: every data
// line is a JSON chunk except the last, which is [DONE].
func analyseStream(status int, body []byte) (probeResult, error) {
	if status != http.StatusOK {
		return probeResult{}, fmt.Errorf("status %d: %s", status, clip(body))
	}
	var r probeResult
	var text bytes.Buffer
	done := false
	for _, line := range bytes.Split(body, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue
		}
		data = bytes.TrimSpace(data)
		if done {
			return r, fmt.Errorf("data after [DONE]: %s", clip(data))
		}
		if string(data) == "[DONE]" {
			done = true
			continue
		}
		var a chatAnswer
		if err := json.Unmarshal(data, &a); err != nil {
			return r, fmt.Errorf("stream chunk is not JSON: %w: %s", err, clip(data))
		}
		if a.Usage != nil && a.Usage.TotalTokens > 0 {
			r.usage = true
		}
		for _, c := range a.Choices {
			if c.Delta.Content != nil {
				text.WriteString(*c.Delta.Content)
			}
		}
	}
	if !done {
		return r, fmt.Errorf("stream did not end with [DONE]: %s", clip(body))
	}
	if text.Len() == 0 {
		return r, errors.New("stream carried no text content")
	}
	r.content = text.String()
	r.events = bytes.Count(body, []byte("data:")) // counted as streamCheck counts
	return r, nil
}

// chatCheck returns the cheap per-answer check for non-streamed chat.
func chatCheck(want probeResult) func(int, []byte) error {
	return func(status int, body []byte) error {
		if status != http.StatusOK {
			return fmt.Errorf("status %d: %s", status, clip(body))
		}
		if !bytes.Contains(body, want.needle) {
			return fmt.Errorf("answer lacks the expected content: %s", clip(body))
		}
		return nil
	}
}

var done = []byte("data: [DONE]")

// streamCheck returns the cheap per-answer check for streamed chat.
func streamCheck(want probeResult) func(int, []byte) error {
	return func(status int, body []byte) error {
		if status != http.StatusOK {
			return fmt.Errorf("status %d: %s", status, clip(body))
		}
		if !bytes.HasSuffix(bytes.TrimRight(body, "\r\n"), done) {
			return fmt.Errorf("stream did not end with [DONE]: %s", clip(body))
		}
		if n := bytes.Count(body, []byte("data:")); n != want.events {
			return fmt.Errorf("stream had %d events, want %d", n, want.events)
		}
		return nil
	}
}

// clip shortens a body for an error message.
func clip(b []byte) string {
	const max = 200
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}
