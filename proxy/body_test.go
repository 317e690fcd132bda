package proxy

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice"
)

func TestParseRequestErrors(t *testing.T) {
	cases := []struct {
		name, body string
		api        sluice.API
		code       string
		param      string
	}{
		{"malformed", `{"model":"m","messages":[`, sluice.APIChat, "invalid_json", ""},
		{"not object", `["model"]`, sluice.APIChat, "invalid_json", ""},
		{"empty", ``, sluice.APIChat, "invalid_json", ""},
		{"trailing garbage", `{"model":"m","messages":[]} x`, sluice.APIChat, "invalid_json", ""},
		{"invalid utf8", "{\"model\":\"m\xff\",\"messages\":[]}", sluice.APIChat, "invalid_encoding", ""},
		{"model number", `{"model":1,"messages":[]}`, sluice.APIChat, "invalid_type", "model"},
		{"model missing", `{"messages":[]}`, sluice.APIChat, "missing_required_parameter", "model"},
		{"model empty", `{"model":"","messages":[]}`, sluice.APIChat, "missing_required_parameter", "model"},
		{"messages string", `{"model":"m","messages":"hi"}`, sluice.APIChat, "invalid_type", "messages"},
		{"messages missing", `{"model":"m"}`, sluice.APIChat, "missing_required_parameter", "messages"},
		{"stream string", `{"model":"m","messages":[],"stream":"yes"}`, sluice.APIChat, "invalid_type", "stream"},
		{"stream_options array", `{"model":"m","messages":[],"stream_options":[]}`, sluice.APIChat, "invalid_type", "stream_options"},
		{"include_usage string", `{"model":"m","messages":[],"stream_options":{"include_usage":"y"}}`, sluice.APIChat, "invalid_type", "stream_options.include_usage"},
		{"max_tokens float", `{"model":"m","messages":[],"max_tokens":1.5}`, sluice.APIChat, "invalid_type", "max_tokens"},
		{"max_tokens negative", `{"model":"m","messages":[],"max_tokens":-1}`, sluice.APIChat, "invalid_type", "max_tokens"},
		{"duplicate model", `{"model":"a","messages":[],"model":"b"}`, sluice.APIChat, "duplicate_key", "model"},
		{"duplicate escaped", `{"model":"a","messages":[],"mod\u0065l":"b"}`, sluice.APIChat, "duplicate_key", "model"},
		{"prompt object", `{"model":"m","prompt":{}}`, sluice.APICompletions, "invalid_type", "prompt"},
		{"input missing", `{"model":"m"}`, sluice.APIEmbeddings, "missing_required_parameter", "input"},
		{"embeddings stream", `{"model":"m","input":"x","stream":true}`, sluice.APIEmbeddings, "unsupported_parameter", "stream"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, e := parseRequest(c.api, []byte(c.body), parseOptions{})
			if e == nil {
				t.Fatal("accepted")
			}
			if e.Status != 400 || e.Code != c.code || e.Param != c.param {
				t.Fatalf("got %d %q param %q (%s)", e.Status, e.Code, e.Param, e.Msg)
			}
		})
	}
}

func TestUpstreamBody(t *testing.T) {
	cases := []struct {
		name, in, model string
		want            map[string]any
		includeUsage    bool
	}{
		{"rename", `{"model":"ep","messages":[{"role":"user","content":"hi"}]}`, "gpt-4o",
			map[string]any{"model": "gpt-4o"}, false},
		{"same name untouched", `{"model":"m","messages":[]}`, "m", map[string]any{"model": "m"}, false},
		{"stream adds usage", `{"model":"ep","stream":true,"messages":[]}`, "up",
			map[string]any{"model": "up", "stream_options": map[string]any{"include_usage": true}}, false},
		{"stream keeps other options", ` { "messages":[], "stream_options" : {"x":1,"include_usage":false}, "stream":true, "model":"ep"}`, "up",
			map[string]any{"model": "up", "stream_options": map[string]any{"include_usage": true, "x": float64(1)}}, false},
		{"client asked usage", `{"model":"ep","stream":true,"stream_options":{"include_usage":true},"messages":[]}`, "ep",
			map[string]any{"stream_options": map[string]any{"include_usage": true}}, true},
		{"null options", `{"model":"ep","stream":true,"stream_options":null,"messages":[]}`, "ep",
			map[string]any{"stream_options": map[string]any{"include_usage": true}}, false},
		{"escaped model", `{"model":"e\"p","messages":[]}`, "a\"b", map[string]any{"model": `a"b`}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, e := parseRequest(sluice.APIChat, []byte(c.in), parseOptions{})
			if e != nil {
				t.Fatal(e)
			}
			if r.includeUsage != c.includeUsage {
				t.Fatalf("includeUsage = %v", r.includeUsage)
			}
			out := r.upstreamBody(c.model, false)
			var got map[string]any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("rewritten body is not JSON: %s", out)
			}
			for k, v := range c.want {
				if g, _ := json.Marshal(got[k]); !bytes.Equal(g, mustJSON(v)) {
					t.Errorf("%s = %s, want %s (body %s)", k, g, mustJSON(v), out)
				}
			}
			var orig map[string]any
			json.Unmarshal([]byte(c.in), &orig)
			for k, v := range orig {
				if _, rewritten := c.want[k]; rewritten || k == "model" || k == "stream_options" {
					continue
				}
				if g, _ := json.Marshal(got[k]); !bytes.Equal(g, mustJSON(v)) {
					t.Errorf("member %s changed: %s", k, g)
				}
			}
		})
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// FuzzParseRequest checks that any accepted body is rewritten into valid
// JSON that agrees with encoding/json on every member Sluice reads.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","stream":true,"messages":[],"stream_options":{"include_usage":false}}`,
		`{"model":"m\u00e9","prompt":["a","b"],"max_tokens":5,"user":"u"}`,
		`{"model":"m","input":"x"}`, `{}`, `[]`, `{"a":{"b":[1,2,{"c":"}"}]},"model":"q","messages":[]}`,
		`{"messages":[],"client_request_id":"c1","usage_context":{"team":"a"},"extra_params":{"top_k":3,"messages":1}}`,
		`{"dataframe_split":{"columns":["a"],"data":[[1]]},"client_request_id":"x"}`,
		`{"extra_params":{},"stream":true,"prompt":"p"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pathRewrite(t, s)
		for _, api := range []sluice.API{sluice.APIChat, sluice.APICompletions, sluice.APIEmbeddings} {
			r, e := parseRequest(api, []byte(s), parseOptions{})
			if e != nil {
				if e.Status != 400 {
					t.Fatalf("status %d", e.Status)
				}
				continue
			}
			var ref map[string]json.RawMessage
			if err := json.Unmarshal([]byte(s), &ref); err != nil {
				t.Fatalf("accepted what encoding/json rejects: %v", err)
			}
			var model string
			if err := json.Unmarshal(ref["model"], &model); err != nil || model != r.model {
				t.Fatalf("model %q, encoding/json says %q (%v)", r.model, model, err)
			}
			out := r.upstreamBody("upstream-"+r.model, false)
			var got map[string]json.RawMessage
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("rewrite broke JSON: %v\n%s", err, out)
			}
			for k := range ref {
				if _, ok := got[k]; !ok && !tracking[k] {
					t.Fatalf("rewrite lost %q: %s", k, out)
				}
			}
			json.Unmarshal(got["model"], &model)
			if model != "upstream-"+r.model {
				t.Fatalf("model not rewritten: %s", out)
			}
			if r.stream && !strings.Contains(string(got["stream_options"]), `"include_usage":true`) {
				t.Fatalf("stream without include_usage: %s", out)
			}
		}
	})
}

var tracking = map[string]bool{"client_request_id": true, "usage_context": true, "extra_params": true}

// pathRewrite checks a body sent to /serving-endpoints/{name}/invocations:
// the API is decided from the body, the model set from the path, the
// tracking fields dropped and extra_params lifted to the top level.
func pathRewrite(t *testing.T, s string) {
	for _, pass := range []bool{false, true} {
		r, e := parseRequest("", []byte(s), parseOptions{pathModel: "ep"})
		if e != nil {
			if e.Status != 400 {
				t.Fatalf("status %d", e.Status)
			}
			return
		}
		if r.model != "ep" {
			t.Fatalf("model %q", r.model)
		}
		out := r.upstreamBody("up", pass)
		var got, ref map[string]json.RawMessage
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("rewrite broke JSON: %v\n%s", err, out)
		}
		json.Unmarshal([]byte(s), &ref)
		for k := range tracking {
			if _, ok := got[k]; ok {
				t.Fatalf("tracking member %q sent upstream: %s", k, out)
			}
		}
		for k, v := range ref {
			if tracking[k] || k == "model" || k == "stream_options" {
				continue
			}
			if string(got[k]) != string(v) {
				t.Fatalf("member %q changed: %s", k, out)
			}
		}
		var extra map[string]json.RawMessage
		if json.Unmarshal(ref["extra_params"], &extra) == nil {
			for k, v := range extra {
				if _, top := ref[k]; !top && k != "model" && string(got[k]) != string(v) {
					t.Fatalf("extra param %q not lifted: %s", k, out)
				}
			}
		}
		var model string
		json.Unmarshal(got["model"], &model)
		if !pass && model != "up" {
			t.Fatalf("model not set: %s", out)
		}
		if pass && string(got["model"]) != string(ref["model"]) {
			t.Fatalf("passthrough changed the model: %s", out)
		}
	}
}
