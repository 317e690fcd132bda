package classify

import (
	"strings"
	"testing"
)

func TestExtractText(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"chat string content",
			`{"model":"gpt-4o-2024-08-06","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi, I am jane@example.com"}]}`,
			"Be brief.\nHi, I am jane@example.com"},
		{"chat parts",
			`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"look at this"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAE"}},{"type":"text","text":"and this"}]}]}`,
			"look at this\nand this"},
		{"tool calls and results",
			`{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{\"email\":\"a@b.io\"}"}}]},{"role":"tool","tool_call_id":"call_1","content":"found"}]}`,
			"{\"email\":\"a@b.io\"}\nfound"},
		{"completions prompt", `{"model":"m","prompt":"Once upon a time","max_tokens":5}`, "Once upon a time"},
		{"completions prompt array", `{"prompt":["one","two"]}`, "one\ntwo"},
		{"embeddings input", `{"model":"text-embedding-3-small","input":["alpha","beta"],"dimensions":256}`, "alpha\nbeta"},
		{"embeddings tokens", `{"input":[[1234,5678],[9012]]}`, ""},
		{"responses input items",
			`{"model":"m","instructions":"Be kind.","input":[{"role":"user","content":[{"type":"input_text","text":"hello"}]}]}`,
			"Be kind.\nhello"},
		{"escapes decoded", `{"prompt":"jane\u0040example.com"}`, "jane@example.com"},
		{"anthropic-style system", `{"system":[{"type":"text","text":"You are terse."}],"messages":[]}`, "You are terse."},
		{"names, roles and ids skipped",
			`{"messages":[{"role":"user","name":"jane.doe","content":"hi"}],"user":"jane@example.com","metadata":{"prompt":"no"}}`,
			"hi"},
		{"duplicate keys: both scanned", `{"prompt":"first","prompt":"second"}`, "first\nsecond"},
		{"deep nesting", `{"input":[[[[[[[[[[["deep"]]]]]]]]]]]}`, "deep"},
		{"not json", `jane@example.com`, "jane@example.com"},
		{"json array", `["x"]`, `["x"]`},
		{"trailing data", `{"prompt":"a"} {"prompt":"b"}`, `{"prompt":"a"} {"prompt":"b"}`},
		{"unclosed", `{"prompt":"a"`, `{"prompt":"a"`},
		{"empty", ``, ``},
	}
	for _, tt := range tests {
		if got := string(ExtractText([]byte(tt.body))); got != tt.want {
			t.Errorf("%s: ExtractText = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestExtractTextHidesStructure: keys, model names and numbers in the
// body do not reach the detectors.
func TestExtractTextHidesStructure(t *testing.T) {
	c := mustNew(t, Config{})
	body := `{"model":"gpt-4o-2024-08-06","temperature":0.7,"seed":4111111111111111,` +
		`"metadata":{"trace":"q8ZrT2xV9bN4mK7pL1sW6dF3gH5jY0cA","client":"10.1.2.3"},` +
		`"messages":[{"role":"user","content":"What is the capital of France?"}]}`
	if r := c.Classify([]byte(body)); len(r.Findings) == 0 {
		t.Fatal("the raw body should trip detectors; the test is not testing anything")
	}
	text := ExtractText([]byte(body))
	if r := c.Classify(text); len(r.Findings) != 0 || r.Class != "public" {
		t.Fatalf("extracted text %q: %+v", text, r)
	}
	if !strings.Contains(string(text), "capital of France") {
		t.Fatalf("extracted %q", text)
	}
}
