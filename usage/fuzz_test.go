package usage

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/sluice-gateway/sluice"
)

// The reference implementations below decode with encoding/json and are
// compared with the scanner on valid JSON.

type rawMap = map[string]json.RawMessage

func first(r json.RawMessage) byte {
	r = bytes.TrimLeft(r, " \t\r\n")
	if len(r) == 0 {
		return 0
	}
	return r[0]
}

func refString(r json.RawMessage) (string, bool) {
	var s string
	if first(r) != '"' || json.Unmarshal(r, &s) != nil {
		return "", false
	}
	return s, true
}

func refUsage(r json.RawMessage) (Usage, bool) {
	var m rawMap
	if first(r) != '{' || json.Unmarshal(r, &m) != nil {
		return Usage{}, false
	}
	var u Usage
	for key, dst := range map[string]*int64{"prompt_tokens": &u.Prompt, "completion_tokens": &u.Completion, "total_tokens": &u.Total} {
		v, ok := m[key]
		if !ok {
			continue
		}
		if err := json.Unmarshal(v, dst); err != nil || *dst < 0 {
			return Usage{}, false
		}
	}
	if u.Total == 0 {
		u.Total = u.Prompt + u.Completion
	}
	return u, true
}

// refTop returns what FromBody and ParseChunk should find in a valid body.
func refTop(b []byte) (u Usage, model string, hasUsage bool, choices int, ok bool) {
	var m rawMap
	if first(b) != '{' || json.Unmarshal(b, &m) != nil {
		return Usage{}, "", false, -1, false
	}
	if r, found := m["usage"]; found {
		u, hasUsage = refUsage(r)
	}
	model, _ = refString(m["model"])
	choices = -1
	if r := m["choices"]; first(r) == '[' {
		var arr []json.RawMessage
		if json.Unmarshal(r, &arr) != nil {
			panic("valid JSON did not decode")
		}
		choices = min(len(arr), 1)
	}
	return u, model, hasUsage, choices, true
}

var fuzzSeeds = []string{
	chatResponse,
	`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-0.2,3e-5]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}`,
	`{"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}`,
	`{"choices":[{"delta":{"content":"a\nb\u00e9\ud83d\ude00","tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}},{"text":"x"}]}`,
	`{"\u0075sage":{"prompt_tokens":null},"usage":{"prompt_tokens":"1"},"model":"a\/b"}`,
	`{"usage":{"prompt_tokens":1.0,"completion_tokens":-0,"total_tokens":9223372036854775807}}`,
	`{"choices":[{"message":{"content":"x","refusal":"y","reasoning":"z"},"delta":{"function_call":{"name":"n"}}}]}`,
	`[DONE]`,
	` {"a":[[],{},"\\\"",true,false,null,{"b":[1,{"c":"]"}]}],"model":"m"} `,
}

func FuzzFromBody(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		u, model, ok := FromBody(b)
		if !json.Valid(b) {
			return // only required not to panic
		}
		wu, wmodel, whas, _, wok := refTop(b)
		if !wok {
			if ok || model != "" {
				t.Fatalf("non-object %q: FromBody = %+v, %q, %v", b, u, model, ok)
			}
			return
		}
		if u != wu || model != wmodel || ok != whas {
			t.Fatalf("%q:\nFromBody  = %+v, %q, %v\nreference = %+v, %q, %v", b, u, model, ok, wu, wmodel, whas)
		}
	})
}

func FuzzParseChunk(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := ParseChunk(b)
		text := AppendText(nil, b)
		if string(bytes.TrimSpace(b)) == "[DONE]" {
			if c != (Chunk{Done: true}) {
				t.Fatalf("ParseChunk([DONE]) = %+v", c)
			}
			return
		}
		if !json.Valid(b) {
			return
		}
		u, model, has, choices, ok := refTop(b)
		want := Chunk{}
		if ok {
			want = Chunk{Usage: u, HasUsage: has, UsageOnly: has && choices <= 0, Model: model}
		}
		if c != want {
			t.Fatalf("%q:\nParseChunk = %+v\nreference  = %+v", b, c, want)
		}
		if wt := refText(b); !bytes.Equal(text, wt) {
			t.Fatalf("%q:\nAppendText = %q\nreference  = %q", b, text, wt)
		}
	})
}

func refText(b []byte) []byte {
	var out []byte
	var top rawMap
	if first(b) != '{' || json.Unmarshal(b, &top) != nil {
		return nil
	}
	var choices []json.RawMessage
	if first(top["choices"]) != '[' || json.Unmarshal(top["choices"], &choices) != nil {
		return nil
	}
	add := func(r json.RawMessage) {
		if s, ok := refString(r); ok {
			out = append(out, s...)
		}
	}
	fn := func(r json.RawMessage) {
		var f rawMap
		if first(r) == '{' && json.Unmarshal(r, &f) == nil {
			add(f["name"])
			add(f["arguments"])
		}
	}
	for _, c := range choices {
		var ch rawMap
		if first(c) != '{' || json.Unmarshal(c, &ch) != nil {
			continue
		}
		add(ch["text"])
		msg, found := ch["delta"]
		if !found {
			msg = ch["message"]
		}
		var m rawMap
		if first(msg) != '{' || json.Unmarshal(msg, &m) != nil {
			continue
		}
		for _, k := range choiceTextKeys {
			add(m[k])
		}
		var calls []json.RawMessage
		if first(m["tool_calls"]) == '[' && json.Unmarshal(m["tool_calls"], &calls) == nil {
			for _, call := range calls {
				var cm rawMap
				if first(call) == '{' && json.Unmarshal(call, &cm) == nil {
					fn(cm["function"])
				}
			}
		}
		if r, ok := m["function_call"]; ok {
			fn(r)
		}
	}
	if out == nil {
		return nil
	}
	return out
}

// member is one member of an object, in document order.
type member struct {
	key string
	val json.RawMessage
}

// members decodes an object keeping its members in order, duplicates
// included.
func members(r json.RawMessage) ([]member, bool) {
	if first(r) != '{' {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(r))
	if _, err := dec.Token(); err != nil {
		return nil, false
	}
	var ms []member
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		ms = append(ms, member{k.(string), v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, false
	}
	return ms, true
}

// last returns the value of the last member named key.
func last(r json.RawMessage, key string) (json.RawMessage, bool) {
	ms, _ := members(r)
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].key == key {
			return ms[i].val, true
		}
	}
	return nil, false
}

func elements(r json.RawMessage) []json.RawMessage {
	var arr []json.RawMessage
	if first(r) != '[' || json.Unmarshal(r, &arr) != nil {
		return nil
	}
	return arr
}

// refPrompt mirrors the documented estimate with count standing in for the
// tokenizer; ok is false where PromptTokens must fail.
func refPrompt(api sluice.API, b []byte, count func(string) int64, funcInit int64) (int64, bool) {
	str := func(r json.RawMessage) int64 {
		if s, ok := refString(r); ok {
			return count(s)
		}
		return 0
	}
	text := func(r json.RawMessage, found bool) string {
		if !found {
			return ""
		}
		if s, ok := refString(r); ok {
			return s
		}
		if s := string(bytes.TrimSpace(r)); s != "null" {
			return s
		}
		return ""
	}
	trim := func(s string) string {
		if len(s) > 0 && s[len(s)-1] == '.' {
			return s[:len(s)-1]
		}
		return s
	}
	function := func(r json.RawMessage) int64 {
		name, _ := last(r, "name")
		args, _ := last(r, "arguments")
		return str(name) + str(args)
	}
	funcDef := func(f json.RawMessage) int64 {
		name, nok := last(f, "name")
		desc, dok := last(f, "description")
		n := funcInit + count(text(name, nok)+":"+trim(text(desc, dok)))
		params, _ := last(f, "parameters")
		props, _ := last(params, "properties")
		ps, _ := members(props)
		if len(ps) > 0 {
			n += 3
		}
		for _, p := range ps {
			n += 3
			if en, ok := last(p.val, "enum"); ok {
				n -= 3
				for _, item := range elements(en) {
					n += 3 + count(text(item, true))
				}
			}
			line := p.key + ":"
			if first(p.val) == '{' {
				typ, tok := last(p.val, "type")
				desc, dok := last(p.val, "description")
				line += text(typ, tok) + ":" + trim(text(desc, dok))
			} else {
				line += ":"
			}
			n += count(line)
		}
		return n
	}
	input := func(r json.RawMessage) (int64, bool) {
		switch first(r) {
		case '"':
			return str(r), true
		case '[':
		default:
			return 0, false
		}
		var n int64
		for _, el := range elements(r) {
			switch c := first(el); {
			case c == '"':
				n += str(el)
			case c == '[':
				for _, id := range elements(el) {
					if isNumberStart(first(id)) {
						n++
					}
				}
			case isNumberStart(c):
				n++
			}
		}
		return n, true
	}

	if _, ok := members(b); !ok {
		return 0, false
	}
	switch api {
	case sluice.APIChat:
		msgs, ok := last(b, "messages")
		if !ok || first(msgs) != '[' {
			return 0, false
		}
		var n int64
		for _, msg := range elements(msgs) {
			ms, ok := members(msg)
			if !ok {
				return 0, false
			}
			n += 3
			for _, m := range ms {
				switch c := first(m.val); {
				case m.key == "content" && c == '[':
					for _, part := range elements(m.val) {
						switch first(part) {
						case '"':
							n += str(part)
						case '{':
							ps, _ := members(part)
							for _, p := range ps {
								switch p.key {
								case "text":
									n += str(p.val)
								case "type":
									if s, _ := refString(p.val); s == "image_url" || s == "input_image" {
										n += 85
									}
								}
							}
						}
					}
				case m.key == "tool_calls" && c == '[':
					for _, call := range elements(m.val) {
						if f, ok := last(call, "function"); ok {
							n += function(f)
						}
					}
				case m.key == "function_call" && c == '{':
					n += function(m.val)
				case c == '"':
					n += str(m.val)
					if m.key == "name" {
						n++
					}
				}
			}
		}
		n += 3
		defs := 0
		var tn int64
		if tools, ok := last(b, "tools"); ok {
			for _, tool := range elements(tools) {
				if f, ok := last(tool, "function"); ok && first(f) == '{' {
					tn += funcDef(f)
					defs++
				}
			}
		}
		if fns, ok := last(b, "functions"); ok {
			for _, f := range elements(fns) {
				if first(f) == '{' {
					tn += funcDef(f)
					defs++
				}
			}
		}
		if defs > 0 {
			n += tn + 12
		}
		return n, true
	case sluice.APICompletions:
		p, ok := last(b, "prompt")
		if !ok {
			return 0, false
		}
		n, ok := input(p)
		if !ok {
			return 0, false
		}
		if s, ok := last(b, "suffix"); ok && first(s) == '"' {
			n += str(s)
		}
		return n, true
	default:
		p, ok := last(b, "input")
		if !ok {
			return 0, false
		}
		return input(p)
	}
}

func FuzzPromptTokens(f *testing.F) {
	for _, s := range []string{cookbookMessages, cookbookTools,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url"},"b"],"name":"x"},{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"{}"}}],"function_call":{"name":"g"}}]}`,
		`{"functions":[{"name":"f","parameters":{"properties":{"a":{"type":["string","null"],"enum":[1,"x"]},"b":1}}}],"messages":[]}`,
		`{"prompt":["a",[1,2],3],"suffix":"s","input":"i"}`,
		`{"input":[[1,2],[3]]}`,
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(2))
	}
	apis := []sluice.API{sluice.APIChat, sluice.APICompletions, sluice.APIEmbeddings}
	f.Fuzz(func(t *testing.T, b []byte, which uint8) {
		api := apis[int(which)%len(apis)]
		// A stand-in tokenizer that sees every byte of what is counted.
		count := func(s string) int64 {
			h := int64(1)
			for i := 0; i < len(s); i++ {
				h = h*31 + int64(s[i])
			}
			return h & 0xffff
		}
		e := estimator{b: b, count: count, funcInit: 7}
		got, err := e.prompt(api)
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
		if !json.Valid(b) {
			return
		}
		want, ok := refPrompt(api, b, count, 7)
		if ok != (err == nil) || got != want {
			t.Fatalf("%s %q:\nestimate  = %d, %v\nreference = %d, %v", api, b, got, err, want, ok)
		}
	})
}
