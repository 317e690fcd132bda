package usage

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice"
	"github.com/tiktoken-go/tokenizer"
)

func embeddingsBody(dims int) []byte {
	var b strings.Builder
	b.WriteString(`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[`)
	for i := range dims {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatFloat(float64(i%997)/-1e4-0.0123456789, 'g', -1, 64))
	}
	b.WriteString(`]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}`)
	return []byte(b.String())
}

func largeChatBody(n int) []byte {
	content := strings.Repeat(`The quick brown fox said \"hi\" and jumped.\n`, n/45+1)
	return []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"` +
		content + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":20000,"total_tokens":20010}}`)
}

func BenchmarkFromBody(b *testing.B) {
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"chat", []byte(chatResponse)},
		{"chat-100KB", largeChatBody(100_000)},
		{"embeddings-1536", embeddingsBody(1536)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, ok := FromBody(tc.body); !ok {
					b.Fatal("no usage")
				}
			}
		})
		b.Run(tc.name+"/encoding-json", func(b *testing.B) {
			b.SetBytes(int64(len(tc.body)))
			b.ReportAllocs()
			for b.Loop() {
				var v struct {
					Model string
					Usage *struct {
						PromptTokens     int64 `json:"prompt_tokens"`
						CompletionTokens int64 `json:"completion_tokens"`
						TotalTokens      int64 `json:"total_tokens"`
					}
				}
				if err := json.Unmarshal(tc.body, &v); err != nil || v.Usage == nil {
					b.Fatal(err)
				}
			}
		})
	}
}

var (
	contentChunk = []byte(`{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}],"usage":null}`)
	usageChunk   = []byte(`{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_eb9dce56a8","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}`)
)

func BenchmarkParseChunk(b *testing.B) {
	for name, data := range map[string][]byte{"content": contentChunk, "usage": usageChunk, "done": []byte("[DONE]")} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ParseChunk(data)
			}
		})
	}
}

func BenchmarkAppendText(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendText(buf[:0], contentChunk)
	}
}

func BenchmarkCount(b *testing.B) {
	var c Counter
	// ~1 KB of varied English, the kind of text estimation sees.
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 6) +
		"Metering every request means counting tokens when an upstream does not report them: " +
		"streams cut short, servers that ignore stream_options, and admission before a call. " +
		"Numbers like 3.14159 or 2024-05-13, code such as `for i := range n { sum += i }`, " +
		"and names like McDonald's, O'Reilly or São Paulo all tokenize differently. " +
		"Whitespace\n\n  matters\ttoo, as do émojis 😀 and 中文字符."
	for _, model := range []string{"gpt-4", "gpt-4o"} {
		c.Count(model, "warm up")
		b.Run(model+"-1KB", func(b *testing.B) {
			bp := c.bpe(model)
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				bp.count(text)
			}
		})
		b.Run(model+"-1KB-repeated", func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				c.Count(model, text)
			}
		})
	}
	b.Run("library-gpt-4o-1KB", func(b *testing.B) {
		lib, err := tokenizer.Get(tokenizer.O200kBase)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(text)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := lib.Count(text); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkPromptTokens(b *testing.B) {
	var c Counter
	long := `{"model":"gpt-4o","messages":[` + strings.Repeat(`{"role":"user","content":"The quick brown fox jumps over the lazy dog, again and again."},`, 150) + `{"role":"user","content":"end"}]}`
	for _, tc := range []struct {
		name string
		api  sluice.API
		body string
	}{
		{"chat-cookbook", sluice.APIChat, cookbookMessages},
		{"chat-tools", sluice.APIChat, cookbookTools},
		{"chat-10KB", sluice.APIChat, long},
		{"embeddings", sluice.APIEmbeddings, `{"model":"text-embedding-3-small","input":"The food was delicious and the waiter was friendly."}`},
	} {
		body := []byte(tc.body)
		c.Count("gpt-4o", "warm up")
		for _, repeated := range []bool{false, true} {
			name := tc.name
			if repeated {
				name += "-repeated"
			}
			b.Run(name, func(b *testing.B) {
				c.nocache = !repeated
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.PromptTokens(tc.api, "gpt-4o", body); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
