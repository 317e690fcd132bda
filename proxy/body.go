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
	api           sluice.API
	body          []byte
	members       []member
	model         string // the endpoint the call names
	bodyModel     string // the body's model member
	stream        bool
	includeUsage  bool // the client asked for stream usage itself
	user          string
	maxTokens     int64
	streamOptions int // index in members, or -1
	modelIdx      int

	clientRequestID string
	usageContext    string // compact JSON
	// drop lists members not sent upstream (Databricks tracking fields);
	// extra is the index of an extra_params object, whose members are sent
	// as top-level parameters, or -1.
	drop  []int
	extra int
}

// parseOptions say how a route reads bodies.
type parseOptions struct {
	// pathModel is the endpoint named by the URL path; the body's model is
	// then optional and ignored.
	pathModel string
}

// mlflowInputs are the payload members of an MLflow custom model.
var mlflowInputs = [...]string{"dataframe_split", "dataframe_records", "instances", "inputs"}

// detectAPI decides what a Databricks invocations body asks for.
func detectAPI(ms []member) (sluice.API, bool) {
	has := func(k string) bool {
		for _, m := range ms {
			if m.key == k {
				return true
			}
		}
		return false
	}
	switch {
	case has("messages"):
		return sluice.APIChat, true
	case has("prompt"):
		return sluice.APICompletions, true
	case has("input"):
		return sluice.APIEmbeddings, true
	}
	for _, k := range mlflowInputs {
		if has(k) {
			return sluice.APIInvocations, true
		}
	}
	return "", false
}

// parseRequest validates a client body for api and locates the members
// Sluice reads or rewrites. The body must be a single valid JSON object in
// valid UTF-8 with no duplicate top-level keys: a body that two parsers could
// read differently is refused rather than forwarded. An empty api is
// decided from the body (Databricks' invocations path).
func parseRequest(api sluice.API, body []byte, o parseOptions) (*request, *apierr.Error) {
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
	if api == "" {
		if api, ok = detectAPI(ms); !ok {
			return nil, apierr.BadRequest("", "missing_required_parameter",
				"The request body must contain messages (chat), prompt (completions), input (embeddings), or a custom model's dataframe_split, dataframe_records, instances or inputs.")
		}
	}
	r := &request{api: api, body: body, members: ms, streamOptions: -1, modelIdx: -1, extra: -1}
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
			r.bodyModel = r.model
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
			if api != sluice.APIInvocations && m.kind != '"' && m.kind != '[' {
				return nil, typeErr(m, "a string or an array")
			}
		case "client_request_id":
			// Databricks usage tracking: kept on the record, not sent on.
			if m.kind != '"' && m.kind != 'n' {
				return nil, typeErr(m, "a string")
			}
			if m.kind == '"' {
				r.clientRequestID = unquote(v)
				if len(r.clientRequestID) > 256 {
					return nil, apierr.BadRequest(m.key, "invalid_value", "'client_request_id' is longer than 256 bytes.")
				}
			}
			r.drop = append(r.drop, i)
		case "usage_context":
			if m.kind != '{' && m.kind != 'n' {
				return nil, typeErr(m, "an object")
			}
			if m.kind == '{' {
				if len(v) > 4096 {
					return nil, apierr.BadRequest(m.key, "invalid_value", "'usage_context' is larger than 4096 bytes.")
				}
				var buf bytes.Buffer
				json.Compact(&buf, v)
				r.usageContext = buf.String()
			}
			r.drop = append(r.drop, i)
		case "extra_params":
			// Databricks passes these to the provider as top-level
			// parameters.
			if m.kind != '{' && m.kind != 'n' {
				return nil, typeErr(m, "an object")
			}
			r.drop = append(r.drop, i)
			if m.kind == '{' {
				r.extra = i
			}
		}
	}
	if (r.modelIdx < 0 || r.model == "") && o.pathModel == "" {
		return nil, apierr.BadRequest("model", "missing_required_parameter", "You must provide a model parameter.")
	}
	if o.pathModel != "" {
		r.model = o.pathModel
	}
	required := map[sluice.API]string{sluice.APIChat: "messages", sluice.APICompletions: "prompt", sluice.APIEmbeddings: "input"}[api]
	if _, ok := seen[required]; !ok && required != "" {
		return nil, apierr.BadRequest(required, "missing_required_parameter", "Missing required parameter: '%s'.", required)
	}
	if api == sluice.APIEmbeddings && r.stream {
		return nil, apierr.BadRequest("stream", "unsupported_parameter", "Embeddings cannot be streamed.")
	}
	if api == sluice.APIInvocations && r.stream {
		return nil, apierr.BadRequest("stream", "unsupported_parameter", "Custom model payloads cannot be streamed.")
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
func (r *request) upstreamBody(model string, passthrough bool) []byte {
	if len(r.drop) > 0 || (r.modelIdx < 0 && !passthrough) {
		return r.rebuild(model, passthrough)
	}
	if passthrough {
		// An MLflow server takes the client's payload as it is.
		return r.body
	}
	type edit struct {
		start, end int
		text       []byte
	}
	var edits [2]edit
	n := 0
	if m := r.members[r.modelIdx]; r.bodyModel != model {
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

// rebuild writes the upstream body member by member: used when tracking
// fields are dropped or extra_params are lifted to the top level.
func (r *request) rebuild(model string, passthrough bool) []byte {
	out := make([]byte, 0, len(r.body)+64)
	out = append(out, '{')
	first := true
	add := func(k, v []byte) {
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(out, k...)
		out = append(out, ':')
		out = append(out, v...)
	}
	dropped := func(i int) bool {
		for _, d := range r.drop {
			if d == i {
				return true
			}
		}
		return false
	}
	present := map[string]bool{}
	q, _ := json.Marshal(model)
	if r.modelIdx < 0 && !passthrough {
		add([]byte(`"model"`), q)
		present["model"] = true
	}
	for i, m := range r.members {
		if dropped(i) {
			continue
		}
		present[m.key] = true
		k, v := r.body[m.kStart:skipString(r.body, m.kStart)], r.body[m.vStart:m.vEnd]
		switch {
		case i == r.modelIdx && !passthrough:
			v = q
		case i == r.streamOptions && r.stream && !r.includeUsage && !passthrough:
			var opts map[string]json.RawMessage
			if m.kind == '{' {
				json.Unmarshal(v, &opts)
			}
			if opts == nil {
				opts = map[string]json.RawMessage{}
			}
			opts["include_usage"] = json.RawMessage("true")
			v, _ = json.Marshal(opts)
		}
		add(k, v)
	}
	if r.stream && !r.includeUsage && r.streamOptions < 0 && !passthrough {
		add([]byte(`"stream_options"`), []byte(`{"include_usage":true}`))
	}
	if r.extra >= 0 {
		em := r.members[r.extra]
		if xs, ok := scanObject(r.body[em.vStart:em.vEnd]); ok {
			eb := r.body[em.vStart:em.vEnd]
			for _, x := range xs {
				if present[x.key] || x.key == "model" || x.key == "stream" || x.key == "stream_options" {
					continue // the top-level member wins; Sluice owns these
				}
				present[x.key] = true
				add(eb[x.kStart:skipString(eb, x.kStart)], eb[x.vStart:x.vEnd])
			}
		}
	}
	return append(out, '}')
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
