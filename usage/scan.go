package usage

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds a small JSON scanner: it finds the members of objects and
// the elements of arrays and skips values it does not need, without
// decoding them or allocating. It checks structure (brackets, quotes,
// commas, colons) but is not a validator: scalars are only checked to be
// made of number and literal characters, and strings are not checked for
// control characters or bad escapes. On valid JSON it sees exactly what
// encoding/json sees; on invalid JSON it either fails or sees something
// plausible, and it never panics.

// skipWS returns the position of the first non-space byte at or after i.
func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// stringEnd returns the position just after the string that starts with
// the quote at b[i], or -1 if it is not terminated.
func stringEnd(b []byte, i int) int {
	j := i + 1
	// Most strings are short keys and values: a byte loop finds their end
	// sooner than IndexByte can start.
	for lim := min(len(b), j+24); j < lim; j++ {
		switch b[j] {
		case '"':
			return j + 1
		case '\\':
			j++
		}
	}
	if j >= len(b) {
		return -1
	}
	// Long strings: find each quote and count the backslashes before it.
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return -1
		}
		q := j + k
		n := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1
		}
		j = q + 1
	}
}

// scalarByte marks the bytes that may appear in a number or a literal.
var scalarByte = [256]bool{
	'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true,
	'7': true, '8': true, '9': true, '-': true, '+': true, '.': true, 'e': true,
	'E': true, 't': true, 'r': true, 'u': true, 'f': true, 'a': true, 'l': true,
	's': true, 'n': true,
}

// skipValue returns the position just after the value that starts at b[i],
// or -1 if there is none.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		return skipContainer(b, i)
	}
	j := i
	for j < len(b) && scalarByte[b[j]] {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// nextCandidate returns the position of the first byte at or after j that
// may be a quote or a bracket, or -1. Besides `"[]{}` it stops at `Y_y` and
// DEL, which the caller ignores; none of them occur in numbers, literals or
// between values, so the common case of long number arrays (embeddings)
// runs eight bytes at a time.
func nextCandidate(b []byte, j int) int {
	for ; j+8 <= len(b); j += 8 {
		v := binary.LittleEndian.Uint64(b[j:])
		x := v&(0xD9*lsb) ^ 0x59*lsb // zero where the byte is one of [ ] { } Y _ y DEL
		y := v ^ 0x22*lsb            // zero where the byte is '"'
		if m := ((x-lsb)&^x | (y-lsb)&^y) & msb; m != 0 {
			return j + bits.TrailingZeros64(m)/8
		}
	}
	for ; j < len(b); j++ {
		if c := b[j]; c&0xD9 == 0x59 || c == '"' {
			return j
		}
	}
	return -1
}

// skipContainer returns the position just after the object or array that
// starts at b[i], or -1 if it is not closed.
func skipContainer(b []byte, i int) int {
	depth := 0
	j := i
	for {
		k := nextCandidate(b, j)
		if k < 0 {
			return -1
		}
		switch b[k] {
		case '"':
			e := stringEnd(b, k)
			if e < 0 {
				return -1
			}
			j = e
		case '{', '[':
			depth++
			j = k + 1
		case '}', ']':
			depth--
			j = k + 1
			if depth == 0 {
				return j
			}
			if depth < 0 {
				return -1
			}
		default:
			j = k + 1
		}
	}
}

// object iterates over the members of a JSON object:
//
//	o := openObject(b, i)
//	for o.next() {
//		end := handle(o.key, o.val) // or skipValue(b, o.val)
//		o.done(end)
//	}
//	if o.err { ... }
//	after := o.end
type object struct {
	b   []byte
	i   int    // where to look for the next member
	key []byte // raw bytes of the current key, without quotes
	val int    // position of the current value
	n   int    // members seen
	err bool   // malformed
	end int    // position after the closing brace, once next returns false
}

// openObject starts iterating over the object at b[i]; o.err is set if
// there is none.
func openObject(b []byte, i int) object {
	if i >= len(b) || b[i] != '{' {
		return object{err: true, end: -1}
	}
	return object{b: b, i: i + 1}
}

// next advances to the next member, reporting false at the end of the
// object or on a syntax error.
func (o *object) next() bool {
	if o.err {
		return false
	}
	b := o.b
	i := skipWS(b, o.i)
	if i >= len(b) {
		return o.fail()
	}
	if b[i] == '}' {
		o.end = i + 1
		return false
	}
	if o.n > 0 {
		if b[i] != ',' {
			return o.fail()
		}
		i = skipWS(b, i+1)
	}
	if i >= len(b) || b[i] != '"' {
		return o.fail()
	}
	e := stringEnd(b, i)
	if e < 0 {
		return o.fail()
	}
	o.key = b[i+1 : e-1]
	i = skipWS(b, e)
	if i >= len(b) || b[i] != ':' {
		return o.fail()
	}
	o.val = skipWS(b, i+1)
	if o.val >= len(b) {
		return o.fail()
	}
	o.n++
	return true
}

// done records that the current value ends at end (-1 for malformed).
func (o *object) done(end int) {
	if end < 0 {
		o.fail()
		return
	}
	o.i = end
}

// skip skips the current value.
func (o *object) skip() { o.done(skipValue(o.b, o.val)) }

func (o *object) fail() bool {
	o.err = true
	o.end = -1
	return false
}

// array iterates over the elements of a JSON array like object does over
// members.
type array struct {
	b   []byte
	i   int
	val int
	n   int
	err bool
	end int
}

func openArray(b []byte, i int) array {
	if i >= len(b) || b[i] != '[' {
		return array{err: true, end: -1}
	}
	return array{b: b, i: i + 1}
}

func (a *array) next() bool {
	if a.err {
		return false
	}
	b := a.b
	i := skipWS(b, a.i)
	if i >= len(b) {
		return a.fail()
	}
	if b[i] == ']' {
		a.end = i + 1
		return false
	}
	if a.n > 0 {
		if b[i] != ',' {
			return a.fail()
		}
		i = skipWS(b, i+1)
		if i >= len(b) {
			return a.fail()
		}
	}
	a.val = i
	a.n++
	return true
}

func (a *array) done(end int) {
	if end < 0 {
		a.fail()
		return
	}
	a.i = end
}

func (a *array) skip() { a.done(skipValue(a.b, a.val)) }

func (a *array) fail() bool {
	a.err = true
	a.end = -1
	return false
}

// keyIs reports whether the raw key (as it appears between the quotes)
// spells want, escapes decoded.
func keyIs(raw []byte, want string) bool {
	if string(raw) == want {
		return true
	}
	if len(raw) <= len(want) || len(raw) > 6*len(want) || bytes.IndexByte(raw, '\\') < 0 {
		return false
	}
	var buf [64]byte
	return string(appendUnquote(buf[:0], raw)) == want
}

// stringAt returns the raw contents (between the quotes) of the string
// value at b[i] and the position after it; ok is false if b[i] does not
// start a string.
func stringAt(b []byte, i int) (raw []byte, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, skipValue(b, i), false
	}
	end = stringEnd(b, i)
	if end < 0 {
		return nil, -1, false
	}
	return b[i+1 : end-1], end, true
}

// appendUnquote appends the decoded form of a raw JSON string to dst the
// way encoding/json decodes it: invalid UTF-8 and unpaired surrogates become
// U+FFFD.
func appendUnquote(dst, s []byte) []byte {
	if bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s) {
		return append(dst, s...)
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 >= len(s) {
				return dst
			}
			switch s[i+1] {
			case '"', '\\', '/', '\'':
				dst = append(dst, s[i+1])
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := hex4(s[i+2:])
				if r < 0 {
					return dst
				}
				i += 6
				if utf16.IsSurrogate(r) {
					if i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
						if r2 := hex4(s[i+2:]); r2 >= 0 {
							if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
								i += 6
								dst = utf8.AppendRune(dst, d)
								continue
							}
						}
					}
					r = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default:
				return dst
			}
			i += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, n := utf8.DecodeRune(s[i:])
			dst = utf8.AppendRune(dst, r)
			i += n
		}
	}
	return dst
}

// hex4 decodes four hexadecimal digits, or returns -1.
func hex4(s []byte) rune {
	if len(s) < 4 {
		return -1
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// tokenCount parses the value at b[i] as a token count: a non-negative
// integer literal that fits in an int64, or null (0). ok is false for
// anything else; end is the position after the value (-1 if malformed).
func tokenCount(b []byte, i int) (n int64, end int, ok bool) {
	end = skipValue(b, i)
	if end < 0 {
		return 0, -1, false
	}
	lit := b[i:end]
	if string(lit) == "null" {
		return 0, end, true
	}
	neg := false
	if lit[0] == '-' {
		neg, lit = true, lit[1:]
	}
	if len(lit) == 0 {
		return 0, end, false
	}
	for _, c := range lit {
		if c < '0' || c > '9' {
			return 0, end, false
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return 0, end, false
		}
		n = n*10 + d
	}
	if neg && n != 0 {
		return 0, end, false
	}
	return n, end, true
}
