package usage

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"

	"github.com/sluice-gateway/sluice"
	"github.com/tiktoken-go/tokenizer"
)

// ErrMalformed is returned (wrapped) by PromptTokens for a body that is not
// the JSON its API expects.
var ErrMalformed = errors.New("malformed request body")

// Counter counts tokens with OpenAI's tokenizers. It uses o200k_base for
// the gpt-4o, gpt-4.1, gpt-4.5, gpt-5, gpt-oss, o1, o3 and o4 families and
// cl100k_base for every other model. The vocabularies are compiled into the
// binary (from github.com/tiktoken-go/tokenizer) and loaded once per
// process on first use, which takes a few hundred milliseconds and some
// tens of megabytes per encoding; Preload does it ahead of time. Nothing
// is fetched.
//
// Counts equal those of the tiktoken expressions and vocabularies; the
// counting itself is a faster reimplementation (see bpe.go). A Counter
// remembers the counts of recently seen long strings, since prompts repeat
// (system prompts, conversation history).
//
// The zero value is ready to use. A Counter is safe for concurrent use and
// must not be copied after first use.
type Counter struct {
	recent  [cacheSlots]atomic.Uint64
	nocache bool // for benchmarks
}

// The count cache is direct-mapped: a slot holds 32 bits of a string's
// hash (with the encoding mixed in) and its count. A false hit needs a
// 44-bit hash collision between two strings counted close together.
const (
	cacheSlots   = 4096
	cacheMinLen  = 48 // shorter strings are counted faster than hashed
	cacheMaxToks = 1<<32 - 1
)

var cacheSeed = maphash.MakeSeed()

// count counts s with b, through the cache.
func (c *Counter) count(b *bpe, s string) int {
	if len(s) < cacheMinLen || c.nocache {
		return b.count(s)
	}
	h := maphash.String(cacheSeed, s)
	if b.o200k {
		h = ^h
	}
	slot := &c.recent[h%cacheSlots]
	check := h>>32 | 1
	if v := slot.Load(); v>>32 == check {
		return int(uint32(v))
	}
	n := b.count(s)
	if n <= cacheMaxToks {
		slot.Store(check<<32 | uint64(n))
	}
	return n
}

// The encodings, loaded on first use and shared by every Counter.
var o200k, cl100k lazyBPE

type lazyBPE struct {
	once sync.Once
	bpe  *bpe
}

func (l *lazyBPE) get(enc tokenizer.Encoding) *bpe {
	l.once.Do(func() {
		b, err := loadBPE(enc)
		if err != nil {
			// The vocabularies are compiled in; this cannot happen.
			panic("usage: " + err.Error())
		}
		l.bpe = b
	})
	return l.bpe
}

// Preload loads both encodings now rather than on first use.
func (c *Counter) Preload() {
	o200k.get(tokenizer.O200kBase)
	cl100k.get(tokenizer.Cl100kBase)
}

// Encoding returns the name of the encoding Count uses for model:
// "o200k_base" or "cl100k_base". Provider prefixes ("openai/gpt-4o",
// "azure/…") and fine-tune prefixes ("ft:gpt-4o-mini:…") are ignored, and
// case does not matter.
func Encoding(model string) string {
	if usesO200k(model) {
		return string(tokenizer.O200kBase)
	}
	return string(tokenizer.Cl100kBase)
}

var o200kFamilies = []string{"gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "gpt-oss", "o1", "o3", "o4"}

func usesO200k(model string) bool {
	if i := strings.LastIndexByte(model, '/'); i >= 0 {
		model = model[i+1:]
	}
	if len(model) >= 3 && strings.EqualFold(model[:3], "ft:") {
		model = model[3:]
	}
	for _, f := range o200kFamilies {
		if len(model) < len(f) || !strings.EqualFold(model[:len(f)], f) {
			continue
		}
		// "o1" must not match "o100-whatever"; "gpt-4o" may be followed by
		// anything ("gpt-4o-mini", "gpt-4o2024").
		if f[0] == 'o' && len(model) > len(f) && model[len(f)] != '-' {
			continue
		}
		return true
	}
	return false
}

func (c *Counter) bpe(model string) *bpe {
	if usesO200k(model) {
		return o200k.get(tokenizer.O200kBase)
	}
	return cl100k.get(tokenizer.Cl100kBase)
}

// Count returns the number of tokens of text in the encoding of model.
// Special tokens such as "<|endoftext|>" count as ordinary text, as they do
// when sent to the API. Invalid UTF-8 counts as if each bad byte were
// U+FFFD.
func (c *Counter) Count(model, text string) int {
	if text == "" {
		return 0
	}
	return c.count(c.bpe(model), text)
}

// PromptTokens estimates the prompt tokens OpenAI would report for a
// request body of the given API, tokenized for model.
//
// Chat follows OpenAI's published recipe (the "How to count tokens with
// tiktoken" cookbook), which matches the API for gpt-3.5, gpt-4 and gpt-4o:
// 3 tokens per message, plus the tokens of each of its string fields (role,
// content, name, tool_call_id, …), plus 1 for a name, plus 3 priming the
// reply. Content given as an array of parts counts the text of each part
// and 85 tokens per image (the price of a low-detail image; high-detail
// images cost more). Tool calls in assistant messages count the tokens of
// their function names and arguments. Function tools (and the legacy
// "functions") follow the cookbook's formula: 7 tokens per function for
// o200k models and 10 for others, plus "name:description", 3 more if it has
// properties, 3 plus "name:type:description" per top-level property, enum
// values at 3 plus their tokens each, less 3 per enum, and 12 at the end.
// Nested schemas are not counted.
//
// Completions count "prompt" and "suffix"; embeddings count "input". Either
// may be a string, an array of strings, or token arrays, which count as
// their length.
//
// The result is an estimate: OpenAI's formatting changes between models and
// is not published for every feature. It is meant for admission and for
// billing when the upstream reports nothing.
func (c *Counter) PromptTokens(api sluice.API, model string, body []byte) (int64, error) {
	funcInit := int64(10)
	if usesO200k(model) {
		funcInit = 7
	}
	b := c.bpe(model)
	e := estimator{b: body, funcInit: funcInit, count: func(s string) int64 {
		if s == "" {
			return 0
		}
		return int64(c.count(b, s))
	}}
	return e.prompt(api)
}

// estimator walks a request body, counting tokens with count.
type estimator struct {
	b        []byte
	count    func(string) int64
	funcInit int64
	scratch  []byte // decoded strings, reused
}

const (
	tokensPerMessage = 3
	tokensPerName    = 1
	tokensReply      = 3
	tokensPerImage   = 85
	tokensPropInit   = 3
	tokensPropKey    = 3
	tokensEnumInit   = -3
	tokensEnumItem   = 3
	tokensFuncEnd    = 12
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// The top-level members each API's estimate reads; the first is required.
var (
	chatKeys       = [...]string{"messages", "tools", "functions"}
	completionKeys = [...]string{"prompt", "suffix"}
	embeddingKeys  = [...]string{"input"}
)

func (e *estimator) prompt(api sluice.API) (int64, error) {
	b := e.b
	var want []string
	switch api {
	case sluice.APIChat:
		want = chatKeys[:]
	case sluice.APICompletions:
		want = completionKeys[:]
	case sluice.APIEmbeddings:
		want = embeddingKeys[:]
	default:
		return 0, fmt.Errorf("usage: cannot estimate the prompt of api %q", api)
	}
	var at [3]int
	for k := range at {
		at[k] = -1
	}
	o := openObject(b, skipWS(b, 0))
	for o.next() {
		for k, name := range want {
			if keyIs(o.key, name) {
				at[k] = o.val
			}
		}
		o.skip()
	}
	if o.err || skipWS(b, o.end) != len(b) {
		return 0, malformed("not a JSON object")
	}
	if at[0] < 0 {
		return 0, malformed("no %q", want[0])
	}
	switch api {
	case sluice.APIChat:
		n, err := e.messages(at[0])
		if err != nil {
			return 0, err
		}
		return n + e.tools(at[1], at[2]), nil
	case sluice.APICompletions:
		n, err := e.input(at[0], want[0])
		if err != nil {
			return 0, err
		}
		if at[1] >= 0 && b[at[1]] == '"' {
			n += e.str(at[1])
		}
		return n, nil
	default:
		return e.input(at[0], want[0])
	}
}

// str counts the tokens of the string at b[i]; 0 if it is not a string.
func (e *estimator) str(i int) int64 {
	raw, _, ok := stringAt(e.b, i)
	if !ok {
		return 0
	}
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return e.count(transient(raw))
	}
	e.scratch = appendUnquote(e.scratch[:0], raw)
	return e.count(transient(e.scratch))
}

func (e *estimator) messages(i int) (int64, error) {
	b := e.b
	if b[i] != '[' {
		return 0, malformed("messages is not an array")
	}
	var n int64
	a := openArray(b, i)
	for a.next() {
		if b[a.val] != '{' {
			return 0, malformed("message %d is not an object", a.n-1)
		}
		n += tokensPerMessage
		o := openObject(b, a.val)
		for o.next() {
			v := o.val
			switch {
			case keyIs(o.key, "content") && b[v] == '[':
				n += e.parts(v)
			case keyIs(o.key, "tool_calls") && b[v] == '[':
				calls := openArray(b, v)
				for calls.next() {
					if f := memberOf(b, calls.val, "function"); f >= 0 {
						n += e.function(f)
					}
					calls.skip()
				}
			case keyIs(o.key, "function_call") && b[v] == '{':
				n += e.function(v)
			case b[v] == '"':
				n += e.str(v)
				if keyIs(o.key, "name") {
					n += tokensPerName
				}
			}
			o.skip()
		}
		a.skip()
	}
	if a.err {
		return 0, malformed("messages")
	}
	return n + tokensReply, nil
}

// parts counts an array of content parts.
func (e *estimator) parts(i int) int64 {
	b := e.b
	var n int64
	a := openArray(b, i)
	for a.next() {
		switch b[a.val] {
		case '"':
			n += e.str(a.val)
		case '{':
			o := openObject(b, a.val)
			for o.next() {
				switch {
				case keyIs(o.key, "text"):
					n += e.str(o.val)
				case keyIs(o.key, "type"):
					if raw, _, ok := stringAt(b, o.val); ok && (string(raw) == "image_url" || string(raw) == "input_image") {
						n += tokensPerImage
					}
				}
				o.skip()
			}
		}
		a.skip()
	}
	return n
}

// function counts the name and arguments of a tool call.
func (e *estimator) function(i int) int64 {
	var n int64
	for _, k := range functionKeys {
		if v := memberOf(e.b, i, k); v >= 0 {
			n += e.str(v)
		}
	}
	return n
}

// tools counts the function definitions of "tools" (at i) and the legacy
// "functions" (at j); either may be -1.
func (e *estimator) tools(i, j int) int64 {
	b := e.b
	var n int64
	defs := 0
	if i >= 0 && b[i] == '[' {
		a := openArray(b, i)
		for a.next() {
			if f := memberOf(b, a.val, "function"); f >= 0 && b[f] == '{' {
				n += e.funcDef(f)
				defs++
			}
			a.skip()
		}
	}
	if j >= 0 && b[j] == '[' {
		a := openArray(b, j)
		for a.next() {
			if b[a.val] == '{' {
				n += e.funcDef(a.val)
				defs++
			}
			a.skip()
		}
	}
	if defs == 0 {
		return 0
	}
	return n + tokensFuncEnd
}

// funcDef counts one function definition the cookbook's way.
func (e *estimator) funcDef(i int) int64 {
	b := e.b
	n := e.funcInit
	line := e.appendStr(e.scratch[:0], memberOf(b, i, "name"))
	line = append(line, ':')
	line = trimDot(e.appendStr(line, memberOf(b, i, "description")))
	n += e.count(transient(line))
	defer func() { e.scratch = line[:0] }()
	props := -1
	if p := memberOf(b, i, "parameters"); p >= 0 && b[p] == '{' {
		props = memberOf(b, p, "properties")
	}
	if props < 0 || b[props] != '{' {
		return n
	}
	o := openObject(b, props)
	for o.next() {
		if o.n == 1 {
			n += tokensPropInit
		}
		n += tokensPropKey
		p := o.val
		if b[p] == '{' {
			if en := memberOf(b, p, "enum"); en >= 0 {
				n += tokensEnumInit
				if b[en] == '[' {
					items := openArray(b, en)
					for items.next() {
						line = e.appendStr(line[:0], items.val)
						n += tokensEnumItem + e.count(transient(line))
						items.skip()
					}
				}
			}
		}
		line = appendUnquote(line[:0], o.key)
		line = append(line, ':')
		if p0 := b[p]; p0 == '{' {
			line = e.appendStr(line, memberOf(b, p, "type"))
			line = append(line, ':')
			line = trimDot(e.appendStr(line, memberOf(b, p, "description")))
		} else {
			line = append(line, ':')
		}
		n += e.count(transient(line))
		o.skip()
	}
	return n
}

// appendStr appends the value at b[i]: decoded if it is a string, nothing
// if it is null or i < 0, as JSON text otherwise.
func (e *estimator) appendStr(dst []byte, i int) []byte {
	if i < 0 {
		return dst
	}
	if raw, _, ok := stringAt(e.b, i); ok {
		return appendUnquote(dst, raw)
	}
	if end := skipValue(e.b, i); end > i && string(e.b[i:end]) != "null" {
		return append(dst, e.b[i:end]...)
	}
	return dst
}

// transient returns b as a string without copying. The string must not be
// kept, nor used once b changes: the counting functions it is passed to
// only read it.
func transient(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func trimDot(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '.' {
		return b[:len(b)-1]
	}
	return b
}

// input counts a prompt or embeddings input: a string, or an array of
// strings, token ids or arrays of token ids.
func (e *estimator) input(i int, name string) (int64, error) {
	b := e.b
	switch b[i] {
	case '"':
		return e.str(i), nil
	case '[':
	default:
		return 0, malformed("%s is neither a string nor an array", name)
	}
	var n int64
	a := openArray(b, i)
	for a.next() {
		switch c := b[a.val]; {
		case c == '"':
			n += e.str(a.val)
		case c == '[':
			ids := openArray(b, a.val)
			for ids.next() {
				if isNumberStart(b[ids.val]) {
					n++
				}
				ids.skip()
			}
		case isNumberStart(c):
			n++
		}
		a.skip()
	}
	return n, nil
}

func isNumberStart(c byte) bool { return c == '-' || '0' <= c && c <= '9' }
