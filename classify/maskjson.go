package classify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Segment ties a span of extracted text, text[Start:End], to the JSON
// string token it was decoded from, body[RawStart:RawEnd] (quotes
// included).
type Segment struct {
	RawStart, RawEnd int
	Start, End       int
}

// MaskSegments replaces each finding, a span of text, by a typed
// placeholder such as [EMAIL_1] inside the JSON string it came from
// (equal values of one detector share a number, as Mask numbers them). It
// returns the new body, with every byte outside the changed strings as it
// was, and what was masked as CountSpans writes it. A finding that spans
// two strings is replaced in the first and removed from the others.
// Overlapping findings are united under the first one's name.
func MaskSegments(body, text []byte, segs []Segment, findings []Finding) ([]byte, string, error) {
	fs := make([]Finding, 0, len(findings))
	for _, f := range findings {
		if f.Start >= 0 && f.End <= len(text) && f.Start < f.End {
			fs = append(fs, f)
		}
	}
	slices.SortFunc(fs, func(a, b Finding) int { return a.Start - b.Start })
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
	placeholders := make([][]byte, len(fs))
	for i, f := range fs {
		k := valueKey{f.Detector, string(text[f.Start:f.End])}
		n, ok := numbers[k]
		if !ok {
			next[f.Detector]++
			n = next[f.Detector]
			numbers[k] = n
		}
		p := appendLabel([]byte{'['}, f.Detector)
		p = append(strconv.AppendInt(append(p, '_'), int64(n), 10), ']')
		placeholders[i] = p
	}

	out := make([]byte, 0, len(body)+len(fs)*8)
	var enc bytes.Buffer
	je := json.NewEncoder(&enc)
	je.SetEscapeHTML(false)
	placed := make([]bool, len(fs))
	prev, fi := 0, 0
	var value []byte
	for _, s := range segs {
		for fi < len(fs) && fs[fi].End <= s.Start {
			fi++
		}
		if fi == len(fs) || fs[fi].Start >= s.End {
			continue // nothing to mask here: keep the original bytes
		}
		value = value[:0]
		cur := s.Start
		for j := fi; j < len(fs) && fs[j].Start < s.End; j++ {
			from, to := max(fs[j].Start, s.Start), min(fs[j].End, s.End)
			value = append(value, text[cur:from]...)
			if !placed[j] {
				value = append(value, placeholders[j]...)
				placed[j] = true
			}
			cur = to
		}
		value = append(value, text[cur:s.End]...)
		enc.Reset()
		if err := je.Encode(string(value)); err != nil {
			return nil, "", fmt.Errorf("classify: encoding a masked string: %w", err)
		}
		out = append(out, body[prev:s.RawStart]...)
		out = append(out, bytes.TrimSuffix(enc.Bytes(), []byte("\n"))...)
		prev = s.RawEnd
	}
	return append(out, body[prev:]...), CountSpans(fs), nil
}

// CountSpans says what findings were masked, as "card=1,email=2": spans
// per detector, by detector name.
func CountSpans(fs []Finding) string {
	spans := map[string]int{}
	for _, f := range fs {
		spans[f.Detector]++
	}
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
	return sb.String()
}
