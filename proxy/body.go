package proxy

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
)

// member is one top-level member of a JSON object: the offsets of its key
// (including quotes) and of its value in the body.
type member struct {
	key            string
	kStart, vStart int
	vEnd           int
	kind           byte // first byte of the value: '"', '{', '[', 't', 'f', 'n', or '0' for numbers
}

// request is what Sluice needs to know of a client's body. Only the
// top-level members are located; the rest is forwarded untouched.
type request struct {
	body          []byte
	members       []member
	model         string
	stream        bool
	includeUsage  bool // the client asked for stream usage itself
	user          string
	maxTokens     int64
	streamOptions int // index in members, or -1
	modelIdx      int
}

// parseRequest validates a client body for api and locates the members
// Sluice reads or rewrites. The body must be a single valid JSON object in
// valid UTF-8 with no duplicate top-level keys: a body that two parsers could
// read differently is refused rather than forwarded.
func parseRequest(api sluice.API, body []byte) (*request, *apierr.Error) {
	if !utf8.Valid(body) {
		return nil, apierr.BadRequest("", "invalid_encoding", "The request body is not valid UTF-8.")
	}
	if !json.Valid(body) {
		return nil, apierr.BadRequest("", "invalid_json", "We could not parse the JSON body of your request. Make sure it is a valid JSON object.")
	}
	ms, ok := scanObject(body)
	if !ok {
		return nil, apierr.BadRequest("", "invalid_json", "The request body must be a JSON object.")
	}
	r := &request{body: body, members: ms, streamOptions: -1, modelIdx: -1}
	seen := make(map[string]struct{}, len(ms))
	for i, m := range ms {
		if _, dup := seen[m.key]; dup {
			return nil, apierr.BadRequest(m.key, "duplicate_key", "The request body has more than one '%s' member.", m.key)
		}
		seen[m.key] = struct{}{}
		v := body[m.vStart:m.vEnd]
		switch m.key {
		case "model":
			if m.kind != '"' {
				return nil, typeErr(m, "a string")
			}
			r.model = unquote(v)
			r.modelIdx = i
		case "stream":
			switch m.kind {
			case 't':
				r.stream = true
			case 'f', 'n':
			default:
				return nil, typeErr(m, "a boolean")
			}
		case "stream_options":
			if m.kind != '{' && m.kind != 'n' {
				return nil, typeErr(m, "an object")
			}
			if m.kind == '{' {
				var so struct {
					IncludeUsage *bool `json:"include_usage"`
				}
				if err := json.Unmarshal(v, &so); err != nil {
					return nil, apierr.BadRequest("stream_options.include_usage", "invalid_type", "Invalid type for 'stream_options.include_usage': expected a boolean.")
				}
				r.includeUsage = so.IncludeUsage != nil && *so.IncludeUsage
			}
			r.streamOptions = i
		case "user":
			if m.kind != '"' && m.kind != 'n' {
				return nil, typeErr(m, "a string")
			}
			if m.kind == '"' {
				r.user = unquote(v)
			}
		case "max_tokens", "max_completion_tokens", "n":
			if m.kind == 'n' {
				continue
			}
			n, err := strconv.ParseInt(string(v), 10, 64)
			if m.kind != '0' || err != nil || n < 0 {
				return nil, typeErr(m, "a non-negative integer")
			}
			if m.key != "n" {
				r.maxTokens = n
			}
		case "messages":
			if api == sluice.APIChat && m.kind != '[' {
				return nil, typeErr(m, "an array")
			}
		case "prompt", "input":
			if m.kind != '"' && m.kind != '[' {
				return nil, typeErr(m, "a string or an array")
			}
		}
	}
	if r.modelIdx < 0 || r.model == "" {
		return nil, apierr.BadRequest("model", "missing_required_parameter", "You must provide a model parameter.")
	}
	required := map[sluice.API]string{sluice.APIChat: "messages", sluice.APICompletions: "prompt", sluice.APIEmbeddings: "input"}[api]
	if _, ok := seen[required]; !ok {
		return nil, apierr.BadRequest(required, "missing_required_parameter", "Missing required parameter: '%s'.", required)
	}
	if api == sluice.APIEmbeddings && r.stream {
		return nil, apierr.BadRequest("stream", "unsupported_parameter", "Embeddings cannot be streamed.")
	}
	return r, nil
}

func typeErr(m member, want string) *apierr.Error {
	return apierr.BadRequest(m.key, "invalid_type", "Invalid type for '%s': expected %s.", m.key, want)
}

// unquote decodes a JSON string value; the body was validated already.
func unquote(v []byte) string {
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1])
	}
	var s string
	json.Unmarshal(v, &s)
	return s
}

// upstreamBody returns the body to send upstream: the model renamed to the
// upstream's, and, for streams, stream_options.include_usage forced on so
// that every stream reports its usage.
func (r *request) upstreamBody(model string) []byte {
	type edit struct {
		start, end int
		text       []byte
	}
	var edits [2]edit
	n := 0
	m := r.members[r.modelIdx]
	if r.model != model {
		q, _ := json.Marshal(model)
		edits[n] = edit{m.vStart, m.vEnd, q}
		n++
	}
	if r.stream && !r.includeUsage {
		if r.streamOptions >= 0 {
			so := r.members[r.streamOptions]
			var opts map[string]json.RawMessage
			if so.kind == '{' {
				json.Unmarshal(r.body[so.vStart:so.vEnd], &opts)
			}
			if opts == nil {
				opts = map[string]json.RawMessage{}
			}
			opts["include_usage"] = json.RawMessage("true")
			b, _ := json.Marshal(opts)
			edits[n] = edit{so.vStart, so.vEnd, b}
		} else {
			// Insert a new member right after the opening brace.
			open := bytes.IndexByte(r.body, '{')
			edits[n] = edit{open + 1, open + 1, []byte(`"stream_options":{"include_usage":true},`)}
		}
		n++
	}
	if n == 0 {
		return r.body
	}
	if n == 2 && edits[1].start < edits[0].start {
		edits[0], edits[1] = edits[1], edits[0]
	}
	size := len(r.body)
	for _, e := range edits[:n] {
		size += len(e.text) - (e.end - e.start)
	}
	out := make([]byte, 0, size)
	prev := 0
	for _, e := range edits[:n] {
		out = append(out, r.body[prev:e.start]...)
		out = append(out, e.text...)
		prev = e.end
	}
	return append(out, r.body[prev:]...)
}

// scanObject locates the top-level members of a JSON object. The input must
// already be valid JSON; it reports false if it is not an object.
func scanObject(b []byte) ([]member, bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	ms := make([]member, 0, 8)
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return ms, true
	}
	for i < len(b) {
		ks := i
		ke := skipString(b, i)
		key := unquote(b[ks:ke])
		i = skipWS(b, ke)
		i = skipWS(b, i+1) // ':'
		vs := i
		ve := skipValue(b, i)
		kind := b[vs]
		if kind == '-' || (kind >= '0' && kind <= '9') {
			kind = '0'
		}
		ms = append(ms, member{key: key, kStart: ks, vStart: vs, vEnd: ve, kind: kind})
		i = skipWS(b, ve)
		if i >= len(b) || b[i] == '}' {
			break
		}
		i = skipWS(b, i+1) // ','
	}
	return ms, true
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i].
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index just past the value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	default:
		for ; i < len(b); i++ {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
		}
		return len(b)
	}
}
