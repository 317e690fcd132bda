package classify

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Built-in detector names.
const (
	DetectorEmail   = "email"   // e-mail addresses
	DetectorPhone   = "phone"   // E.164 and common national phone formats
	DetectorCard    = "card"    // payment card numbers: IIN prefix, length, Luhn
	DetectorIBAN    = "iban"    // IBANs: country length and mod-97
	DetectorSSN     = "ssn"     // US social security numbers, dashed or spaced
	DetectorIP      = "ip"      // IPv4 and IPv6 addresses
	DetectorSecret  = "secret"  // API keys with well-known prefixes, private keys, JWTs
	DetectorEntropy = "entropy" // long, mixed-case, high-entropy tokens
)

// Detectors returns the names of the built-in detectors.
func Detectors() []string {
	return []string{DetectorEmail, DetectorPhone, DetectorCard, DetectorIBAN,
		DetectorSSN, DetectorIP, DetectorSecret, DetectorEntropy}
}

// Finding is one detected span of a text, as byte offsets [Start, End).
// It never carries the matched text, so it is safe to log.
type Finding struct {
	Detector string
	Start    int
	End      int
}

// Rule maps a detector to the data class its findings imply.
type Rule struct {
	Detector string
	Class    string
}

// Keyword is an operator-defined detector that matches any of Words,
// case-insensitively (ASCII letters) and as whole words. A word may
// contain spaces ("project bluebird").
type Keyword struct {
	Detector string
	Words    []string
}

// Pattern is an operator-defined detector that matches a regular
// expression (RE2 syntax; see regexp/syntax). Several Patterns may share a
// Detector name.
//
// Each pattern is one more pass over the text, and its cost depends on how
// it starts: Go's regexp skips ahead to a leading literal, so
// `EMP-[0-9]{6}\b` scans 100 KB in about 10µs, while `\bEMP-[0-9]{6}\b`,
// which cannot skip, takes about 4ms.
type Pattern struct {
	Detector string
	Expr     string
}

// DefaultRules returns the built-in detectors mapped onto the default
// levels.
func DefaultRules() []Rule {
	return []Rule{
		{DetectorEmail, "confidential"},
		{DetectorPhone, "confidential"},
		{DetectorCard, "restricted"},
		{DetectorIBAN, "restricted"},
		{DetectorSSN, "restricted"},
		{DetectorIP, "internal"},
		{DetectorSecret, "restricted"},
		{DetectorEntropy, "confidential"},
	}
}

// Default entropy heuristic settings.
const (
	DefaultEntropyThreshold = 3.5 // bits per byte
	DefaultEntropyMinLen    = 20  // bytes
)

// Config configures a Classifier. The zero Config uses the default levels,
// DefaultRules and no operator detectors.
type Config struct {
	// Levels are the data classes, least sensitive first. Nil means
	// public, internal, confidential, restricted.
	Levels []string
	// Rules choose which detectors run and the class each implies: a
	// detector runs only if it has a rule. Nil means DefaultRules.
	Rules []Rule
	// Keywords and Patterns define operator detectors; each needs a Rule.
	Keywords []Keyword
	Patterns []Pattern
	// EntropyThreshold is the Shannon entropy, in bits per byte, above
	// which a token counts as a secret. Zero means 3.5.
	EntropyThreshold float64
	// EntropyMinLen is the shortest token the entropy heuristic considers.
	// Zero means 20.
	EntropyMinLen int
}

// Result is what Classify found in a text.
type Result struct {
	// Class is the most sensitive class any finding implies, or the lowest
	// level when nothing was found.
	Class string
	// Findings are sorted by Start and do not overlap: overlapping matches
	// are merged into one span named after the more sensitive detector.
	Findings []Finding
	// Reasons name the detectors that set Class, as "detector:NAME",
	// sorted.
	Reasons []string
}

// Classifier detects sensitive content. It is safe for concurrent use.
type Classifier struct {
	levels   *Levels
	rank     map[string]int // detector → rank of its class
	builtins builtinSet
	scan     scanConfig
	keywords []keywordMatcher
	patterns []patternMatcher
}

type keywordMatcher struct {
	detector string
	words    [][]byte // lower-cased ASCII
}

type patternMatcher struct {
	detector string
	re       *regexp.Regexp
}

// New builds a Classifier from cfg, reporting every configuration mistake
// it finds.
func New(cfg Config) (*Classifier, error) {
	names := cfg.Levels
	if names == nil {
		names = defaultLevelNames
	}
	levels, err := NewLevels(names)
	if err != nil {
		return nil, err
	}
	rules := cfg.Rules
	if rules == nil {
		rules = DefaultRules()
	}
	c := &Classifier{
		levels: levels,
		rank:   make(map[string]int, len(rules)),
		scan: scanConfig{
			entropyThreshold: cfg.EntropyThreshold,
			entropyMinLen:    cfg.EntropyMinLen,
		},
	}
	if c.scan.entropyThreshold == 0 {
		c.scan.entropyThreshold = DefaultEntropyThreshold
	}
	if c.scan.entropyMinLen == 0 {
		c.scan.entropyMinLen = DefaultEntropyMinLen
	}

	var errs []error
	if c.scan.entropyThreshold < 0 || c.scan.entropyThreshold > 8 {
		errs = append(errs, fmt.Errorf("entropy threshold %v: want 0 to 8 bits per byte", cfg.EntropyThreshold))
	}
	if c.scan.entropyMinLen < 8 || c.scan.entropyMinLen > entropyMaxLen {
		errs = append(errs, fmt.Errorf("entropy minimum length %d: want 8 to %d", cfg.EntropyMinLen, entropyMaxLen))
	}

	custom := map[string]bool{}
	addCustom := func(kind, name string) {
		switch {
		case !validName(name):
			errs = append(errs, fmt.Errorf("%s detector %q: want lower-case letters, digits, '-' or '_'", kind, name))
		case slices.Contains(Detectors(), name):
			errs = append(errs, fmt.Errorf("%s detector %q: name of a built-in detector", kind, name))
		default:
			custom[name] = true
		}
	}
	for _, k := range cfg.Keywords {
		addCustom("keyword", k.Detector)
		m := keywordMatcher{detector: k.Detector}
		for _, w := range k.Words {
			w = strings.TrimSpace(w)
			if w == "" {
				errs = append(errs, fmt.Errorf("keyword detector %q: empty word", k.Detector))
				continue
			}
			m.words = append(m.words, lowerASCII([]byte(w)))
		}
		if len(k.Words) == 0 {
			errs = append(errs, fmt.Errorf("keyword detector %q: no words", k.Detector))
		}
		c.keywords = append(c.keywords, m)
	}
	for _, p := range cfg.Patterns {
		addCustom("pattern", p.Detector)
		re, err := regexp.Compile(p.Expr)
		if err != nil {
			errs = append(errs, fmt.Errorf("pattern detector %q: %w", p.Detector, err))
			continue
		}
		if re.Match(nil) {
			errs = append(errs, fmt.Errorf("pattern detector %q: %q matches the empty string", p.Detector, p.Expr))
			continue
		}
		c.patterns = append(c.patterns, patternMatcher{detector: p.Detector, re: re})
	}

	for _, r := range rules {
		class, err := levels.Parse(r.Class)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule for detector %q: %w", r.Detector, err))
			continue
		}
		if _, dup := c.rank[r.Detector]; dup {
			errs = append(errs, fmt.Errorf("detector %q has two rules", r.Detector))
			continue
		}
		if bit, ok := builtinBit(r.Detector); ok {
			c.builtins |= bit
		} else if !custom[r.Detector] {
			errs = append(errs, fmt.Errorf("rule for unknown detector %q", r.Detector))
			continue
		}
		c.rank[r.Detector], _ = levels.Rank(class)
	}
	for name := range custom {
		if _, ok := c.rank[name]; !ok {
			errs = append(errs, fmt.Errorf("detector %q has no rule", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("classify: %w", err)
	}
	c.scan.enabled = c.builtins
	return c, nil
}

// Levels returns the classifier's levels.
func (c *Classifier) Levels() *Levels { return c.levels }

// Classify scans text with every configured detector in one linear pass
// for the built-ins (plus one pass per keyword and per pattern), and
// returns the implied class and the findings.
func (c *Classifier) Classify(text []byte) Result {
	var raw []Finding
	if c.builtins != 0 {
		raw = scanText(text, &c.scan, raw)
	}
	if len(c.keywords) > 0 {
		raw = c.findKeywords(text, raw)
	}
	for _, p := range c.patterns {
		for _, m := range p.re.FindAllIndex(text, -1) {
			if m[1] > m[0] {
				raw = append(raw, Finding{Detector: p.detector, Start: m[0], End: m[1]})
			}
		}
	}
	if len(raw) == 0 {
		return Result{Class: c.levels.Lowest()}
	}

	top := -1
	for _, f := range raw {
		top = max(top, c.rank[f.Detector])
	}
	var reasons []string
	for _, f := range raw {
		if c.rank[f.Detector] == top {
			r := "detector:" + f.Detector
			if !slices.Contains(reasons, r) {
				reasons = append(reasons, r)
			}
		}
	}
	slices.Sort(reasons)
	return Result{
		Class:    c.levels.names[top],
		Findings: merge(raw, func(d string) int { return c.rank[d] }),
		Reasons:  reasons,
	}
}

// merge sorts findings and unites overlapping ones into a single span named
// after the more sensitive detector (the longer span on a tie).
func merge(fs []Finding, rank func(string) int) []Finding {
	slices.SortFunc(fs, func(a, b Finding) int {
		if a.Start != b.Start {
			return a.Start - b.Start
		}
		return b.End - a.End
	})
	out := fs[:0]
	for _, f := range fs {
		if len(out) == 0 || f.Start >= out[len(out)-1].End {
			out = append(out, f)
			continue
		}
		last := &out[len(out)-1]
		rl, rf := rank(last.Detector), rank(f.Detector)
		if rf > rl || rf == rl && f.End-f.Start > last.End-last.Start {
			last.Detector = f.Detector
		}
		last.End = max(last.End, f.End)
	}
	return out
}

// lowerBufs recycles the lower-cased copies keyword matching needs.
var lowerBufs = sync.Pool{New: func() any { return new([]byte) }}

func (c *Classifier) findKeywords(text []byte, out []Finding) []Finding {
	buf := lowerBufs.Get().(*[]byte)
	defer lowerBufs.Put(buf)
	*buf = append((*buf)[:0], text...)
	lower := lowerASCII(*buf)
	for _, k := range c.keywords {
		for _, w := range k.words {
			for off := 0; off < len(lower); {
				i := bytes.Index(lower[off:], w)
				if i < 0 {
					break
				}
				start, end := off+i, off+i+len(w)
				if wordBoundary(text, start) && wordBoundary(text, end) {
					out = append(out, Finding{Detector: k.detector, Start: start, End: end})
					off = end
				} else {
					off = start + 1
				}
			}
		}
	}
	return out
}

// wordBoundary reports whether no word continues across offset i: the
// characters on the two sides are not both letters, digits or '_'.
func wordBoundary(text []byte, i int) bool {
	return i == 0 || i == len(text) || !isWordRuneBefore(text, i) || !isWordRuneAt(text, i)
}

func lowerASCII(b []byte) []byte {
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return b
}
