package route

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-gateway/sluice/classify"
)

// errTextMismatch means the strings maskBody found are not the text the
// findings refer to; it never masks in that case.
var errTextMismatch = errors.New("route: request text does not match classify.ExtractText")

// segment is one JSON string of the body whose decoded value is part of
// the extracted text: body[rawStart:rawEnd] is the string token, quotes
// included, and text[start:end] its value.
type segment struct {
	rawStart, rawEnd int
	start, end       int
}

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
func segments(body, text []byte) ([]segment, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var (
		segs  []segment
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
			segs = append(segs, segment{rawStart: off + q, rawEnd: int(dec.InputOffset()), start: pos, end: pos + len(v)})
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
	fs := make([]classify.Finding, 0, len(findings))
	for _, f := range findings {
		if f.Start >= 0 && f.End <= len(text) && f.Start < f.End {
			fs = append(fs, f)
		}
	}
	slices.SortFunc(fs, func(a, b classify.Finding) int { return a.Start - b.Start })
	// Overlapping findings (Classify merges them, so only from other
	// callers) are united under the first one's name.
	merged := fs[:0]
	for _, f := range fs {
		if n := len(merged); n > 0 && f.Start < merged[n-1].End {
			merged[n-1].End = max(merged[n-1].End, f.End)
			continue
		}
		merged = append(merged, f)
	}
	fs = merged

	type valueKey struct{ detector, value string }
	numbers := map[valueKey]int{}
	next := map[string]int{}
	spans := map[string]int{}
	placeholders := make([]string, len(fs))
	for i, f := range fs {
		k := valueKey{f.Detector, string(text[f.Start:f.End])}
		n, ok := numbers[k]
		if !ok {
			next[f.Detector]++
			n = next[f.Detector]
			numbers[k] = n
		}
		spans[f.Detector]++
		placeholders[i] = "[" + label(f.Detector) + "_" + strconv.Itoa(n) + "]"
	}

	out := make([]byte, 0, len(body)+len(fs)*8)
	var enc bytes.Buffer
	je := json.NewEncoder(&enc)
	je.SetEscapeHTML(false)
	placed := make([]bool, len(fs))
	prevRaw, fi := 0, 0
	var value []byte
	for _, s := range segs {
		for fi < len(fs) && fs[fi].End <= s.start {
			fi++
		}
		if fi == len(fs) || fs[fi].Start >= s.end {
			continue // nothing to mask here: keep the original bytes
		}
		value = value[:0]
		cur := s.start
		for j := fi; j < len(fs) && fs[j].Start < s.end; j++ {
			from, to := max(fs[j].Start, s.start), min(fs[j].End, s.end)
			value = append(value, text[cur:from]...)
			if !placed[j] {
				value = append(value, placeholders[j]...)
				placed[j] = true
			}
			cur = to
		}
		value = append(value, text[cur:s.end]...)
		enc.Reset()
		if err := je.Encode(string(value)); err != nil {
			return nil, "", fmt.Errorf("route: encoding a masked string: %w", err)
		}
		out = append(out, body[prevRaw:s.rawStart]...)
		out = append(out, bytes.TrimSuffix(enc.Bytes(), []byte("\n"))...)
		prevRaw = s.rawEnd
	}
	out = append(out, body[prevRaw:]...)

	names := make([]string, 0, len(spans))
	for d := range spans {
		names = append(names, d)
	}
	slices.Sort(names)
	var sb strings.Builder
	for i, d := range names {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(d + "=" + strconv.Itoa(spans[d]))
	}
	return out, sb.String(), nil
}

// label is a detector name in upper case with anything but letters and
// digits turned into '_', as classify.Mask writes it.
func label(detector string) string {
	if detector == "" {
		return "REDACTED"
	}
	b := []byte(detector)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		default:
			b[i] = '_'
		}
	}
	return string(b)
}
