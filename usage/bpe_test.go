package usage

import (
	"strings"
	"sync"
	"testing"

	"github.com/dlclark/regexp2/v2"
	"github.com/tiktoken-go/tokenizer"
)

// The library's codecs are the reference the fast counter must agree with.
var (
	refOnce   sync.Once
	refCodecs map[tokenizer.Encoding]tokenizer.Codec
	sharedC   Counter
)

func refCodec(t testing.TB, enc tokenizer.Encoding) tokenizer.Codec {
	refOnce.Do(func() {
		refCodecs = map[tokenizer.Encoding]tokenizer.Codec{}
		for _, e := range []tokenizer.Encoding{tokenizer.Cl100kBase, tokenizer.O200kBase} {
			c, err := tokenizer.Get(e)
			if err != nil {
				panic(err)
			}
			refCodecs[e] = c
		}
	})
	return refCodecs[enc]
}

var encModels = map[tokenizer.Encoding]string{tokenizer.Cl100kBase: "gpt-4", tokenizer.O200kBase: "gpt-4o"}

func checkAgainstLibrary(t *testing.T, text string) {
	t.Helper()
	if strings.Contains(text, "\x7f") {
		// The library's compiled expression leaves DEL out of every class
		// and drops it; tiktoken encodes it like any other byte.
		return
	}
	for enc, model := range encModels {
		want, err := refCodec(t, enc).Count(text)
		if err != nil {
			t.Fatalf("library: %v", err)
		}
		if got := sharedC.Count(model, text); got != want {
			t.Errorf("%s: Count(%q) = %d, library says %d", enc, text, got, want)
		}
	}
}

var countCorpus = []string{
	"tiktoken is great!",
	"Hello, world! How are you doing today?",
	"I'm sure you're right; they've said we'll go, he'd know. DON'T SHOUT, I'M HERE. It'S 'ſ 'ſt 'Re",
	"'s 't 're 've 'm 'll 'd 'x '",
	"1234567890 12 1 3.14159 1,000,000 ٣٤٥ ⅷ ½",
	"  leading spaces and trailing spaces   ",
	"tabs\tand\t\tmore\ttabs\t",
	"line one\nline two\r\nline three\rline four\n\n\n  \n \t\nend",
	"\n\n\n",
	"   \n   ",
	"a  b   c    d",
	"non\u00a0breaking\u3000ideographic\u2003em space\u0085next line",
	"func main() {\n\tfmt.Println(\"hi\") // comment\n\tx := []int{1, 2, 3}\n}\n",
	`{"role":"user","content":"What's the weather like in San Francisco?","n":42}`,
	"path/to/some/file.go and https://example.com/a/b?c=d&e=f#g //comment ///x",
	"CamelCaseWords HTTPServer getHTTPResponseCode XMLHttpRequest iPhone McDonald's",
	"ÉCOLE école Straße STRASSE Ǆemal ǅemal ǆemal",
	"Привет, как дела? Ελληνικά γράμματα. עברית. العربية لغة جميلة.",
	"お誕生日おめでとう 你好，世界！ 한국어 텍스트입니다。",
	"हिन्दी में लिखा गया पाठ। தமிழ் உரை. ภาษาไทย",
	"e\u0301 combining\u0301\u0302 marks a\u0308\u0308 \u0301start",
	"emoji 😀👍🏽 👨‍👩‍👧 🇫🇷 ❤️ ✨",
	"<|endoftext|> special <|fim_prefix|> tokens <|endofprompt|>",
	strings.Repeat("a", 300),
	strings.Repeat("ab", 200),
	strings.Repeat("!", 200),
	strings.Repeat("=-", 150),
	strings.Repeat("1", 100),
	strings.Repeat(" ", 100) + "x",
	strings.Repeat("\n", 50) + "x",
	"Pneumonoultramicroscopicsilicovolcanoconiosis supercalifragilisticexpialidocious antidisestablishmentarianism",
	"aGVsbG8gd29ybGQgdGhpcyBpcyBhIGxvbmcgYmFzZTY0IGVuY29kZWQgc3RyaW5nIHRoYXQgZ29lcyBvbiBhbmQgb24gYW5kIG9uIGZvcmV2ZXI=",
	"invalid \xff utf-8 \xe2\x82 here \xc3",
	"\xff\xfe\xfd",
	"x\x00y\x01z\x1f",
	"ǅ", "ſ", "'", " ", "\r", "\r\n", "a", "A", "1",
}

func TestCountMatchesLibrary(t *testing.T) {
	for _, text := range countCorpus {
		checkAgainstLibrary(t, text)
	}
	// Every prefix and suffix of a mixed sample, to cover piece boundaries.
	sample := "We'll meet at 10:30 — Straße No.5,\n\t  'ok'  déjà-vu 東京 ½x   \r\n"
	for i := range len(sample) + 1 {
		checkAgainstLibrary(t, sample[:i])
		checkAgainstLibrary(t, sample[i:])
	}
}

func TestCountDEL(t *testing.T) {
	for _, model := range []string{"gpt-4", "gpt-4o"} {
		if n := sharedC.Count(model, "!\x7f!"); n < 1 {
			t.Errorf("%s: DEL dropped: %d tokens", model, n)
		}
		if n := sharedC.Count(model, "\x7f"); n != 1 {
			t.Errorf("%s: Count(DEL) = %d, want 1", model, n)
		}
	}
}

// The split expressions of the encodings, as in the library. The "(?:)"
// prefix keeps regexp2 from using the library's generated matchers, which
// differ from the expressions in two places: they drop DEL, and they end
// `\s*[\r\n]+` at the first line break of a white-space run instead of
// the last ("\n \n" gives "\n", " \n" where the expression, tiktoken and
// this package give "\n \n").
var refPatterns = map[tokenizer.Encoding]*regexp2.Regexp{
	tokenizer.Cl100kBase: regexp2.MustCompile(`(?:)(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`, regexp2.None),
	tokenizer.O200kBase:  regexp2.MustCompile(`(?:)[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`, regexp2.None),
}

// refCount counts text with the split expression and a textbook byte-pair
// merge over the vocabulary.
func refCount(t testing.TB, enc tokenizer.Encoding, text string) int {
	re := refPatterns[enc]
	vocab := &sharedC.bpe(encModels[enc]).vocab
	n := 0
	covered := 0
	m, err := re.FindStringMatch(text)
	for ; m != nil && err == nil; m, err = re.FindNextMatch(m) {
		if m.RuneIndex != covered {
			t.Fatalf("expression skipped runes %d..%d of %q", covered, m.RuneIndex, text)
		}
		covered = m.RuneIndex + m.RuneLength
		parts := []string{}
		for _, b := range []byte(m.String()) {
			parts = append(parts, string([]byte{b}))
		}
		for {
			best, at := noRank, -1
			for i := 0; i+1 < len(parts); i++ {
				if r := vocab.rank(parts[i] + parts[i+1]); r < best {
					best, at = r, i
				}
			}
			if at < 0 {
				break
			}
			parts[at] += parts[at+1]
			parts = append(parts[:at+1], parts[at+2:]...)
		}
		n += len(parts)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func checkAgainstReference(t *testing.T, text string) {
	t.Helper()
	for enc, model := range encModels {
		if got, want := sharedC.Count(model, text), refCount(t, enc, text); got != want {
			t.Errorf("%s: Count(%q) = %d, reference says %d", enc, text, got, want)
		}
	}
}

func TestLibraryDifferences(t *testing.T) {
	for _, text := range []string{"\n \n", "  \n  \n x", "\n\n \n", "!\x7f!", "a\x7fb"} {
		checkAgainstReference(t, text)
	}
	if n := sharedC.Count("gpt-4", "\n \n"); n != 1 {
		t.Errorf(`Count("\n \n") = %d, want 1`, n)
	}
}

func TestCountMatchesReference(t *testing.T) {
	for _, text := range countCorpus {
		checkAgainstReference(t, text)
	}
}

// TestCountRandom compares with the reference on strings drawn from the
// characters the expressions treat differently.
func TestCountRandom(t *testing.T) {
	alphabet := []string{
		"a", "z", "A", "Z", "s", "S", "t", "T", "r", "e", "E", "v", "m", "M", "l", "L", "d", "D",
		"ſ", "é", "É", "ǅ", "ʰ", "中", "あ", "\u0301", "\u0903", "ß", "Ω", "ω",
		"'", "’", "0", "7", "٣", "½", "Ⅷ", " ", "  ", "\t", "\n", "\r", "\r\n", "\v", "\f",
		"\u00a0", "\u0085", "\u2003", "\u3000", "\u200b", "!", ".", ",", "/", "//", "-", "_",
		"(", "\"", "\x00", "\x1f", "\x7f", "\xff", "\xe2\x82", "😀", "\U0001D400",
	}
	seed := uint64(1)
	rnd := func(n int) int {
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		return int(seed % uint64(n))
	}
	iterations := 3000
	if testing.Short() {
		iterations = 300
	}
	for range iterations {
		var b strings.Builder
		for range 1 + rnd(24) {
			b.WriteString(alphabet[rnd(len(alphabet))])
		}
		checkAgainstReference(t, b.String())
		if t.Failed() {
			return
		}
	}
}

func FuzzCount(f *testing.F) {
	for _, s := range countCorpus {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 1000 {
			return
		}
		checkAgainstReference(t, text)
	})
}
