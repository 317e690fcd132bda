package usage

import (
	"fmt"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/tiktoken-go/tokenizer"
)

// This file counts tokens the way github.com/tiktoken-go/tokenizer does,
// an order of magnitude faster: the library splits text with a
// backtracking regular expression over a []rune copy of it and allocates
// for every piece, which costs about 180 µs per kilobyte. Here the two
// split expressions are hand-written matchers over the UTF-8 bytes and the
// byte-pair merge works in place. The vocabulary is read from the library,
// and tests check the counts against the library's on varied and fuzzed
// text.
//
// cl100k_base splits with
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// and o200k_base with
//
//	[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|
//	[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|
//	\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// where \s is unicode.IsSpace and (?i:'s) also matches "'ſ", as in the
// library's compiled expressions.

// runeClass holds the character classes the split expressions use.
type runeClass uint8

const (
	clSpace   runeClass = 1 << iota // \s
	clNewline                       // \r or \n
	clLetter                        // \p{L}
	clNumber                        // \p{N}
	clUpper                         // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
	clLower                         // [\p{Ll}\p{Lm}\p{Lo}\p{M}]
)

func classify(r rune) runeClass {
	var c runeClass
	if unicode.IsSpace(r) {
		c |= clSpace
	}
	if r == '\r' || r == '\n' {
		c |= clNewline
	}
	if unicode.In(r, unicode.L) {
		c |= clLetter
	}
	if unicode.In(r, unicode.N) {
		c |= clNumber
	}
	if unicode.In(r, unicode.Lu, unicode.Lt, unicode.Lm, unicode.Lo, unicode.M) {
		c |= clUpper
	}
	if unicode.In(r, unicode.Ll, unicode.Lm, unicode.Lo, unicode.M) {
		c |= clLower
	}
	return c
}

// bmpClasses caches classify for the Basic Multilingual Plane (64 KB,
// built in a few milliseconds on first use).
var (
	bmpOnce    sync.Once
	bmpClasses *[0x10000]runeClass
)

func loadClasses() {
	t := new([0x10000]runeClass)
	for r := range rune(0x10000) {
		t[r] = classify(r)
	}
	bmpClasses = t
}

// bpe counts the tokens of one encoding.
type bpe struct {
	vocab vocab
	o200k bool
	cls   *[0x10000]runeClass
}

// vocab maps the bytes of tokens to their ranks (ids). Tokens of up to
// eight bytes, which nearly all lookups are for, sit packed in an
// open-addressing table so that a lookup usually touches one cache line;
// longer ones are in a map.
type vocab struct {
	slots []vocabSlot // a power of two long, at most half full
	shift uint
	long  map[string]uint32
}

type vocabSlot struct {
	key  uint64 // the token's bytes, little-endian, zero-padded
	meta uint32 // length<<28 | rank+1; 0 marks an empty slot
}

const rankMask = 1<<28 - 1

func packKey(s string) uint64 {
	var k uint64
	for i := len(s) - 1; i >= 0; i-- {
		k = k<<8 | uint64(s[i])
	}
	return k
}

func (v *vocab) slot(k uint64, n int) uint64 {
	return ((k ^ uint64(n)) * 0x9E3779B97F4A7C15) >> v.shift
}

func newVocab(tokens map[string]uint32) vocab {
	short := 0
	for t := range tokens {
		if len(t) <= 8 {
			short++
		}
	}
	size, shift := 1, uint(64)
	for size < 2*short {
		size *= 2
		shift--
	}
	v := vocab{slots: make([]vocabSlot, size), shift: shift, long: make(map[string]uint32)}
	mask := uint64(size - 1)
	for t, r := range tokens {
		if len(t) > 8 {
			v.long[t] = r
			continue
		}
		k := packKey(t)
		i := v.slot(k, len(t))
		for v.slots[i].meta != 0 {
			i = (i + 1) & mask
		}
		v.slots[i] = vocabSlot{k, uint32(len(t))<<28 | (r + 1)}
	}
	return v
}

// rank returns the rank of the token s, or noRank.
func (v *vocab) rank(s string) uint32 {
	if len(s) > 8 {
		if r, ok := v.long[s]; ok {
			return r
		}
		return noRank
	}
	k := packKey(s)
	n := uint32(len(s))
	mask := uint64(len(v.slots) - 1)
	for i := v.slot(k, len(s)); ; i = (i + 1) & mask {
		sl := &v.slots[i]
		if sl.meta == 0 {
			return noRank
		}
		if sl.key == k && sl.meta>>28 == n {
			return sl.meta&rankMask - 1
		}
	}
}

// loadBPE reads the vocabulary of enc from the tokenizer library.
func loadBPE(enc tokenizer.Encoding) (*bpe, error) {
	c, err := tokenizer.Get(enc)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", enc, err)
	}
	bmpOnce.Do(loadClasses)
	tokens := make(map[string]uint32, 200_000)
	var id [1]uint
	// Token ids are dense; stop after a long gap (special tokens sit
	// just past the end and are not in the vocabulary).
	for miss := 0; miss < 4096; id[0]++ {
		s, err := c.Decode(id[:])
		if err != nil || s == "" {
			miss++
			continue
		}
		miss = 0
		tokens[s] = uint32(id[0])
	}
	if len(tokens) < 256 || len(tokens) > rankMask {
		return nil, fmt.Errorf("load %s: %d tokens", enc, len(tokens))
	}
	return &bpe{vocab: newVocab(tokens), o200k: enc == tokenizer.O200kBase, cls: bmpClasses}, nil
}

// class returns the size and class of the rune at s[i].
func (e *bpe) class(s string, i int) (int, runeClass) {
	if b := s[i]; b < utf8.RuneSelf {
		return 1, e.cls[b]
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	if r < 0x10000 {
		return n, e.cls[r]
	}
	return n, classify(r)
}

// count returns the number of tokens of s.
func (e *bpe) count(s string) int {
	if !utf8.ValidString(s) {
		s = replaceInvalid(s)
	}
	n := 0
	for p := 0; p < len(s); {
		var q int
		if e.o200k {
			q = e.splitO200k(s, p)
		} else {
			q = e.splitCL(s, p)
		}
		n += e.pieceTokens(s[p:q])
		p = q
	}
	return n
}

// replaceInvalid replaces every byte that is not part of valid UTF-8 with
// U+FFFD, as converting the string to []rune does.
func replaceInvalid(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

// run returns the end of the run of runes from i that have a class in c.
func (e *bpe) run(s string, i int, c runeClass) int {
	for i < len(s) {
		if b := s[i]; b < utf8.RuneSelf {
			if e.cls[b]&c == 0 {
				break
			}
			i++
			continue
		}
		n, k := e.class(s, i)
		if k&c == 0 {
			break
		}
		i += n
	}
	return i
}

// contraction returns the length of the contraction (?i:'s|'t|'re|'ve|'m|'ll|'d)
// at s[i], or 0.
func contraction(s string, i int) int {
	if i+1 >= len(s) || s[i] != '\'' {
		return 0
	}
	switch s[i+1] | 0x20 {
	case 's', 't', 'm', 'd':
		return 2
	case 'r', 'v':
		if i+2 < len(s) && s[i+2]|0x20 == 'e' {
			return 3
		}
	case 'l':
		if i+2 < len(s) && s[i+2]|0x20 == 'l' {
			return 3
		}
	}
	if strings.HasPrefix(s[i+1:], "ſ") {
		return 1 + len("ſ")
	}
	return 0
}

// prefixable reports whether a rune of class c can be the optional
// [^\r\n\p{L}\p{N}] that starts a word.
func prefixable(c runeClass) bool { return c&(clNewline|clLetter|clNumber) == 0 }

const other = clSpace | clLetter | clNumber // [^\s\p{L}\p{N}] is c&other == 0

// splitCL returns the end of the cl100k_base piece that starts at s[p].
func (e *bpe) splitCL(s string, p int) int {
	if k := contraction(s, p); k > 0 {
		return p + k
	}
	n0, c0 := e.class(s, p)
	if prefixable(c0) && p+n0 < len(s) {
		if _, c1 := e.class(s, p+n0); c1&clLetter != 0 {
			return e.run(s, p+n0, clLetter)
		}
	}
	if c0&clLetter != 0 {
		return e.run(s, p, clLetter)
	}
	if c0&clNumber != 0 {
		return e.numbers(s, p)
	}
	if q := e.punctuation(s, p, false); q > 0 {
		return q
	}
	return e.spaces(s, p)
}

// splitO200k returns the end of the o200k_base piece that starts at s[p].
func (e *bpe) splitO200k(s string, p int) int {
	n0, c0 := e.class(s, p)
	pre := prefixable(c0) && p+n0 < len(s)
	if pre {
		if q := e.caseWordLower(s, p+n0); q > 0 {
			return q + contraction(s, q)
		}
	}
	if q := e.caseWordLower(s, p); q > 0 {
		return q + contraction(s, q)
	}
	if pre {
		if q := e.caseWordUpper(s, p+n0); q > 0 {
			return q + contraction(s, q)
		}
	}
	if q := e.caseWordUpper(s, p); q > 0 {
		return q + contraction(s, q)
	}
	if c0&clNumber != 0 {
		return e.numbers(s, p)
	}
	if q := e.punctuation(s, p, true); q > 0 {
		return q
	}
	return e.spaces(s, p)
}

// caseWordLower matches [Upper]*[Lower]+ at s[i] and returns its end, or 0.
func (e *bpe) caseWordLower(s string, i int) int {
	u := e.run(s, i, clUpper)
	if u < len(s) {
		if _, c := e.class(s, u); c&clLower != 0 {
			return e.run(s, u, clLower)
		}
	}
	// Backtrack: the last rune of the upper run that is also lower ends the
	// match (the runes after it in the run are not lower).
	last := 0
	for j := i; j < u; {
		n, c := e.class(s, j)
		if c&clLower != 0 {
			last = j + n
		}
		j += n
	}
	return last
}

// caseWordUpper matches [Upper]+[Lower]* at s[i] and returns its end, or 0.
func (e *bpe) caseWordUpper(s string, i int) int {
	u := e.run(s, i, clUpper)
	if u == i {
		return 0
	}
	return e.run(s, u, clLower)
}

// numbers matches \p{N}{1,3} at s[p], which is known to be a number.
func (e *bpe) numbers(s string, p int) int {
	q := p
	for k := 0; k < 3 && q < len(s); k++ {
		n, c := e.class(s, q)
		if c&clNumber == 0 {
			break
		}
		q += n
	}
	return q
}

// punctuation matches ` ?[^\s\p{L}\p{N}]+[\r\n]*` (with '/' in the last set
// for o200k) at s[p] and returns its end, or 0.
func (e *bpe) punctuation(s string, p int, slash bool) int {
	q := p
	if s[q] == ' ' {
		q++
	}
	start := q
	for q < len(s) {
		n, c := e.class(s, q)
		if c&other != 0 {
			break
		}
		q += n
	}
	if q == start {
		return 0
	}
	for q < len(s) && (s[q] == '\r' || s[q] == '\n' || slash && s[q] == '/') {
		q++
	}
	return q
}

// spaces matches `\s*[\r\n]+|\s+(?!\S)|\s+` at s[p], which is known to be
// white space.
func (e *bpe) spaces(s string, p int) int {
	q, lastNL, lastStart := p, -1, p
	for q < len(s) {
		n, c := e.class(s, q)
		if c&clSpace == 0 {
			break
		}
		if c&clNewline != 0 {
			lastNL = q
		}
		lastStart = q
		q += n
	}
	switch {
	case lastNL >= 0:
		return lastNL + 1
	case q == len(s) || lastStart == p:
		return q
	default:
		return lastStart
	}
}

// pieceTokens returns the number of tokens byte-pair encoding makes of a
// piece.
func (e *bpe) pieceTokens(piece string) int {
	if len(piece) == 1 {
		return 1
	}
	if e.vocab.rank(piece) != noRank {
		return 1
	}
	if len(piece) <= maxScanPiece {
		return e.mergeScan(piece)
	}
	return e.mergeHeap(piece)
}

const noRank = ^uint32(0)

// maxScanPiece is the longest piece merged by scanning; longer ones use a
// heap so that a hostile input cannot make the merge quadratic.
const maxScanPiece = 64

func (e *bpe) rank(s string) uint32 { return e.vocab.rank(s) }

// mergeScan merges the lowest-ranked adjacent pair until none is in the
// vocabulary, leftmost first among equals, and returns the parts left.
func (e *bpe) mergeScan(piece string) int {
	var startBuf [maxScanPiece + 1]int32
	var rankBuf [maxScanPiece + 1]uint32
	// Parts are piece[start[i]:start[i+1]]; rank[i] is the rank of merging
	// parts i and i+1.
	start := startBuf[:len(piece)+1]
	rank := rankBuf[:len(piece)]
	for i := range start {
		start[i] = int32(i)
	}
	for i := range rank {
		rank[i] = noRank
		if i+2 <= len(piece) {
			rank[i] = e.rank(piece[i : i+2])
		}
	}
	pairRank := func(i int) uint32 {
		if i+2 >= len(start) {
			return noRank
		}
		return e.rank(piece[start[i]:start[i+2]])
	}
	for len(start) > 2 {
		best, at := noRank, -1
		for i, r := range rank[:len(start)-2] {
			if r < best {
				best, at = r, i
			}
		}
		if at < 0 {
			break
		}
		// Merge parts at and at+1.
		start = append(start[:at+1], start[at+2:]...)
		rank = append(rank[:at+1], rank[at+2:]...)
		rank[at] = pairRank(at)
		if at > 0 {
			rank[at-1] = pairRank(at - 1)
		}
	}
	return len(start) - 1
}

// mergeHeap gives the same result as mergeScan in O(n log n), with the
// parts in a linked list and the candidate merges in a heap.
func (e *bpe) mergeHeap(piece string) int {
	n := int32(len(piece))
	next := make([]int32, n+1) // next part start, -1 at the end
	prev := make([]int32, n+1)
	rank := make([]uint32, n+1) // rank of merging the part at i with its successor
	for i := range next {
		next[i], prev[i], rank[i] = int32(i)+1, int32(i)-1, noRank
	}
	next[n] = -1
	rankAt := func(i int32) uint32 {
		j := next[i]
		if j < 0 || next[j] < 0 {
			return noRank
		}
		return e.rank(piece[i:next[j]])
	}
	h := make(candidates, 0, n)
	for i := int32(0); i+2 <= n; i++ {
		if r := rankAt(i); r != noRank {
			rank[i] = r
			h = append(h, candidate{r, i})
		}
	}
	h.init()
	parts := int(n)
	for len(h) > 0 {
		c := h.pop()
		i := c.at
		if rank[i] != c.rank {
			continue // stale
		}
		j := next[i]
		k := next[j]
		rank[j] = noRank
		next[i] = k
		if k >= 0 {
			prev[k] = i
		}
		parts--
		for _, b := range [2]int32{i, prev[i]} {
			if b < 0 {
				continue
			}
			rank[b] = rankAt(b)
			if rank[b] != noRank {
				h.push(candidate{rank[b], b})
			}
		}
	}
	return parts
}

type candidate struct {
	rank uint32
	at   int32
}

// candidates is a min-heap by rank, then position.
type candidates []candidate

func (h candidates) less(a, b int) bool {
	if h[a].rank != h[b].rank {
		return h[a].rank < h[b].rank
	}
	return h[a].at < h[b].at
}

func (h candidates) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *candidates) push(c candidate) {
	*h = append(*h, c)
	(*h).up(len(*h) - 1)
}

func (h *candidates) pop() candidate {
	old := *h
	top := old[0]
	last := len(old) - 1
	old[0] = old[last]
	*h = old[:last]
	h.down(0)
	return top
}

func (h candidates) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			return
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
}

func (h candidates) down(i int) {
	for {
		child := 2*i + 1
		if child >= len(h) {
			return
		}
		if right := child + 1; right < len(h) && h.less(right, child) {
			child = right
		}
		if !h.less(child, i) {
			return
		}
		h[i], h[child] = h[child], h[i]
		i = child
	}
}
