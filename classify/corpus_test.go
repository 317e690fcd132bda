package classify

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Documented false-positive behaviour of the default configuration on
// testdata/corpus: about 250 KB of English prose, legal text, Go source and
// documentation, and pasted code and logs, none of which holds personal
// data or credentials. Every finding there is a false positive in the
// sense that the request would be classified above "public":
//
//	detector  count  what fires
//	email     1      "p@ssword@google.com" in a URL example (userinfo)
//	ip        6      example addresses in Go docs ("fe80::1", "::1"); the
//	                 detector is right, the text just is not sensitive
//	phone     1      "01 2345 6784", the tail of a parcel tracking number,
//	                 which has the shape of a UK number
//	entropy   3      an npm "sha512-…" integrity hash; "X25519Kyber768Draft00"
//	                 (a TLS key-exchange name, twice)
//	others    0
//
// The test fails if any count changes, so a detector change that trades
// precision must update this table on purpose.
var corpusFalsePositives = map[string]int{
	DetectorEmail:   1,
	DetectorIP:      6,
	DetectorPhone:   1,
	DetectorEntropy: 3,
}

func TestFalsePositiveCorpus(t *testing.T) {
	c := mustNew(t, Config{})
	files, err := filepath.Glob("testdata/corpus/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	got := map[string]int{}
	total := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		total += len(b)
		for _, fd := range c.Classify(b).Findings {
			got[fd.Detector]++
			t.Logf("%s: %s at %d–%d", filepath.Base(f), fd.Detector, fd.Start, fd.End)
		}
	}
	t.Logf("corpus: %d files, %d bytes", len(files), total)
	ds := Detectors()
	slices.Sort(ds)
	for _, d := range ds {
		t.Logf("false positives: %-8s %d (%.2f per 100 KB)", d, got[d], float64(got[d])*100*1024/float64(total))
		if got[d] != corpusFalsePositives[d] {
			t.Errorf("detector %s: %d false positives on the corpus, documented %d", d, got[d], corpusFalsePositives[d])
		}
	}
}
