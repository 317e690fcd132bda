package classify

import (
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestNewErrors(t *testing.T) {
	cfg := Config{
		Rules: []Rule{
			{DetectorEmail, "confidential"},
			{DetectorEmail, "internal"},   // twice
			{"nosuch", "internal"},        // unknown detector
			{DetectorCard, "top-secret"},  // unknown class
			{"codenames", "confidential"}, //
			{"bad-regexp", "internal"},    //
			{"empty-match", "internal"},   //
		},
		Keywords: []Keyword{
			{Detector: "codenames", Words: []string{"bluebird", " "}}, // empty word
			{Detector: "unruled", Words: []string{"x"}},               // no rule
			{Detector: DetectorSSN, Words: []string{"x"}},             // built-in name
			{Detector: "Bad Name", Words: []string{"x"}},              // invalid name
			{Detector: "nowords"},                                     // no words, no rule
		},
		Patterns: []Pattern{
			{Detector: "bad-regexp", Expr: "(unclosed"},
			{Detector: "empty-match", Expr: "a*"},
		},
		EntropyThreshold: 9,
		EntropyMinLen:    4,
	}
	_, err := New(cfg)
	if err == nil {
		t.Fatal("New accepted a bad config")
	}
	for _, want := range []string{
		`detector "email" has two rules`,
		`rule for unknown detector "nosuch"`,
		`rule for detector "card"`,
		`keyword detector "codenames": empty word`,
		`detector "unruled" has no rule`,
		`keyword detector "ssn": name of a built-in detector`,
		`keyword detector "Bad Name"`,
		`keyword detector "nowords": no words`,
		`pattern detector "bad-regexp"`,
		`matches the empty string`,
		"entropy threshold 9",
		"entropy minimum length 4",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	if _, err := New(Config{Levels: []string{"low", "high"}}); err == nil {
		t.Error("default rules accepted with levels that lack their classes")
	}
}

func TestKeywordsAndPatterns(t *testing.T) {
	c := mustNew(t, Config{
		Rules: append(DefaultRules(),
			Rule{"codename", "confidential"},
			Rule{"employee-id", "internal"},
		),
		Keywords: []Keyword{{Detector: "codename", Words: []string{"Bluebird", "project  Nightjar", "R&D-7"}}},
		Patterns: []Pattern{{Detector: "employee-id", Expr: `\bEMP-[0-9]{6}\b`}},
	})
	tests := []struct {
		text string
		want []string
	}{
		{"the BLUEBIRD launch", []string{"codename:BLUEBIRD"}},
		{"bluebird, then bluebird.", []string{"codename:bluebird", "codename:bluebird"}},
		{"bluebirds and xbluebird and blue_bird and éBluebird", nil},
		{"about Project  nightjar today", []string{"codename:Project  nightjar"}},
		{"team R&D-7 budget", []string{"codename:R&D-7"}},
		{"ticket EMP-123456 and EMP-1234567", []string{"employee-id:EMP-123456"}},
	}
	for _, tt := range tests {
		r := c.Classify([]byte(tt.text))
		if got := found(tt.text, r.Findings); !slices.Equal(got, tt.want) {
			t.Errorf("Classify(%q) = %q, want %q", tt.text, got, tt.want)
		}
	}
}

func TestOverlapsMergeAndReasons(t *testing.T) {
	c := mustNew(t, Config{
		Rules:    append(DefaultRules(), Rule{"codename", "internal"}),
		Keywords: []Keyword{{Detector: "codename", Words: []string{"bluebird"}}},
	})
	text := "mail bluebird@example.com, card 4111111111111111, bluebird"
	r := c.Classify([]byte(text))
	want := []string{"email:bluebird@example.com", "card:4111111111111111", "codename:bluebird"}
	if got := found(text, r.Findings); !slices.Equal(got, want) {
		t.Fatalf("findings = %q, want %q", got, want)
	}
	if r.Class != "restricted" || !slices.Equal(r.Reasons, []string{"detector:card"}) {
		t.Fatalf("class %s reasons %q", r.Class, r.Reasons)
	}

	// Two detectors at the top class are both reasons, sorted.
	text = "key sk-proj-AbCdEf1234567890XyZabc123 ssn 219-45-6789"
	r = c.Classify([]byte(text))
	if !slices.Equal(r.Reasons, []string{"detector:secret", "detector:ssn"}) {
		t.Fatalf("reasons = %q", r.Reasons)
	}
}

func TestMergeUnitesOverlaps(t *testing.T) {
	rank := map[string]int{"low": 0, "high": 1}
	fs := []Finding{{"low", 10, 20}, {"high", 5, 12}, {"low", 30, 40}, {"low", 35, 50}, {"high", 60, 61}}
	got := merge(fs, func(d string) int { return rank[d] })
	want := []Finding{{"high", 5, 20}, {"low", 30, 50}, {"high", 60, 61}}
	if !slices.Equal(got, want) {
		t.Fatalf("merge = %v, want %v", got, want)
	}
}

func TestClassifyConcurrent(t *testing.T) {
	c := mustNew(t, Config{
		Rules:    append(DefaultRules(), Rule{"codename", "internal"}),
		Keywords: []Keyword{{Detector: "codename", Words: []string{"bluebird"}}},
	})
	text := []byte("bluebird jane@example.com 4111 1111 1111 1111")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if r := c.Classify(text); len(r.Findings) != 3 {
					t.Errorf("findings = %v", r.Findings)
					return
				}
			}
		}()
	}
	wg.Wait()
}
