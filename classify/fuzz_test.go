package classify

import (
	"bytes"
	"reflect"
	"slices"
	"testing"
)

func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		"jane.doe@example.com", "+1 (415) 555-0132 x", "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00",
		"219-45-6789", "192.168.1.1", "2001:db8::1", "::ffff:1.2.3.4", "sk-proj-AbCdEf1234567890XyZabc123",
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.x",
		"-----BEGIN RSA PRIVATE KEY-----\nMIIB\n", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
		"q8ZrT2xV9bN4mK7pL1sW6dF3gH5jY0cA=", "bluebird EMP-123456", "0044 20 7946 0958 00 1 2 3 4 5 6 7 8 9 10 11 12 13",
		`{"messages":[{"role":"user","content":"a@b.co"}]}`, "((((1", "+", "@", "a@", "::", "-----BEGIN ",
	} {
		f.Add([]byte(s))
	}
	c := mustNew(f, Config{
		Rules:    append(DefaultRules(), Rule{"codename", "internal"}, Rule{"employee-id", "internal"}),
		Keywords: []Keyword{{Detector: "codename", Words: []string{"bluebird", "r&d"}}},
		Patterns: []Pattern{{Detector: "employee-id", Expr: `EMP-[0-9]{6}`}},
	})
	known := append(Detectors(), "codename", "employee-id")

	f.Fuzz(func(t *testing.T, data []byte) {
		orig := bytes.Clone(data)
		for _, text := range [][]byte{data, ExtractText(data)} {
			r := c.Classify(text)
			if _, ok := c.Levels().Rank(r.Class); !ok {
				t.Fatalf("class %q is not a level", r.Class)
			}
			if len(r.Findings) == 0 && r.Class != "public" {
				t.Fatalf("class %s without findings", r.Class)
			}
			prevEnd := 0
			for _, fd := range r.Findings {
				if fd.Start < prevEnd || fd.Start >= fd.End || fd.End > len(text) {
					t.Fatalf("finding %+v out of order or bounds (previous end %d, len %d)", fd, prevEnd, len(text))
				}
				if !slices.Contains(known, fd.Detector) {
					t.Fatalf("unknown detector %q", fd.Detector)
				}
				prevEnd = fd.End
			}
			if !slices.IsSorted(r.Reasons) {
				t.Fatalf("reasons not sorted: %q", r.Reasons)
			}
			if again := c.Classify(text); !reflect.DeepEqual(again, r) {
				t.Fatalf("not deterministic: %+v then %+v", r, again)
			}
			masked := Mask(text, r.Findings)
			if len(r.Findings) == 0 && !bytes.Equal(masked, text) {
				t.Fatal("Mask changed text without findings")
			}
		}
		if !bytes.Equal(data, orig) {
			t.Fatal("input modified")
		}
	})
}
