package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/auth"
)

// TestBadInput sends requests no upstream should see. Each gets a clear
// OpenAI-shaped error with the right status, no upstream call, and exactly
// one ledger record with the right error class.
func TestBadInput(t *testing.T) {
	t.Parallel()
	const maxBody = 64 << 10
	env := newEnv(t, withMaxBodyBytes(maxBody))
	revoked, revokedID := env.newKey(t)
	env.revoke(t, revokedID)
	huge := `{"model":"chat","messages":[{"role":"user","content":"` + strings.Repeat("a", 4*maxBody) + `"}]}`
	const (
		chat  = "/v1/chat/completions"
		embed = "/v1/embeddings"
	)
	unknown, _, err := auth.Generate() // well-formed, never stored
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name      string
		path, key string
		body      string
		chunked   bool // send without Content-Length
		status    int
		code      string
		param     string // checked when not empty
		class     string
	}{
		{name: "malformed JSON", body: `{"model":"chat","messages":[`,
			status: 400, code: "invalid_json", class: sluice.ErrClassInvalidRequest},
		{name: "trailing garbage", body: `{"model":"chat","messages":[]} {}`,
			status: 400, code: "invalid_json", class: sluice.ErrClassInvalidRequest},
		{name: "not an object", body: `["chat"]`,
			status: 400, code: "invalid_json", class: sluice.ErrClassInvalidRequest},
		{name: "empty body", body: ``,
			status: 400, code: "invalid_json", class: sluice.ErrClassInvalidRequest},
		{name: "model is a number", body: `{"model":42,"messages":[]}`,
			status: 400, code: "invalid_type", param: "model", class: sluice.ErrClassInvalidRequest},
		{name: "messages is a string", body: `{"model":"chat","messages":"hi"}`,
			status: 400, code: "invalid_type", param: "messages", class: sluice.ErrClassInvalidRequest},
		{name: "stream is a string", body: `{"model":"chat","messages":[],"stream":"yes"}`,
			status: 400, code: "invalid_type", param: "stream", class: sluice.ErrClassInvalidRequest},
		{name: "max_tokens negative", body: `{"model":"chat","messages":[],"max_tokens":-1}`,
			status: 400, code: "invalid_type", param: "max_tokens", class: sluice.ErrClassInvalidRequest},
		{name: "stream_options is a string", body: `{"model":"chat","messages":[],"stream":true,"stream_options":"x"}`,
			status: 400, code: "invalid_type", param: "stream_options", class: sluice.ErrClassInvalidRequest},
		{name: "model missing", body: `{"messages":[]}`,
			status: 400, code: "missing_required_parameter", param: "model", class: sluice.ErrClassInvalidRequest},
		{name: "messages missing", body: `{"model":"chat"}`,
			status: 400, code: "missing_required_parameter", param: "messages", class: sluice.ErrClassInvalidRequest},
		{name: "model given twice", body: `{"model":"chat","model":"restricted","messages":[]}`,
			status: 400, code: "duplicate_key", param: "model", class: sluice.ErrClassInvalidRequest},
		{name: "invalid UTF-8", body: "{\"model\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}",
			status: 400, code: "invalid_encoding", class: sluice.ErrClassInvalidRequest},
		{name: "body too large", body: huge,
			status: 413, code: "request_too_large", class: sluice.ErrClassTooLarge},
		{name: "body too large, chunked", body: huge, chunked: true,
			status: 413, code: "request_too_large", class: sluice.ErrClassTooLarge},
		{name: "unknown model", body: `{"model":"gpt-5-turbo-max","messages":[{"role":"user","content":"hi"}]}`,
			status: 404, code: "model_not_found", param: "model", class: sluice.ErrClassNotFound},
		{name: "model not allowed for the key", body: `{"model":"restricted","messages":[{"role":"user","content":"hi"}]}`,
			status: 403, code: "model_not_allowed", class: sluice.ErrClassPermission},
		{name: "chat endpoint asked for embeddings", path: embed, body: `{"model":"chat","input":"hi"}`,
			status: 400, code: "unsupported_api", param: "model", class: sluice.ErrClassInvalidRequest},
		{name: "embeddings streamed", path: embed, body: `{"model":"embed","input":"hi","stream":true}`,
			status: 400, code: "unsupported_parameter", param: "stream", class: sluice.ErrClassInvalidRequest},
		{name: "missing key", key: "-", body: `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`,
			status: 401, code: "invalid_api_key", class: sluice.ErrClassAuthentication},
		{name: "revoked key", key: revoked, body: `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`,
			status: 401, code: "invalid_api_key", class: sluice.ErrClassAuthentication},
		{name: "unknown key", key: unknown, body: `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`,
			status: 401, code: "invalid_api_key", class: sluice.ErrClassAuthentication},
	}

	unauthorized := map[string]string{} // 401 bodies by case
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path, key := tc.path, tc.key
			if path == "" {
				path = chat
			}
			switch key {
			case "":
				key = env.Key
			case "-":
				key = ""
			}
			var body io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			before := env.Up.Count()
			resp, raw := env.post(t, path, key, body)

			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.status, raw)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var e struct {
				Error *struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Param   *string `json:"param"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(raw, &e); err != nil || e.Error == nil {
				t.Fatalf("the answer is not an OpenAI error (%v): %s", err, raw)
			}
			if e.Error.Message == "" || e.Error.Type == "" {
				t.Errorf("error without message or type: %s", raw)
			}
			if e.Error.Code == nil || *e.Error.Code != tc.code {
				t.Errorf("error code %v, want %q: %s", e.Error.Code, tc.code, raw)
			}
			if tc.param != "" && (e.Error.Param == nil || *e.Error.Param != tc.param) {
				t.Errorf("error param %v, want %q: %s", e.Error.Param, tc.param, raw)
			}
			if tc.status == http.StatusUnauthorized {
				unauthorized[tc.name] = string(raw)
			}
			if n := env.Up.Count() - before; n != 0 {
				t.Errorf("the upstream got %d requests", n)
			}
			rec := env.record(t, requestID(t, resp))
			checkRefused(t, rec, tc.status, tc.class)
		})
	}

	// No record lost, none doubled.
	if n := env.recordCount(t); n != int64(len(cases)) {
		t.Errorf("the ledger has %d records for %d requests", n, len(cases))
	}
	// A guesser cannot tell a revoked key from a missing or unknown one.
	var first string
	for name, body := range unauthorized {
		if first == "" {
			first = body
		} else if body != first {
			t.Errorf("401 answers differ: %s answered %s, another %s", name, body, first)
		}
	}
}
