// Package simulator is an OpenAI-compatible model server that stands in for
// a real upstream in tests and benchmarks. It is not a model: it writes
// words chosen deterministically from the request, at a configurable pace,
// and reports exact usage.
//
// Every piece it writes is exactly one token in both cl100k_base and
// o200k_base, so completion_tokens is the number of pieces sent, and the
// tokenizer agrees when it counts the text; prompt_tokens is the
// usage.Counter estimate of the request. The response's model is the
// request's prefixed with "sluice-simulator/", so a simulated answer cannot
// be mistaken for a real one.
//
// Serve it over HTTP with New (or ListenAndServe), or in-process, without a
// socket, with Transport:
//
//	client := &http.Client{Transport: simulator.Transport(simulator.New(simulator.Options{}))}
package simulator

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/usage"
)

// Options configure a simulator. The zero value answers at once with 16
// tokens and reports usage.
type Options struct {
	// TTFT is the delay before the first token.
	TTFT time.Duration
	// TokensPerSecond paces the tokens after the first; 0 sends them as
	// fast as possible.
	TokensPerSecond float64
	// OutputTokens is the length of every answer, capped by the request's
	// max_tokens (or max_completion_tokens). Zero means 16.
	OutputTokens int
	// EmbeddingDims is the length of embedding vectors when the request
	// does not give "dimensions". Zero means 8.
	EmbeddingDims int
	// OmitUsage makes the simulator never report usage, like an upstream
	// that ignores stream_options; it exercises estimation.
	OmitUsage bool
	// ResetAfterTokens, when positive, aborts the connection after that
	// many tokens of an answer (streamed or not) that would have been
	// longer, as an upstream that fails mid-answer.
	ResetAfterTokens int
	// Models are the ids listed by GET /v1/models. Nil means DefaultModels.
	// GET /v1/models/{id} answers for any id.
	Models []string
	// Now is the clock for "created" and for pacing. Nil means time.Now.
	Now func() time.Time
	// Sleep waits for d or until ctx ends, returning ctx's error then.
	// Nil means a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// DefaultModels are the ids GET /v1/models lists when Options.Models is
// nil.
var DefaultModels = []string{"gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo-instruct", "text-embedding-3-small"}

// ModelPrefix starts the model name of every simulated response.
const ModelPrefix = "sluice-simulator/"

// Owner is the owned_by of the simulator's models.
const Owner = "sluice-simulator"

const (
	defaultOutputTokens  = 16
	defaultEmbeddingDims = 8
	maxEmbeddingDims     = 1 << 16
	maxBodyBytes         = 32 << 20
)

// API names as the usage object is shaped for them.
const (
	apiChat        = "chat"
	apiCompletions = "completions"
	apiEmbeddings  = "embeddings"
)

type server struct {
	opts     Options
	interval time.Duration // between tokens; 0 when not paced
	counter  usage.Counter
	idPrefix string // random per server, so ids are unique across runs
	seq      atomic.Uint64
	// chat and completions are the generating handlers, built once.
	chat, completions http.HandlerFunc
}

// New returns the simulator's handler. It serves POST /v1/chat/completions,
// POST /v1/completions and POST /v1/embeddings (streamed or not), GET
// /v1/models and GET /v1/models/{id}, and the same paths without the /v1
// prefix.
func New(opts Options) http.Handler {
	if opts.OutputTokens <= 0 {
		opts.OutputTokens = defaultOutputTokens
	}
	if opts.EmbeddingDims <= 0 {
		opts.EmbeddingDims = defaultEmbeddingDims
	}
	opts.EmbeddingDims = min(opts.EmbeddingDims, maxEmbeddingDims)
	if opts.Models == nil {
		opts.Models = DefaultModels
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	s := &server{opts: opts}
	if opts.TokensPerSecond > 0 {
		s.interval = time.Duration(float64(time.Second) / opts.TokensPerSecond)
	}
	var r [6]byte
	rand.Read(r[:])
	s.idPrefix = hex.EncodeToString(r[:])
	s.chat, s.completions = s.generate(apiChat), s.generate(apiCompletions)
	return s
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "invalid_request_error", "", "method_not_allowed",
		"Method "+r.Method+" is not allowed for "+r.URL.Path+"; use "+allow+".")
}

// ServeHTTP routes by hand: a switch on the path costs a fraction of
// ServeMux's matching.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if rest, ok := strings.CutPrefix(path, "/v1/"); ok {
		path = rest
	} else {
		path = strings.TrimPrefix(path, "/")
	}
	var h http.HandlerFunc
	method := http.MethodPost
	switch path {
	case "chat/completions":
		h = s.chat
	case "completions":
		h = s.completions
	case "embeddings":
		h = s.embeddings
	case "models":
		h, method = s.models, http.MethodGet
	default:
		if id, ok := strings.CutPrefix(path, "models/"); ok && id != "" {
			h, method = func(w http.ResponseWriter, r *http.Request) { s.model(w, id) }, http.MethodGet
			break
		}
		writeError(w, http.StatusNotFound, "invalid_request_error", "", "unknown_url",
			"Unknown request URL: "+r.Method+" "+r.URL.Path+". (This is the Sluice simulator.)")
		return
	}
	if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
		methodNotAllowed(w, r, method)
		return
	}
	h(w, r)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// buffers are reused for request bodies and streamed chunks, and outs
// for whole responses.
var (
	buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	outs    = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}
)

// putBuffer returns a buffer to the pool unless it grew large.
func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= 1<<20 {
		buffers.Put(b)
	}
}

// putOut returns a response buffer to the pool unless it grew large.
func putOut(out *[]byte, b []byte) {
	if cap(b) <= 1<<20 {
		*out = b[:0]
		outs.Put(out)
	}
}

// Chunk choices that do not depend on the request.
var (
	roleDelta  = []byte(`{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]`)
	chatFinish = map[string][]byte{"stop": []byte(`{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]`), "length": []byte(`{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}]`)}
	textFinish = map[string][]byte{"stop": []byte(`{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}]`), "length": []byte(`{"text":"","index":0,"logprobs":null,"finish_reason":"length"}]`)}
)

// apiError is a failure reported to the client in OpenAI's error shape.
type apiError struct {
	status           int
	typ, param, code string
	message          string
}

func (e *apiError) Error() string { return e.message }

func invalid(param, message string) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", param: param, message: message}
}

// read reads and decodes the request body; body is the raw body, valid
// until buf is returned to the pool.
func (s *server) read(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer) (req request, body []byte, err error) {
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxBodyBytes)); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return req, nil, &apiError{status: http.StatusRequestEntityTooLarge, typ: "invalid_request_error",
				message: "The request body is larger than the simulator accepts."}
		}
		return req, nil, &apiError{status: http.StatusBadRequest, typ: "invalid_request_error",
			message: "The request body could not be read: " + err.Error()}
	}
	body = buf.Bytes()
	if req, err = parseRequest(body); err != nil {
		return req, nil, err
	}
	if req.Model == "" {
		return req, nil, invalid("model", "you must provide a model parameter")
	}
	return req, body, nil
}

// generate handles chat and completions requests.
func (s *server) generate(api string) http.HandlerFunc {
	sapi, idKind, object, chunkObject := sluice.APIChat, "chatcmpl-", "chat.completion", "chat.completion.chunk"
	if api == apiCompletions {
		sapi, idKind, object, chunkObject = sluice.APICompletions, "cmpl-", "text_completion", "text_completion"
	}
	return func(w http.ResponseWriter, r *http.Request) {
		start := s.opts.Now()
		buf := buffers.Get().(*bytes.Buffer)
		buf.Reset()
		defer putBuffer(buf)
		req, body, err := s.read(w, r, buf)
		if err == nil {
			err = s.check(api, &req)
		}
		var prompt int64
		if err == nil {
			prompt, err = s.counter.PromptTokens(sapi, req.Model, body)
			if err != nil {
				err = invalid("", err.Error())
			}
		}
		if err != nil {
			writeAPIError(w, err)
			return
		}
		n, finish := s.opts.OutputTokens, "stop"
		if m := req.maxTokens(); m != nil && *m < n {
			n, finish = *m, "length"
		}
		promptRaw := req.Messages
		if api == apiCompletions {
			promptRaw = req.Prompt
		}
		g := &generation{
			s: s, w: w, ctx: r.Context(), start: start, api: api,
			rng: seed(req.Model, promptRaw), n: n, finish: finish, prompt: prompt,
			includeUsage: req.IncludeUsage && !s.opts.OmitUsage,
		}
		g.id = s.newID(idKind)
		model := appendJSONString(nil, ModelPrefix+req.Model)
		if req.Stream {
			g.stream(chunkObject, model)
		} else {
			g.whole(object, model)
		}
	}
}

// check validates what generation needs.
func (s *server) check(api string, req *request) error {
	switch api {
	case apiChat:
		if len(req.Messages) == 0 || req.Messages[0] != '[' || string(req.Messages) == "[]" {
			return invalid("messages", "'messages' must be a non-empty array")
		}
	case apiCompletions:
		if len(req.Prompt) == 0 || string(req.Prompt) == "null" {
			return invalid("prompt", "you must provide a prompt parameter")
		}
	}
	if m := req.maxTokens(); m != nil && *m < 1 {
		return invalid("max_tokens", "max_tokens must be at least 1")
	}
	return nil
}

func (req *request) maxTokens() *int {
	if req.MaxCompletionTokens != nil {
		return req.MaxCompletionTokens
	}
	return req.MaxTokens
}

func (s *server) newID(kind string) string {
	b := make([]byte, 0, 40)
	b = append(b, kind...)
	b = append(b, "sim"...)
	b = append(b, s.idPrefix...)
	b = strconv.AppendUint(b, s.seq.Add(1), 10)
	return string(b)
}

// generation is one answer being written.
type generation struct {
	s            *server
	w            http.ResponseWriter
	ctx          context.Context
	start        time.Time
	api          string
	id           string
	rng          rng
	n            int // tokens to write
	finish       string
	prompt       int64
	includeUsage bool
}

// wait waits until token i is due.
func (g *generation) wait(i int) error {
	due := g.s.opts.TTFT + time.Duration(i)*g.s.interval
	if due <= 0 {
		return g.ctx.Err()
	}
	if d := due - g.s.opts.Now().Sub(g.start); d > 0 {
		return g.s.opts.Sleep(g.ctx, d)
	}
	return g.ctx.Err()
}

// resetAt returns the number of tokens after which to abort, or -1.
func (g *generation) resetAt() int {
	if r := g.s.opts.ResetAfterTokens; r > 0 && r < g.n {
		return r
	}
	return -1
}

// stream writes the answer as server-sent events, one token per chunk.
func (g *generation) stream(object string, model []byte) {
	flusher, _ := g.w.(http.Flusher)
	buf := buffers.Get().(*bytes.Buffer)
	defer putBuffer(buf)
	// prefix opens every chunk, up to the choices array.
	prefix := make([]byte, 0, 160+len(model))
	prefix = append(prefix, `data: {"id":"`...)
	prefix = append(prefix, g.id...)
	prefix = append(prefix, `","object":"`...)
	prefix = append(prefix, object...)
	prefix = append(prefix, `","created":`...)
	prefix = strconv.AppendInt(prefix, g.start.Unix(), 10)
	prefix = append(prefix, `,"model":`...)
	prefix = append(prefix, model...)
	prefix = append(prefix, `,"system_fingerprint":"fp_sluice_sim","choices":[`...)
	end := "}\n\n"
	if g.includeUsage {
		end = `,"usage":null}` + "\n\n"
	}
	chunk := func(b *bytes.Buffer, choice []byte) {
		b.Write(prefix)
		b.Write(choice)
		b.WriteString(end)
	}
	send := func() bool {
		_, err := g.w.Write(buf.Bytes())
		buf.Reset()
		if flusher != nil {
			flusher.Flush()
		}
		return err == nil
	}

	if g.wait(0) != nil {
		return
	}
	h := g.w.Header()
	h["Content-Type"] = []string{"text/event-stream; charset=utf-8"}
	h["Cache-Control"] = []string{"no-cache"}
	g.w.WriteHeader(http.StatusOK)
	buf.Reset()
	if g.api == apiChat {
		chunk(buf, roleDelta)
	}
	reset := g.resetAt()
	deltas := chatDeltas
	if g.api == apiCompletions {
		deltas = textChoices
	}
	for i := range g.n {
		if i > 0 && g.wait(i) != nil {
			return
		}
		chunk(buf, deltas[g.rng.piece()])
		if !send() {
			return
		}
		if i+1 == reset {
			panic(http.ErrAbortHandler)
		}
	}
	if g.api == apiChat {
		chunk(buf, chatFinish[g.finish])
	} else {
		chunk(buf, textFinish[g.finish])
	}
	if g.includeUsage {
		buf.Write(prefix[:len(prefix)-len(`"choices":[`)])
		buf.WriteString(`"choices":[],"usage":`)
		buf.Write(appendUsage(buf.AvailableBuffer(), g.api, g.prompt, int64(g.n)))
		buf.WriteString("}\n\n")
	}
	buf.WriteString("data: [DONE]\n\n")
	send()
}

// whole writes the answer as one JSON object once it is all generated.
func (g *generation) whole(object string, model []byte) {
	if g.wait(max(g.n-1, 0)) != nil {
		return
	}
	out := outs.Get().(*[]byte)
	b := (*out)[:0]
	defer func() { putOut(out, b) }()
	b = append(b, `{"id":"`...)
	b = append(b, g.id...)
	b = append(b, `","object":"`...)
	b = append(b, object...)
	b = append(b, `","created":`...)
	b = strconv.AppendInt(b, g.start.Unix(), 10)
	b = append(b, `,"model":`...)
	b = append(b, model...)
	if g.api == apiChat {
		b = append(b, `,"choices":[{"index":0,"message":{"role":"assistant","content":"`...)
	} else {
		b = append(b, `,"choices":[{"index":0,"text":"`...)
	}
	reset, cut := g.resetAt(), -1
	for i := range g.n {
		b = append(b, pieces[g.rng.piece()]...)
		if i+1 == reset {
			cut = len(b)
		}
	}
	if g.api == apiChat {
		b = append(b, `","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"`...)
	} else {
		b = append(b, `","logprobs":null,"finish_reason":"`...)
	}
	b = append(b, g.finish...)
	b = append(b, `"}]`...)
	if !g.s.opts.OmitUsage {
		b = append(b, `,"usage":`...)
		b = appendUsage(b, g.api, g.prompt, int64(g.n))
	}
	if g.api == apiChat {
		b = append(b, `,"service_tier":"default"`...)
	}
	b = append(b, `,"system_fingerprint":"fp_sluice_sim"}`...)
	h := g.w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	g.w.WriteHeader(http.StatusOK)
	if cut >= 0 {
		g.w.Write(b[:cut])
		if f, ok := g.w.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	g.w.Write(b)
}

// embeddings answers with one deterministic unit vector per input.
func (s *server) embeddings(w http.ResponseWriter, r *http.Request) {
	start := s.opts.Now()
	buf := buffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer putBuffer(buf)
	req, body, err := s.read(w, r, buf)
	var inputs []json.RawMessage
	if err == nil {
		inputs, err = embeddingInputs(req.Input)
	}
	dims := s.opts.EmbeddingDims
	if err == nil && req.Dimensions != nil {
		if *req.Dimensions < 1 || *req.Dimensions > maxEmbeddingDims {
			err = invalid("dimensions", "dimensions must be between 1 and "+strconv.Itoa(maxEmbeddingDims))
		} else {
			dims = *req.Dimensions
		}
	}
	if err == nil && req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64" {
		err = invalid("encoding_format", "encoding_format must be 'float' or 'base64'")
	}
	var prompt int64
	if err == nil {
		prompt, err = s.counter.PromptTokens(sluice.APIEmbeddings, req.Model, body)
		if err != nil {
			err = invalid("input", err.Error())
		}
	}
	if err != nil {
		writeAPIError(w, err)
		return
	}
	g := generation{s: s, ctx: r.Context(), start: start}
	if g.wait(0) != nil {
		return
	}
	out := outs.Get().(*[]byte)
	b := (*out)[:0]
	defer func() { putOut(out, b) }()
	b = append(b, `{"object":"list","data":[`...)
	vec := make([]float32, dims)
	for i, in := range inputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"embedding":`...)
		vector(vec, req.Model, in)
		b = appendVector(b, vec, req.EncodingFormat == "base64")
		b = append(b, '}')
	}
	b = append(b, `],"model":`...)
	b = appendJSONString(b, ModelPrefix+req.Model)
	if !s.opts.OmitUsage {
		b = append(b, `,"usage":`...)
		b = appendUsage(b, apiEmbeddings, prompt, 0)
	}
	b = append(b, '}')
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// embeddingInputs splits "input" into the items that each get a vector: a
// string or a token array is one; an array of strings or of token arrays
// is one per element.
func embeddingInputs(raw []byte) ([]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, invalid("input", "you must provide an input parameter")
	}
	if raw[0] == '"' {
		return []json.RawMessage{raw}, nil
	}
	var items []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil || len(items) == 0 {
		return nil, invalid("input", "'input' must be a string, an array of strings or an array of token arrays, and not empty")
	}
	if first := bytes.TrimSpace(items[0]); len(first) > 0 && first[0] != '"' && first[0] != '[' {
		return []json.RawMessage{raw}, nil // one token array
	}
	return items, nil
}

// vector fills v with a unit vector derived from the model and input.
func vector(v []float32, model string, input []byte) {
	r := seed(model, input)
	var norm float64
	for i := range v {
		x := float64(int64(r.next()>>11))/float64(1<<52) - 1 // in [-1, 1)
		v[i] = float32(x)
		norm += x * x
	}
	norm = math.Sqrt(norm)
	if norm == 0 {
		norm = 1
	}
	for i := range v {
		v[i] = float32(float64(v[i]) / norm)
	}
}

func appendVector(b []byte, v []float32, b64 bool) []byte {
	if b64 {
		raw := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
		}
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, raw)
		return append(b, '"')
	}
	b = append(b, '[')
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(x), 'g', -1, 32)
	}
	return append(b, ']')
}

// model is what GET /v1/models returns per id.
type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (s *server) models(w http.ResponseWriter, r *http.Request) {
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: make([]model, 0, len(s.opts.Models))}
	for _, id := range s.opts.Models {
		list.Data = append(list.Data, model{id, "model", 0, Owner})
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *server) model(w http.ResponseWriter, id string) {
	writeJSON(w, http.StatusOK, model{id, "model", 0, Owner})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

func writeAPIError(w http.ResponseWriter, err error) {
	var e *apiError
	if !errors.As(err, &e) {
		e = &apiError{status: http.StatusInternalServerError, typ: "server_error", message: err.Error()}
	}
	writeError(w, e.status, e.typ, e.param, e.code, e.message)
}

// writeError writes OpenAI's error shape; empty param and code are null.
func writeError(w http.ResponseWriter, status int, typ, param, code, message string) {
	nullable := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	var body struct {
		Error struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Param   any    `json:"param"`
			Code    any    `json:"code"`
		} `json:"error"`
	}
	body.Error.Message, body.Error.Type = message, typ
	body.Error.Param, body.Error.Code = nullable(param), nullable(code)
	writeJSON(w, status, body)
}
