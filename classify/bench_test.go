package classify

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"testing"
)

// benchPrompt builds a prompt of n bytes from the English and code corpus,
// with an e-mail address, a phone number and a card number every 2 KB or
// so, as a user pasting a support ticket might.
func benchPrompt(tb testing.TB, n int) []byte {
	tb.Helper()
	var src []byte
	for _, f := range []string{"testdata/corpus/prose.txt", "testdata/corpus/code_and_logs.txt"} {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		src = append(src, b...)
	}
	pii := []string{" Contact: jane.doe@example.com. ", " Call +44 20 7946 0958. ", " Card 4111 1111 1111 1111. "}
	var out []byte
	for k := 0; len(out) < n; k++ {
		chunk := src[(k*2000)%len(src):]
		out = append(out, chunk[:min(len(chunk), 2000)]...)
		out = append(out, pii[k%len(pii)]...)
	}
	return out[:n]
}

func BenchmarkClassify(b *testing.B) {
	c := mustNew(b, Config{})
	operator := mustNew(b, Config{
		Rules: append(DefaultRules(), Rule{"codename", "confidential"}, Rule{"employee-id", "internal"}),
		Keywords: []Keyword{{Detector: "codename", Words: []string{
			"bluebird", "nightjar", "kestrel", "project osprey", "merlin", "falcon", "harrier", "curlew", "dunlin", "plover",
		}}},
		Patterns: []Pattern{{Detector: "employee-id", Expr: `EMP-[0-9]{6}\b`}},
	})
	for _, bc := range []struct {
		name string
		c    *Classifier
		size int
	}{
		{"2KB", c, 2 << 10},
		{"100KB", c, 100 << 10},
		{"2KB/operator", operator, 2 << 10},
		{"100KB/operator", operator, 100 << 10},
	} {
		text := benchPrompt(b, bc.size)
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				bc.c.Classify(text)
			}
		})
	}
}

// BenchmarkRegexpBaseline runs a dozen regular expressions of the kind a
// regexp-based classifier would use, over the same prompts, to show what
// the hand-written scanner saves. The expressions are approximations and
// their results are not used.
func BenchmarkRegexpBaseline(b *testing.B) {
	res := []*regexp.Regexp{
		regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`),
		regexp.MustCompile(`\+[1-9][0-9 ().-]{7,18}[0-9]`),
		regexp.MustCompile(`\(?\b[2-9][0-9]{2}\)?[ .-][2-9][0-9]{2}[ .-][0-9]{4}\b`),
		regexp.MustCompile(`\b(?:[0-9][ -]?){12,18}[0-9]\b`),
		regexp.MustCompile(`\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b`),
		regexp.MustCompile(`\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b`),
		regexp.MustCompile(`\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b`),
		regexp.MustCompile(`\b(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{0,4}\b`),
		regexp.MustCompile(`\bsk-[A-Za-z0-9_-]{20,}`),
		regexp.MustCompile(`\b(?:AKIA|ASIA)[A-Z0-9]{16}\b`),
		regexp.MustCompile(`\bgh[pousr]_[A-Za-z0-9]{36}\b`),
		regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*`),
		regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`),
		regexp.MustCompile(`[A-Za-z0-9+/_-]{20,}={0,2}`),
	}
	for _, size := range []int{2 << 10, 100 << 10} {
		text := benchPrompt(b, size)
		name := "2KB"
		if size > 2<<10 {
			name = "100KB"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				for _, re := range res {
					re.FindAllIndex(text, -1)
				}
			}
		})
	}
}

func BenchmarkExtractText(b *testing.B) {
	text := benchPrompt(b, 100<<10)
	var msgs []map[string]string
	for chunk := range slices.Chunk(text, 10<<10) {
		msgs = append(msgs, map[string]string{"role": "user", "content": string(chunk)})
	}
	body, err := json.Marshal(map[string]any{"model": "gpt-4o", "messages": msgs})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		ExtractText(body)
	}
}

func TestBenchPromptHasFindings(t *testing.T) {
	c := mustNew(t, Config{})
	r := c.Classify(benchPrompt(t, 100<<10))
	counts := map[string]int{}
	for _, f := range r.Findings {
		counts[f.Detector]++
	}
	// 51 inserts of three kinds, plus the corpus's own phone look-alike.
	if counts[DetectorEmail] < 15 || counts[DetectorPhone] < 15 || counts[DetectorCard] < 15 {
		t.Fatalf("benchmark prompt findings: %v", counts)
	}
}
