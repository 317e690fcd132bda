package classify

import (
	"errors"
	"slices"
	"testing"
)

func TestLevels(t *testing.T) {
	l := DefaultLevels()
	if got := l.Names(); !slices.Equal(got, []string{"public", "internal", "confidential", "restricted"}) {
		t.Fatalf("Names = %v", got)
	}
	if l.Lowest() != "public" || l.Highest() != "restricted" {
		t.Fatalf("Lowest/Highest = %s/%s", l.Lowest(), l.Highest())
	}
	for in, want := range map[string]string{"public": "public", " Confidential ": "confidential", "RESTRICTED": "restricted"} {
		if got, err := l.Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := l.Parse("secret"); !errors.Is(err, ErrUnknownLevel) {
		t.Errorf("Parse(secret) = %v, want ErrUnknownLevel", err)
	}
	cmp := []struct {
		a, b string
		want int
	}{
		{"public", "internal", -1},
		{"restricted", "confidential", 1},
		{"internal", "internal", 0},
		{"bogus", "restricted", 1}, // unknown ranks above everything
		{"public", "bogus", -1},
	}
	for _, c := range cmp {
		if got := l.Compare(c.a, c.b); got != c.want {
			t.Errorf("Compare(%s, %s) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
	if got := l.Max("internal", "", "confidential", "public"); got != "confidential" {
		t.Errorf("Max = %s", got)
	}
	if got := l.Max(); got != "public" {
		t.Errorf("Max() = %s, want the lowest", got)
	}
	if got := l.Max("restricted", "bogus"); got != "bogus" {
		t.Errorf("Max with an unknown name = %s, want it to win", got)
	}
	if r, ok := l.Rank("confidential"); !ok || r != 2 {
		t.Errorf("Rank(confidential) = %d, %v", r, ok)
	}
	// Names returns a copy.
	l.Names()[0] = "changed"
	if l.Lowest() != "public" {
		t.Error("Names exposed the internal slice")
	}
}

func TestNewLevelsErrors(t *testing.T) {
	for _, names := range [][]string{nil, {}, {"a", "a"}, {"Public"}, {""}, {"has space"}} {
		if _, err := NewLevels(names); err == nil {
			t.Errorf("NewLevels(%q) succeeded", names)
		}
	}
	l, err := NewLevels([]string{"green", "amber", "red"})
	if err != nil || l.Max("red", "green") != "red" {
		t.Fatalf("custom levels: %v", err)
	}
}
