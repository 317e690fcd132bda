package classify

import (
	"bytes"
	"testing"
	"time"
)

// TestPathologicalInputsStayLinear feeds inputs built to make a naive
// scanner quadratic: every position starts a candidate whose validation
// reads to the end of the run. A linear scan handles 256 KB of each in a
// few milliseconds (30 at worst); a quadratic one takes seconds. The bound
// is generous for a loaded machine.
func TestPathologicalInputsStayLinear(t *testing.T) {
	c := mustNew(t, Config{
		Rules:    append(DefaultRules(), Rule{"codename", "internal"}),
		Keywords: []Keyword{{Detector: "codename", Words: []string{"aa", "sk"}}},
	})
	const size = 256 << 10
	for _, unit := range []string{
		"sk-", "eyJ-", "eyJhbGciOi.", "xoxb-", "github_pat_", "a@", "a.", "@a", "@a.", "-----BEGIN RSA PRIVATE KEY-----\n",
		"-----BEGIN CERTIFICATE-----\n", "1 ", "1-", "+1 ", "(1", "::", "a:", "1:", "DE89 ", "Ab1/", "aa", "a",
	} {
		text := bytes.Repeat([]byte(unit), size/len(unit))
		start := time.Now()
		c.Classify(text)
		d := time.Since(start)
		t.Logf("%q: %v", unit, d)
		if d > raceSlowdown*500*time.Millisecond {
			t.Errorf("%q × %d: Classify took %v", unit, size/len(unit), d)
		}
	}
}
