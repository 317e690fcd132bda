package simulator

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzParseRequest checks the request scanner against encoding/json.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		chatBody,
		`{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":10,"messages":[]}`,
		`{"model":"a\u00e9","prompt":[1,2],"max_completion_tokens":null,"dimensions":4,"encoding_format":"float","input":"x"}`,
		`{"model":"a","model":7}`, `[]`, `{"stream_options":{"include_usage":"yes"}}`, `{"max_tokens":1e3}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := parseRequest(body)
		var m map[string]json.RawMessage
		if json.Unmarshal(body, &m) != nil || m == nil {
			if err == nil {
				t.Fatalf("%q: accepted, encoding/json refuses it", body)
			}
			return
		}
		// Every field must decode as encoding/json decodes it, or fail.
		var want struct {
			Model, EncodingFormat string
			Stream                bool
			MaxTokens, MaxComp    *int
			Dimensions            *int
		}
		fields := map[string]any{
			"model": &want.Model, "encoding_format": &want.EncodingFormat, "stream": &want.Stream,
			"max_tokens": &want.MaxTokens, "max_completion_tokens": &want.MaxComp, "dimensions": &want.Dimensions,
		}
		wantErr := false
		for k, dst := range fields {
			if raw, ok := m[k]; ok && json.Unmarshal(raw, dst) != nil {
				wantErr = true
			}
		}
		include := false
		if so, ok := m["stream_options"]; ok {
			var inner map[string]json.RawMessage
			if json.Unmarshal(so, &inner) != nil {
				wantErr = true
			} else if raw, ok := inner["include_usage"]; ok && json.Unmarshal(raw, &include) != nil {
				wantErr = true
			}
		}
		if wantErr {
			if err == nil {
				t.Fatalf("%q: accepted a field encoding/json refuses", body)
			}
			return
		}
		if err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		if got.Model != want.Model || got.EncodingFormat != want.EncodingFormat || got.Stream != want.Stream ||
			got.IncludeUsage != include || !equalInt(got.MaxTokens, want.MaxTokens) ||
			!equalInt(got.MaxCompletionTokens, want.MaxComp) || !equalInt(got.Dimensions, want.Dimensions) {
			t.Fatalf("%q:\ngot  %+v\nwant %+v", body, got, want)
		}
		for k, raw := range map[string][]byte{"messages": got.Messages, "prompt": got.Prompt, "input": got.Input} {
			if !bytes.Equal(raw, m[k]) {
				t.Fatalf("%q: %s = %q, want %q", body, k, raw, m[k])
			}
		}
	})
}
