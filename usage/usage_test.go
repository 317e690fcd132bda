package usage

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-gateway/sluice"
)

const chatResponse = `{
  "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
  "object": "chat.completion",
  "created": 1741569952,
  "model": "gpt-4.1-2025-04-14",
  "choices": [{"index": 0, "message": {"role": "assistant",
      "content": "Hello! \"usage\": {\"prompt_tokens\": 999} How can I help?",
      "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "stop"}],
  "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
  "service_tier": "default"
}`

func TestFromBody(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		want  Usage
		model string
		ok    bool
	}{
		{"chat", chatResponse, Usage{19, 10, 29}, "gpt-4.1-2025-04-14", true},
		{"completions", `{"id":"cmpl-1","object":"text_completion","model":"gpt-3.5-turbo-instruct","choices":[{"text":"x","index":0}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`,
			Usage{5, 7, 12}, "gpt-3.5-turbo-instruct", true},
		{"embeddings", `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292,-0.0028842222]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}`,
			Usage{8, 0, 8}, "text-embedding-3-small", true},
		{"usage before model", `{"usage":{"prompt_tokens":1,"completion_tokens":2},"model":"m"}`, Usage{1, 2, 3}, "m", true},
		{"nested usage only", `{"model":"m","choices":[{"message":{"content":"x","usage":{"prompt_tokens":5}}}],"metadata":{"usage":{"prompt_tokens":7}}}`, Usage{}, "m", false},
		{"usage inside a string", `{"model":"m","x":"\"usage\":{\"prompt_tokens\":5}"}`, Usage{}, "m", false},
		{"usage null", `{"model":"m","usage":null}`, Usage{}, "m", false},
		{"usage not an object", `{"usage":[1,2]}`, Usage{}, "", false},
		{"null counts", `{"usage":{"prompt_tokens":null,"completion_tokens":3}}`, Usage{0, 3, 3}, "", true},
		{"fractional count", `{"usage":{"prompt_tokens":1.5}}`, Usage{}, "", false},
		{"exponent count", `{"usage":{"prompt_tokens":1e3}}`, Usage{}, "", false},
		{"negative count", `{"usage":{"prompt_tokens":-1}}`, Usage{}, "", false},
		{"string count", `{"usage":{"prompt_tokens":"5"}}`, Usage{}, "", false},
		{"overflowing count", `{"usage":{"prompt_tokens":9223372036854775808}}`, Usage{}, "", false},
		{"largest count", `{"usage":{"prompt_tokens":9223372036854775807,"total_tokens":1}}`, Usage{1<<63 - 1, 0, 1}, "", true},
		{"duplicate usage, last wins", `{"usage":{"prompt_tokens":"bad"},"usage":{"prompt_tokens":4}}`, Usage{4, 0, 4}, "", true},
		{"duplicate field, last wins", `{"usage":{"prompt_tokens":"bad","prompt_tokens":4}}`, Usage{4, 0, 4}, "", true},
		{"escaped keys", `{"\u0075sage":{"prompt\u005ftokens":2},"mod\u0065l":"a\/b\u00e9"}`, Usage{2, 0, 2}, "a/bé", true},
		{"model not a string", `{"model":7,"usage":{}}`, Usage{}, "", true},
		{"whitespace", " \n{ \"usage\" :\t{ \"total_tokens\" : 3 } } \r\n", Usage{0, 0, 3}, "", true},
		{"truncated", `{"model":"m","usage":{"prompt_tokens":1}`, Usage{}, "", false},
		{"trailing garbage", `{"usage":{"prompt_tokens":1}} x`, Usage{}, "", false},
		{"array", `[{"usage":{"prompt_tokens":1}}]`, Usage{}, "", false},
		{"empty", ``, Usage{}, "", false},
		{"invalid utf-8 model", "{\"model\":\"a\xffb\"}", Usage{}, "a\uFFFDb", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, model, ok := FromBody([]byte(tt.body))
			if u != tt.want || model != tt.model || ok != tt.ok {
				t.Errorf("FromBody = %+v, %q, %v; want %+v, %q, %v", u, model, ok, tt.want, tt.model, tt.ok)
			}
		})
	}
}

func TestFromBodyLargeContent(t *testing.T) {
	// A large generated text full of things that look like usage.
	content := strings.Repeat(`{\"usage\":{\"prompt_tokens\":1}} [\"\\\\\"]} `, 20000)
	body := `{"model":"m","choices":[{"message":{"content":"` + content + `"}}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`
	u, model, ok := FromBody([]byte(body))
	if !ok || u != (Usage{3, 4, 7}) || model != "m" {
		t.Fatalf("FromBody = %+v, %q, %v", u, model, ok)
	}
}

func TestParseChunk(t *testing.T) {
	tests := []struct {
		name string
		data string
		want Chunk
	}{
		{"content", `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}`,
			Chunk{Model: "gpt-4o-mini"}},
		{"usage only", `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}`,
			Chunk{Usage: Usage{9, 12, 21}, HasUsage: true, UsageOnly: true, Model: "gpt-4o-mini"}},
		{"usage without choices", `{"model":"m","usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`,
			Chunk{Usage: Usage{1, 2, 3}, HasUsage: true, UsageOnly: true, Model: "m"}},
		{"usage with choices", `{"model":"m","choices":[{"delta":{}}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`,
			Chunk{Usage: Usage{1, 2, 3}, HasUsage: true, Model: "m"}},
		{"usage with empty choices and spaces", `{"choices":[ ],"usage":{"prompt_tokens":1}}`,
			Chunk{Usage: Usage{1, 0, 1}, HasUsage: true, UsageOnly: true}},
		{"done", `[DONE]`, Chunk{Done: true}},
		{"done with spaces", " [DONE]\r\n", Chunk{Done: true}},
		{"garbage", `{"choices":[`, Chunk{}},
		{"empty", ``, Chunk{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseChunk([]byte(tt.data)); got != tt.want {
				t.Errorf("ParseChunk = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseChunkDoesNotAllocate(t *testing.T) {
	data := []byte(`{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}`)
	ParseChunk(data) // learn the model name
	if n := testing.AllocsPerRun(100, func() { ParseChunk(data) }); n != 0 {
		t.Fatalf("ParseChunk allocates %.1f times", n)
	}
}

func TestInternIsBounded(t *testing.T) {
	for i := range maxIntern + 50 {
		name := fmt.Sprintf("model-%d", i)
		if got := ParseChunk([]byte(`{"model":"` + name + `"}`)).Model; got != name {
			t.Fatalf("Model = %q, want %q", got, name)
		}
	}
	if n := len(*interned.Load()); n > maxIntern {
		t.Fatalf("%d names interned, bound is %d", n, maxIntern)
	}
}

func TestAppendText(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"chat delta", `{"choices":[{"index":0,"delta":{"content":"Hel"}}]}`, "Hel"},
		{"escapes", `{"choices":[{"delta":{"content":"a\nb\"c\\d\u00e9\ud83d\ude00\/"}}]}`, "a\nb\"c\\dé😀/"},
		{"lone surrogate", `{"choices":[{"delta":{"content":"x\ud800y"}}]}`, "x\uFFFDy"},
		{"completions", `{"choices":[{"text":" world","index":0}]}`, " world"},
		{"chat message", `{"choices":[{"message":{"role":"assistant","content":"Hi there"}}]}`, "Hi there"},
		{"several choices", `{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}`, "ab"},
		{"role only", `{"choices":[{"delta":{"role":"assistant","content":""}}]}`, ""},
		{"null content", `{"choices":[{"delta":{"content":null}}]}`, ""},
		{"reasoning and refusal", `{"choices":[{"delta":{"reasoning_content":"think","refusal":"no","content":"ok"}}]}`, "oknothink"},
		{"tool calls", `{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get","arguments":"{\"a\":"}},{"function":{"arguments":"1}"}}]}}]}`, `get{"a":1}`},
		{"legacy function call", `{"choices":[{"message":{"function_call":{"name":"f","arguments":"{}"}}}]}`, "f{}"},
		{"usage chunk", `{"choices":[],"usage":{"prompt_tokens":1}}`, ""},
		{"content outside choices ignored", `{"content":"x","delta":{"content":"y"},"choices":[{"delta":{"content":"z"}}]}`, "z"},
		{"not json", `[DONE]`, ""},
		{"invalid utf-8", "{\"choices\":[{\"text\":\"a\xffb\"}]}", "a\uFFFDb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendText([]byte("prefix:"), []byte(tt.data))
			if string(got) != "prefix:"+tt.want {
				t.Errorf("AppendText = %q, want %q", got, "prefix:"+tt.want)
			}
		})
	}
}

func TestEncoding(t *testing.T) {
	for model, want := range map[string]string{
		"gpt-4o":                     "o200k_base",
		"gpt-4o-mini-2024-07-18":     "o200k_base",
		"GPT-4O":                     "o200k_base",
		"chatgpt-4o-latest":          "o200k_base",
		"gpt-4.1-nano":               "o200k_base",
		"gpt-5":                      "o200k_base",
		"gpt-5.1-codex":              "o200k_base",
		"o1":                         "o200k_base",
		"o3-mini":                    "o200k_base",
		"o4-mini-high":               "o200k_base",
		"openai/gpt-4o":              "o200k_base",
		"sluice-simulator/gpt-4.1":   "o200k_base",
		"ft:gpt-4o-mini:org::abc123": "o200k_base",
		"gpt-oss-120b":               "o200k_base",
		"gpt-4":                      "cl100k_base",
		"gpt-4-turbo":                "cl100k_base",
		"gpt-3.5-turbo":              "cl100k_base",
		"text-embedding-3-small":     "cl100k_base",
		"o100":                       "cl100k_base",
		"llama-3.1-8b":               "cl100k_base",
		"":                           "cl100k_base",
	} {
		if got := Encoding(model); got != want {
			t.Errorf("Encoding(%q) = %s, want %s", model, got, want)
		}
	}
}

func TestPromptTokens(t *testing.T) {
	var c Counter
	const m = "gpt-4"
	tok := func(s string) int64 { return int64(c.Count(m, s)) }
	hello, world := tok("hello"), tok("hello world")
	tests := []struct {
		name string
		api  sluice.API
		body string
		want int64
		err  bool
	}{
		{"chat string", sluice.APIChat, `{"messages":[{"role":"user","content":"hello"}]}`, 3 + tok("user") + hello + 3, false},
		{"chat parts", sluice.APIChat, `{"messages":[{"role":"user","content":[{"type":"text","text":"hello"},{"type":"image_url","image_url":{"url":"data:,"}},{"type":"text","text":"hello world"}]}]}`,
			3 + tok("user") + hello + 85 + world + 3, false},
		{"chat name and tool call", sluice.APIChat, `{"messages":[{"role":"assistant","name":"bob","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"get","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"hello"}]}`,
			3 + tok("assistant") + tok("bob") + 1 + tok("get") + tok("{}") + 3 + tok("tool") + tok("c") + hello + 3, false},
		{"chat nested usage ignored", sluice.APIChat, `{"metadata":{"messages":[1]},"messages":[]}`, 3, false},
		{"completions string", sluice.APICompletions, `{"prompt":"hello world","suffix":"hello"}`, world + hello, false},
		{"completions array", sluice.APICompletions, `{"prompt":["hello","hello world"]}`, hello + world, false},
		{"completions tokens", sluice.APICompletions, `{"prompt":[1,2,3]}`, 3, false},
		{"embeddings string", sluice.APIEmbeddings, `{"input":"hello world"}`, world, false},
		{"embeddings token arrays", sluice.APIEmbeddings, `{"input":[[1,2],[3,4,5]]}`, 5, false},
		{"escaped", sluice.APIEmbeddings, `{"input":"hello\u0020world"}`, world, false},
		{"no messages", sluice.APIChat, `{"prompt":"x"}`, 0, true},
		{"messages not array", sluice.APIChat, `{"messages":"x"}`, 0, true},
		{"message not object", sluice.APIChat, `{"messages":["x"]}`, 0, true},
		{"input number", sluice.APIEmbeddings, `{"input":5}`, 0, true},
		{"not json", sluice.APIEmbeddings, `{"input":`, 0, true},
		{"unknown api", sluice.API("images"), `{}`, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.PromptTokens(tt.api, m, []byte(tt.body))
			if (err != nil) != tt.err || got != tt.want {
				t.Fatalf("PromptTokens = %d, %v; want %d (error %v)", got, err, tt.want, tt.err)
			}
			if err != nil && tt.api != "images" && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
		})
	}
}

func TestCounterConcurrent(t *testing.T) {
	var c Counter
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			model := "gpt-4o"
			if i%2 == 0 {
				model = "gpt-4"
			}
			for range 20 {
				if n := c.Count(model, "tiktoken is great!"); n != 6 && n != 5 {
					t.Errorf("Count = %d", n)
				}
			}
		})
	}
	wg.Wait()
}

func TestSkipContainerFindsEveryStructuralByte(t *testing.T) {
	// Exercise the eight-bytes-at-a-time path at every alignment, with the
	// look-alike bytes it must pass over.
	for pad := range 17 {
		for _, inner := range []string{`1,2`, `"]"`, `"\\"`, `"\""`, `[]`, `{}`, `"Y_y\x7f"`, `[[{"a":[1]}]]`} {
			s := strings.Repeat(" ", pad) + "[" + strings.Repeat("1.5e-3, ", pad) + inner + "]"
			b := []byte(s + ` ,"x"`)
			if end := skipValue(b, pad); end != len(s) {
				t.Fatalf("pad %d, %q: end %d, want %d", pad, inner, end, len(s))
			}
		}
	}
	for _, s := range []string{`[`, `["]`, `{"a":[1}`, `"abc`, `"ab\"`, `[1,"\\\"]`, ``, `:`} {
		if end := skipValue([]byte(s), 0); end != -1 {
			t.Errorf("skipValue(%q) = %d, want -1", s, end)
		}
	}
}
