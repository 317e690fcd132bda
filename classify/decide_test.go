package classify

import (
	"errors"
	"slices"
	"testing"
)

func TestDecide(t *testing.T) {
	l := DefaultLevels()
	card := Result{Class: "restricted", Reasons: []string{"detector:card"}}
	email := Result{Class: "confidential", Reasons: []string{"detector:email"}}
	none := Result{Class: "public"}
	tests := []struct {
		name          string
		floor, header string
		content       Result
		want          string
		reasons       []string
	}{
		{"floor only", "internal", "", none, "internal", []string{"floor:internal"}},
		{"empty floor is lowest", "", "", none, "public", []string{"floor:public"}},
		{"header raises", "internal", "confidential", none, "confidential", []string{"header:confidential"}},
		{"header cannot lower", "confidential", "public", none, "confidential", []string{"floor:confidential"}},
		{"header case-insensitive", "", " Restricted ", none, "restricted", []string{"header:restricted"}},
		{"content raises", "internal", "", email, "confidential", []string{"detector:email"}},
		{"content above header", "public", "confidential", card, "restricted", []string{"detector:card"}},
		{"ties list every reason", "confidential", "confidential", email, "confidential",
			[]string{"floor:confidential", "header:confidential", "detector:email"}},
		{"zero content", "internal", "", Result{}, "internal", []string{"floor:internal"}},
		{"content without reasons", "public", "", Result{Class: "internal"}, "internal", []string{"content:internal"}},
	}
	for _, tt := range tests {
		class, reasons, err := Decide(l, tt.floor, tt.header, tt.content)
		if err != nil || class != tt.want || !slices.Equal(reasons, tt.reasons) {
			t.Errorf("%s: Decide = %s %q %v; want %s %q", tt.name, class, reasons, err, tt.want, tt.reasons)
		}
	}
}

func TestDecideErrors(t *testing.T) {
	l := DefaultLevels()
	for _, tt := range []struct{ floor, header, content string }{
		{"internal", "top-secret", ""},
		{"bogus", "", ""},
		{"", "", "bogus"},
	} {
		_, _, err := Decide(l, tt.floor, tt.header, Result{Class: tt.content})
		if !errors.Is(err, ErrUnknownLevel) {
			t.Errorf("Decide(%q, %q, %q) = %v, want ErrUnknownLevel", tt.floor, tt.header, tt.content, err)
		}
	}
}
