package classify

import "strconv"

// Mask returns a copy of text with each finding replaced by a typed
// placeholder such as "[EMAIL_1]". Equal matched values of one detector get
// the same number, so a masked conversation still reads consistently.
// Findings need not be sorted; ones out of range are ignored and
// overlapping ones are merged first. text itself is not modified.
func Mask(text []byte, findings []Finding) []byte {
	fs := make([]Finding, 0, len(findings))
	for _, f := range findings {
		if f.Start >= 0 && f.End <= len(text) && f.Start < f.End {
			fs = append(fs, f)
		}
	}
	// Without ranks, a merged span is named after the longer finding.
	fs = merge(fs, func(string) int { return 0 })

	out := make([]byte, 0, len(text))
	type key struct{ detector, value string }
	numbers := map[key]int{}
	counts := map[string]int{}
	prev := 0
	for _, f := range fs {
		k := key{f.Detector, string(text[f.Start:f.End])}
		n, ok := numbers[k]
		if !ok {
			counts[f.Detector]++
			n = counts[f.Detector]
			numbers[k] = n
		}
		out = append(out, text[prev:f.Start]...)
		out = append(out, '[')
		out = appendLabel(out, f.Detector)
		out = append(out, '_')
		out = strconv.AppendInt(out, int64(n), 10)
		out = append(out, ']')
		prev = f.End
	}
	return append(out, text[prev:]...)
}

// appendLabel appends the detector name in upper case, with anything other
// than letters and digits turned into '_'.
func appendLabel(out []byte, name string) []byte {
	if name == "" {
		return append(out, "REDACTED"...)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z':
			out = append(out, c-'a'+'A')
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			out = append(out, c)
		default:
			out = append(out, '_')
		}
	}
	return out
}
