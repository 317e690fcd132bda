package classify

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnknownLevel is returned when a class name is not one of the
// configured levels.
var ErrUnknownLevel = errors.New("unknown data class")

// defaultLevelNames are the default data classes, least sensitive first.
var defaultLevelNames = []string{"public", "internal", "confidential", "restricted"}

// Levels is an ordered list of data classes, least sensitive first. It is
// immutable once built.
type Levels struct {
	names []string
}

// NewLevels builds Levels from names, least sensitive first. Names must be
// non-empty, unique, lower case, and made of letters, digits, '-' and '_'.
func NewLevels(names []string) (*Levels, error) {
	if len(names) == 0 {
		return nil, errors.New("classify: no levels")
	}
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if !validName(n) {
			return nil, fmt.Errorf("classify: level %q: want lower-case letters, digits, '-' or '_'", n)
		}
		if seen[n] {
			return nil, fmt.Errorf("classify: level %q listed twice", n)
		}
		seen[n] = true
	}
	return &Levels{names: append([]string(nil), names...)}, nil
}

// DefaultLevels returns public < internal < confidential < restricted.
func DefaultLevels() *Levels {
	l, err := NewLevels(defaultLevelNames)
	if err != nil {
		panic(err) // the defaults are valid
	}
	return l
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Names returns the levels, least sensitive first.
func (l *Levels) Names() []string { return append([]string(nil), l.names...) }

// Lowest returns the least sensitive level.
func (l *Levels) Lowest() string { return l.names[0] }

// Highest returns the most sensitive level.
func (l *Levels) Highest() string { return l.names[len(l.names)-1] }

// Parse returns the level named s, ignoring case and surrounding space, or
// an error wrapping ErrUnknownLevel.
func (l *Levels) Parse(s string) (string, error) {
	t := strings.TrimSpace(s)
	for _, n := range l.names {
		if strings.EqualFold(n, t) {
			return n, nil
		}
	}
	return "", fmt.Errorf("classify: %q: %w", s, ErrUnknownLevel)
}

// Rank returns the position of name, 0 for the least sensitive, and false
// if name is not a level.
func (l *Levels) Rank(name string) (int, bool) {
	for i, n := range l.names {
		if n == name {
			return i, true
		}
	}
	return 0, false
}

// rank orders unknown names above every level: an unrecognised class is
// treated as the most sensitive, so a mistake can only tighten routing.
func (l *Levels) rank(name string) int {
	if r, ok := l.Rank(name); ok {
		return r
	}
	return len(l.names)
}

// Compare returns -1, 0 or +1 as a is less, equally or more sensitive than
// b. Names that are not levels rank above every level (fail closed).
func (l *Levels) Compare(a, b string) int {
	ra, rb := l.rank(a), l.rank(b)
	switch {
	case ra < rb:
		return -1
	case ra > rb:
		return 1
	}
	return strings.Compare(a, b) // only unknown names can tie unequal
}

// Max returns the most sensitive of names, ignoring empty strings, or
// Lowest if there are none. Names that are not levels win (fail closed).
func (l *Levels) Max(names ...string) string {
	best := ""
	for _, n := range names {
		if n != "" && (best == "" || l.Compare(n, best) > 0) {
			best = n
		}
	}
	if best == "" {
		return l.Lowest()
	}
	return best
}
