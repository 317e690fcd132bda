package route

import (
	"bytes"
	"encoding/json"
	"errors"
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

func mask(t *testing.T, c *classify.Classifier, body string) (string, string) {
	t.Helper()
	text := classify.ExtractText([]byte(body))
	res := c.Classify(text)
	out, counts, err := maskBody([]byte(body), text, res.Findings)
	if err != nil {
		t.Fatalf("maskBody(%s): %v", body, err)
	}
	if !json.Valid(out) {
		t.Fatalf("masked body is not JSON: %s", out)
	}
	return string(out), counts
}

func TestMaskBody(t *testing.T) {
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
			got, counts := mask(t, c, tt.body)
			if got != tt.want || counts != tt.counts {
				t.Errorf("maskBody =\n  %s (%s)\nwant\n  %s (%s)", got, counts, tt.want, tt.counts)
			}
		})
	}
}

// TestMaskFindingAcrossStrings: a finding that spans the line break
// between two strings is replaced in the first and removed from the second.
func TestMaskFindingAcrossStrings(t *testing.T) {
	body := []byte(`{"prompt":["abc secret-start","secret-end xyz"]}`)
	text := classify.ExtractText(body) // "abc secret-start\nsecret-end xyz"
	start := bytes.Index(text, []byte("secret-start"))
	end := bytes.Index(text, []byte("secret-end")) + len("secret-end")
	out, counts, err := maskBody(body, text, []classify.Finding{{Detector: "secret", Start: start, End: end}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"prompt":["abc [SECRET_1]"," xyz"]}`; string(out) != want || counts != "secret=1" {
		t.Errorf("got %s (%s), want %s", out, counts, want)
	}
}

func TestMaskRefusesForeignText(t *testing.T) {
	body := []byte(`{"prompt":"jo@example.com"}`)
	for _, text := range []string{"jo@example.co", "jo@example.com\nmore", "x"} {
		_, _, err := maskBody(body, []byte(text), []classify.Finding{{Detector: "email", Start: 0, End: 1}})
		if !errors.Is(err, errTextMismatch) {
			t.Errorf("text %q: err = %v, want errTextMismatch", text, err)
		}
	}
	if _, _, err := maskBody([]byte(`["jo@example.com"]`), []byte(`["jo@example.com"]`), nil); err == nil {
		t.Error("a body that is not an object was masked")
	}
}

func FuzzMaskBody(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"jo@example.com 4111 1111 1111 1111"}]}`,
		`{"prompt":["a@b.co","+1 415 555 0132"],"stream":false}`,
		`{"input":[{"role":"user","content":[{"type":"input_text","text":"DE89 3704 0044 0532 0130 00"}]}]}`,
		`{"messages":[{"tool_calls":[{"function":{"arguments":"{\"ip\":\"10.1.2.3\"}"}}]}]}`,
		`{"prompt":"bluebird\u0000\ud800 x@y.io"}`, `{"prompt":"a"} x`, `{}`, `[]`, `{"prompt":`,
	} {
		f.Add([]byte(s))
	}
	c := newClassifier(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		text := classify.ExtractText(body)
		res := c.Classify(text)
		out, _, err := maskBody(body, text, res.Findings)
		isObject := json.Valid(body) && bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("{"))
		if !isObject {
			if err == nil {
				t.Fatalf("masked a body that is not a JSON object: %q", body)
			}
			return
		}
		if err != nil {
			t.Fatalf("maskBody(%q): %v", body, err)
		}
		if !json.Valid(out) {
			t.Fatalf("masked body is not JSON: %q -> %q", body, out)
		}
		// Members outside the text are byte-identical, model and stream
		// among them.
		var before, after map[string]json.RawMessage
		if json.Unmarshal(body, &before) != nil || json.Unmarshal(out, &after) != nil {
			return // duplicate keys or invalid UTF-8 make the maps unreliable
		}
		for k, v := range before {
			if !extractTop[k] && !bytes.Equal(after[k], v) {
				t.Fatalf("member %q changed: %s -> %s", k, v, after[k])
			}
		}
		if len(res.Findings) == 0 && !bytes.Equal(out, body) {
			t.Fatalf("nothing to mask, but the body changed: %q -> %q", body, out)
		}
		if len(res.Findings) > 0 && !strings.Contains(string(classify.ExtractText(out)), "_1]") {
			t.Fatalf("findings %v, but no placeholder in %q", res.Findings, out)
		}
	})
}
