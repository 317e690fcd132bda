package aigateway

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/classify"
)

func newClassifier(tb testing.TB) *classify.Classifier {
	tb.Helper()
	c, err := classify.New(classify.Config{
		Rules:    append(classify.DefaultRules(), classify.Rule{Detector: "codename", Class: "confidential"}),
		Keywords: []classify.Keyword{{Detector: "codename", Words: []string{"bluebird"}}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func maskOf(t *testing.T, c *classify.Classifier, body string, sh shape) (string, string) {
	t.Helper()
	d := parse([]byte(body), sh)
	if d.plain {
		t.Fatalf("%s did not parse", body)
	}
	out, counts, err := d.mask(c.Classify(d.text).Findings)
	if err != nil {
		t.Fatal(err)
	}
	return string(out), counts
}

func TestMaskRequest(t *testing.T) {
	c := newClassifier(t)
	tests := []struct {
		name, body, want, counts string
	}{
		{"chat string content",
			`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"mail jo@example.com or jo@example.com, not al@example.org"}]}`,
			`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"mail [EMAIL_1] or [EMAIL_1], not [EMAIL_2]"}]}`,
			"email=3"},
		{"numbering spans messages",
			`{"model":"m","messages":[{"role":"system","content":"Card 4111 1111 1111 1111."},{"role":"user","content":"Again: 4111 1111 1111 1111 and jo@example.com"}]}`,
			`{"model":"m","messages":[{"role":"system","content":"Card [CARD_1]."},{"role":"user","content":"Again: [CARD_1] and [EMAIL_1]"}]}`,
			"card=2,email=1"},
		{"parts, names and urls",
			`{"model":"m","user":"jo@example.com","messages":[{"role":"user","name":"jo@example.com","content":[{"type":"text","text":"project Bluebird"},{"type":"image_url","image_url":{"url":"https://x.test/jo@example.com.png"}}]}]}`,
			`{"model":"m","user":"jo@example.com","messages":[{"role":"user","name":"jo@example.com","content":[{"type":"text","text":"project [CODENAME_1]"},{"type":"image_url","image_url":{"url":"https://x.test/jo@example.com.png"}}]}]}`,
			"codename=1"},
		{"tool call arguments stay JSON",
			`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"send","arguments":"{\"to\":\"jo@example.com\"}"}}]}]}`,
			`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"send","arguments":"{\"to\":\"[EMAIL_1]\"}"}}]}]}`,
			"email=1"},
		{"escaped value", `{"model":"m","prompt":"jo\u0040example.com <b>"}`, `{"model":"m","prompt":"[EMAIL_1] <b>"}`, "email=1"},
		{"untouched strings keep their escapes",
			`{"model":"m","prompt":["caf\u00e9","jo@example.com"]}`, `{"model":"m","prompt":["caf\u00e9","[EMAIL_1]"]}`, "email=1"},
		{"nothing found", `{"model":"m","input":"hello"}`, `{"model":"m","input":"hello"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, counts := maskOf(t, c, tt.body, requestShape)
			if got != tt.want || counts != tt.counts {
				t.Errorf("mask =\n  %s (%s)\nwant\n  %s (%s)", got, counts, tt.want, tt.counts)
			}
		})
	}
}

// TestRequestTextIsExtractText: guardrails scan what routing classifies.
func TestRequestTextIsExtractText(t *testing.T) {
	for _, body := range []string{
		`{"model":"m","messages":[{"role":"user","content":"a"},{"role":"assistant","content":null,"tool_calls":[{"id":"x","function":{"name":"f","arguments":"{}"}}]}]}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"u"}}]}],"stream":true}`,
		`{"model":"m","prompt":["a","b",""],"max_tokens":3}`,
		`{"model":"m","prompt":[[1,2,3]]}`,
		`{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"t"}]}],"instructions":"i"}`,
		`{"model":"m","input":"x","system":"s","metadata":{"content":"no"}}`,
		`{"model":"m","messages":[{"content":{"text":"deep"}}]}`,
	} {
		d := parse([]byte(body), requestShape)
		if want := classify.ExtractText([]byte(body)); d.plain || !bytes.Equal(d.text, want) {
			t.Errorf("%s:\n text %q (plain %v)\n want %q", body, d.text, d.plain, want)
		}
	}
	for _, body := range []string{`[1]`, `"x"`, `{"prompt":"a"} {}`, `{"prompt":`} {
		if d := parse([]byte(body), requestShape); !d.plain {
			t.Errorf("%s parsed as a request body", body)
		}
	}
}

func TestMaskResponse(t *testing.T) {
	c := newClassifier(t)
	tests := []struct {
		name, body, want string
	}{
		{"chat completion",
			`{"id":"chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012345","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Write to jo@example.com."},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}`,
			`{"id":"chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012345","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Write to [EMAIL_1]."},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}`},
		{"tool call ids survive, arguments are masked",
			`{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_Zx9QwErTyUiOpAsDfGhJkL12","type":"function","function":{"name":"pay","arguments":"{\"card\":\"4111 1111 1111 1111\"}"}}]}}]}`,
			`{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_Zx9QwErTyUiOpAsDfGhJkL12","type":"function","function":{"name":"pay","arguments":"{\"card\":\"[CARD_1]\"}"}}]}}]}`},
		{"completions text", `{"choices":[{"text":"SSN 219-45-6789","index":0}]}`, `{"choices":[{"text":"SSN [SSN_1]","index":0}]}`},
		{"custom model predictions", `{"predictions":["jo@example.com",{"answer":"call +1 415 555 0132","id":"jo@example.com"}]}`,
			`{"predictions":["[EMAIL_1]",{"answer":"call [PHONE_1]","id":"jo@example.com"}]}`},
		{"an error message", `{"error":{"message":"bad address jo@example.com","type":"invalid_request_error"}}`,
			`{"error":{"message":"bad address [EMAIL_1]","type":"invalid_request_error"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := maskOf(t, c, tt.body, responseShape)
			if got != tt.want {
				t.Errorf("mask =\n  %s\nwant\n  %s", got, tt.want)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("not JSON: %s", got)
			}
		})
	}
}

// TestMaskStream: a stream's events are read in sequence, and a value
// split across deltas is found and masked where it starts.
func TestMaskStream(t *testing.T) {
	c := newClassifier(t)
	events := `{"choices":[{"delta":{"role":"assistant","content":"Mail jo@exa"}}]}` + "\n" +
		`{"choices":[{"delta":{"content":"mple.com now"}}]}` + "\n" + `[DONE]`
	got, counts := maskOf(t, c, events, responseShape)
	want := `{"choices":[{"delta":{"role":"assistant","content":"Mail [EMAIL_1]"}}]}` + "\n" +
		`{"choices":[{"delta":{"content":" now"}}]}` + "\n" + `[DONE]`
	if got != want || counts != "email=1" {
		t.Errorf("got\n%s (%s)\nwant\n%s", got, counts, want)
	}
}

func TestMaskPlainText(t *testing.T) {
	c := newClassifier(t)
	body := []byte("upstream said: no such user jo@example.com")
	if got := string(maskText(c, body, responseShape)); got != "upstream said: no such user [EMAIL_1]" {
		t.Errorf("got %q", got)
	}
	if got := maskText(c, nil, requestShape); len(got) != 0 {
		t.Errorf("empty body masked to %q", got)
	}
}

func FuzzMask(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"jo@example.com 4111 1111 1111 1111"}]}`,
		`{"prompt":["a@b.co","+1 415 555 0132"],"stream":false}`,
		`{"choices":[{"message":{"content":"DE89 3704 0044 0532 0130 00"}}]}`,
		`{"choices":[{"delta":{"content":"10.1.2"}}]}{"choices":[{"delta":{"content":".3 x"}}]}` + "\n[DONE]",
		`{"predictions":[{"a":"bluebird\u0000\ud800 x@y.io"}]}`, `{"prompt":"a"} x`, `{}`, `[]`, `{"prompt":`, `plain x@y.io`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	c := newClassifier(f)
	f.Fuzz(func(t *testing.T, body []byte, response bool) {
		sh := requestShape
		if response {
			sh = responseShape
		}
		d := parse(body, sh)
		res := c.Classify(d.text)
		out, _, err := d.mask(res.Findings)
		if err != nil {
			t.Fatalf("mask(%q): %v", body, err)
		}
		if len(res.Findings) == 0 && !bytes.Equal(out, body) {
			t.Fatalf("nothing to mask, but the body changed: %q -> %q", body, out)
		}
		if d.plain {
			return
		}
		if sh == requestShape && !json.Valid(out) {
			t.Fatalf("masked body is not JSON: %q -> %q", body, out)
		}
		// What is masked is masked: scanning the result finds none of the
		// values found before (a placeholder is never a finding).
		again := parse(out, sh)
		if again.plain {
			t.Fatalf("masked body no longer parses: %q -> %q", body, out)
		}
		for _, f := range res.Findings {
			v := string(d.text[f.Start:f.End])
			if len(v) > 4 && !strings.Contains(string(d.text[:f.Start])+string(d.text[f.End:]), v) && bytes.Contains(again.text, []byte(v)) {
				t.Fatalf("value %q still in %q", v, again.text)
			}
		}
	})
}
