package simulator

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// words are the pieces the simulator writes. Each, with its leading space,
// is exactly one token in both cl100k_base and o200k_base, and a run of
// them is as many tokens as pieces, so reported and estimated usage agree
// with what was sent (the tests check this with the tokenizer).
var words = strings.Fields(`the of and to in is was for on that with as by at from his he it an were
are which this be or has had first one their its new after who they have her she two been other
when there all during into school time may years more most only over city some world would where
later up such used many can state about national out known university united then made also
between three part series year through early area film team north south east west river water
light small large house music game book story place people power sound point line word back field
open road sea stone tree wood fire wind rain snow cloud star moon sun earth land hill lake park
garden bridge tower wall door window room table chair bed glass paper letter number color green
blue red black white gold silver iron steel bread milk cheese apple fruit flower leaf seed grass
animal bird fish horse dog cat mouse bear wolf lion king queen prince lord lady father mother
brother sister child friend doctor teacher student soldier worker farmer artist writer singer
player leader member voice heart mind body hand head face eye ear mouth foot arm leg skin blood
bone morning evening night day week month summer winter spring autumn fall today quiet loud warm
cold bright dark soft hard fast slow long short high low deep wide rich poor young old happy simple`)

// pieces holds each word with its leading space, and chatDeltas and
// textChoices the JSON that carries it in a streaming chunk, built once.
var (
	pieces      []string
	chatDeltas  [][]byte
	textChoices [][]byte
)

func init() {
	for _, w := range words {
		p := " " + w
		pieces = append(pieces, p)
		chatDeltas = append(chatDeltas, []byte(`{"index":0,"delta":{"content":"`+p+`"},"logprobs":null,"finish_reason":null}]`))
		textChoices = append(textChoices, []byte(`{"text":"`+p+`","index":0,"logprobs":null,"finish_reason":null}]`))
	}
}

// fnv64 is FNV-1a, stable across processes, for seeding the output.
func fnv64(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

const fnvOffset = 14695981039346656037

// rng is SplitMix64: tiny, fast and deterministic.
type rng uint64

func (r *rng) next() uint64 {
	*r += 0x9E3779B97F4A7C15
	z := uint64(*r)
	z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
	z = (z ^ z>>27) * 0x94D049BB133111EB
	return z ^ z>>31
}

// seed derives the output of a request from its model and prompt.
func seed(model string, prompt []byte) rng {
	h := fnv64(fnvOffset, []byte(model))
	h = fnv64(h^0xff, prompt)
	return rng(h)
}

// piece returns the index of the next word.
func (r *rng) piece() int { return int(r.next() % uint64(len(words))) }

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return append(dst, '"')
}

// appendUsage appends a usage object as OpenAI writes it for api.
func appendUsage(dst []byte, api string, prompt, completion int64) []byte {
	dst = append(dst, `{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, prompt, 10)
	if api != apiEmbeddings {
		dst = append(dst, `,"completion_tokens":`...)
		dst = strconv.AppendInt(dst, completion, 10)
	}
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, prompt+completion, 10)
	if api == apiChat {
		dst = append(dst, `,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}`...)
	}
	return append(dst, '}')
}
