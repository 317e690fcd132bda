package simulator

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/sse"
	"github.com/sluice-gateway/sluice/usage"
)

var counter usage.Counter

const chatBody = `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Count to three."}]}`

func newServer(t *testing.T, opts Options) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(New(opts))
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url, body string) *http.Response {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// withField returns the JSON object body with extra members added.
func withField(body, fields string) string {
	return strings.TrimSuffix(body, "}") + "," + fields + "}"
}

// chunk is a streaming chunk as the tests read it.
type chunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Role    *string `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		Text         *string `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage json.RawMessage `json:"usage"`
}

type streamed struct {
	chunks  []chunk
	raw     [][]byte // data of each event
	content string
	done    bool
	err     error
}

// readStream parses an SSE body with the sse package.
func readStream(t *testing.T, body io.Reader) streamed {
	t.Helper()
	var s streamed
	r := sse.NewReader(body, 0)
	for {
		ev, err := r.Next()
		if err != nil {
			if err != io.EOF {
				s.err = err
			}
			return s
		}
		if ev.Data == nil {
			continue
		}
		if s.done {
			t.Fatalf("event after [DONE]: %q", ev.Raw)
		}
		if string(ev.Data) == "[DONE]" {
			s.done = true
			continue
		}
		var c chunk
		if err := json.Unmarshal(ev.Data, &c); err != nil {
			t.Fatalf("chunk %q: %v", ev.Data, err)
		}
		s.chunks = append(s.chunks, c)
		s.raw = append(s.raw, bytes.Clone(ev.Data))
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				s.content += *ch.Delta.Content
			}
			if ch.Text != nil {
				s.content += *ch.Text
			}
		}
	}
}

type answer struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		Text         string `json:"text"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int64 `json:"prompt_tokens"`
		CompletionTokens int64 `json:"completion_tokens"`
		TotalTokens      int64 `json:"total_tokens"`
	} `json:"usage"`
}

func readAnswer(t *testing.T, resp *http.Response) answer {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var a answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestPiecesAreSingleTokens(t *testing.T) {
	for _, model := range []string{"gpt-4", "gpt-4o"} {
		for _, p := range pieces {
			if n := counter.Count(model, p); n != 1 {
				t.Errorf("%s: piece %q is %d tokens", usage.Encoding(model), p, n)
			}
		}
		// Pieces in a row stay one token each.
		r := rng(7)
		var text strings.Builder
		for range 2000 {
			text.WriteString(pieces[r.piece()])
		}
		if n := counter.Count(model, text.String()); n != 2000 {
			t.Errorf("%s: 2000 pieces count as %d tokens", usage.Encoding(model), n)
		}
	}
}

func TestChatStream(t *testing.T) {
	srv := newServer(t, Options{OutputTokens: 12})
	wantPrompt, err := counter.PromptTokens(sluice.APIChat, "gpt-4o-mini", []byte(chatBody))
	if err != nil {
		t.Fatal(err)
	}
	for _, include := range []bool{false, true} {
		body := withField(chatBody, `"stream":true`)
		if include {
			body = withField(body, `"stream_options":{"include_usage":true}`)
		}
		resp := post(t, srv.URL+"/v1/chat/completions", body)
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Fatalf("Content-Type %q", ct)
		}
		s := readStream(t, resp.Body)
		if s.err != nil || !s.done {
			t.Fatalf("include_usage=%v: err %v, done %v", include, s.err, s.done)
		}
		// role chunk, 12 tokens, finish chunk, and the usage chunk if asked.
		want := 14
		if include {
			want++
		}
		if len(s.chunks) != want {
			t.Fatalf("include_usage=%v: %d chunks, want %d", include, len(s.chunks), want)
		}
		for i, c := range s.chunks {
			if c.Object != "chat.completion.chunk" || c.Model != "sluice-simulator/gpt-4o-mini" || c.ID != s.chunks[0].ID || c.Created == 0 {
				t.Errorf("chunk %d: object %q model %q id %q created %d", i, c.Object, c.Model, c.ID, c.Created)
			}
			hasUsageKey := bytes.Contains(s.raw[i], []byte(`"usage":`))
			if hasUsageKey != include {
				t.Errorf("include_usage=%v: chunk %d has a usage key: %v", include, i, hasUsageKey)
			}
		}
		first := s.chunks[0].Choices[0]
		if first.Delta.Role == nil || *first.Delta.Role != "assistant" || first.Delta.Content == nil || *first.Delta.Content != "" {
			t.Errorf("first chunk does not carry the role: %s", s.raw[0])
		}
		for i := 1; i <= 12; i++ {
			ch := s.chunks[i].Choices
			if len(ch) != 1 || ch[0].Delta.Content == nil || counter.Count("gpt-4o", *ch[0].Delta.Content) != 1 || ch[0].FinishReason != nil {
				t.Errorf("chunk %d is not one token: %s", i, s.raw[i])
			}
		}
		fin := s.chunks[13].Choices
		if len(fin) != 1 || fin[0].FinishReason == nil || *fin[0].FinishReason != "stop" || fin[0].Delta.Content != nil {
			t.Errorf("finish chunk: %s", s.raw[13])
		}
		if !include {
			continue
		}
		last := s.chunks[14]
		if len(last.Choices) != 0 || !bytes.Contains(s.raw[14], []byte(`"choices":[]`)) {
			t.Errorf("usage chunk has choices: %s", s.raw[14])
		}
		c := usage.ParseChunk(s.raw[14])
		if !c.UsageOnly || c.Usage != (usage.Usage{Prompt: wantPrompt, Completion: 12, Total: wantPrompt + 12}) {
			t.Errorf("usage chunk: %+v, want prompt %d completion 12", c, wantPrompt)
		}
		if n := counter.Count("gpt-4o-mini", s.content); n != 12 {
			t.Errorf("the content %q counts %d tokens, usage says 12", s.content, n)
		}
	}
}

func TestChatWhole(t *testing.T) {
	srv := newServer(t, Options{})
	a := readAnswer(t, post(t, srv.URL+"/v1/chat/completions", chatBody))
	wantPrompt, _ := counter.PromptTokens(sluice.APIChat, "gpt-4o-mini", []byte(chatBody))
	if a.Object != "chat.completion" || a.Model != "sluice-simulator/gpt-4o-mini" || !strings.HasPrefix(a.ID, "chatcmpl-sim") {
		t.Errorf("answer: %+v", a)
	}
	if len(a.Choices) != 1 || a.Choices[0].Message.Role != "assistant" || a.Choices[0].FinishReason != "stop" {
		t.Fatalf("choices: %+v", a.Choices)
	}
	content := a.Choices[0].Message.Content
	if n := counter.Count("gpt-4o-mini", content); n != 16 {
		t.Errorf("content %q is %d tokens, want the default 16", content, n)
	}
	if a.Usage == nil || *a.Usage != (struct {
		PromptTokens     int64 `json:"prompt_tokens"`
		CompletionTokens int64 `json:"completion_tokens"`
		TotalTokens      int64 `json:"total_tokens"`
	}{wantPrompt, 16, wantPrompt + 16}) {
		t.Errorf("usage %+v, want prompt %d completion 16", a.Usage, wantPrompt)
	}
}

func TestCompletions(t *testing.T) {
	srv := newServer(t, Options{OutputTokens: 5})
	const body = `{"model":"gpt-3.5-turbo-instruct","prompt":"Say this is a test","max_tokens":7}`
	wantPrompt, _ := counter.PromptTokens(sluice.APICompletions, "gpt-3.5-turbo-instruct", []byte(body))
	a := readAnswer(t, post(t, srv.URL+"/v1/completions", body))
	if a.Object != "text_completion" || len(a.Choices) != 1 || a.Usage == nil ||
		a.Usage.PromptTokens != wantPrompt || a.Usage.CompletionTokens != 5 || counter.Count("gpt-4", a.Choices[0].Text) != 5 {
		t.Errorf("answer %+v", a)
	}
	resp := post(t, srv.URL+"/v1/completions", withField(body, `"stream":true,"stream_options":{"include_usage":true}`))
	s := readStream(t, resp.Body)
	if s.err != nil || !s.done || len(s.chunks) != 7 { // 5 tokens, finish, usage
		t.Fatalf("stream: err %v done %v, %d chunks", s.err, s.done, len(s.chunks))
	}
	if s.content != a.Choices[0].Text {
		t.Errorf("streamed %q, whole %q: the same request must give the same text", s.content, a.Choices[0].Text)
	}
	for _, c := range s.chunks {
		if c.Object != "text_completion" {
			t.Errorf("object %q", c.Object)
		}
	}
	if c := usage.ParseChunk(s.raw[6]); !c.UsageOnly || c.Usage.Completion != 5 || c.Usage.Prompt != wantPrompt {
		t.Errorf("usage chunk %+v", c)
	}
}

func TestDeterminism(t *testing.T) {
	srv := newServer(t, Options{})
	text := func(body string) string {
		return readAnswer(t, post(t, srv.URL+"/v1/chat/completions", body)).Choices[0].Message.Content
	}
	a, b := text(chatBody), text(chatBody)
	if a != b {
		t.Errorf("same request, different answers: %q, %q", a, b)
	}
	if c := text(strings.Replace(chatBody, "three", "four", 1)); c == a {
		t.Errorf("different prompt, same answer %q", c)
	}
	if c := text(strings.Replace(chatBody, "gpt-4o-mini", "gpt-4.1", 1)); c == a {
		t.Errorf("different model, same answer %q", c)
	}
	resp := post(t, srv.URL+"/v1/chat/completions", withField(chatBody, `"stream":true`))
	if s := readStream(t, resp.Body); s.content != a {
		t.Errorf("streamed %q, whole %q", s.content, a)
	}
	// Another server instance gives the same text too.
	other := newServer(t, Options{})
	resp = post(t, other.URL+"/v1/chat/completions", chatBody)
	if c := readAnswer(t, resp).Choices[0].Message.Content; c != a {
		t.Errorf("another simulator answered %q, want %q", c, a)
	}
}

func TestMaxTokens(t *testing.T) {
	srv := newServer(t, Options{OutputTokens: 10})
	for _, tc := range []struct {
		field  string
		tokens int64
		finish string
	}{
		{`"max_tokens":3`, 3, "length"},
		{`"max_completion_tokens":4`, 4, "length"},
		{`"max_tokens":2,"max_completion_tokens":5`, 5, "length"},
		{`"max_tokens":10`, 10, "stop"},
		{`"max_tokens":100`, 10, "stop"},
	} {
		a := readAnswer(t, post(t, srv.URL+"/v1/chat/completions", withField(chatBody, tc.field)))
		if a.Usage.CompletionTokens != tc.tokens || a.Choices[0].FinishReason != tc.finish ||
			int64(counter.Count("gpt-4o", a.Choices[0].Message.Content)) != tc.tokens {
			t.Errorf("%s: %d tokens, finish %q; want %d, %q", tc.field, a.Usage.CompletionTokens, a.Choices[0].FinishReason, tc.tokens, tc.finish)
		}
		resp := post(t, srv.URL+"/v1/chat/completions", withField(chatBody, tc.field+`,"stream":true`))
		s := readStream(t, resp.Body)
		if int64(len(s.chunks)) != tc.tokens+2 || *s.chunks[len(s.chunks)-1].Choices[0].FinishReason != tc.finish {
			t.Errorf("%s streamed: %d chunks", tc.field, len(s.chunks))
		}
	}
}

func TestOmitUsage(t *testing.T) {
	srv := newServer(t, Options{OmitUsage: true, OutputTokens: 6})
	resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
	b, _ := io.ReadAll(resp.Body)
	if _, _, ok := usage.FromBody(b); ok || bytes.Contains(b, []byte(`"usage"`)) {
		t.Errorf("usage reported: %s", b)
	}
	resp = post(t, srv.URL+"/v1/chat/completions", withField(chatBody, `"stream":true,"stream_options":{"include_usage":true}`))
	s := readStream(t, resp.Body)
	if !s.done || len(s.chunks) != 8 {
		t.Fatalf("%d chunks, done %v", len(s.chunks), s.done)
	}
	for _, raw := range s.raw {
		if bytes.Contains(raw, []byte(`"usage"`)) {
			t.Errorf("usage in %s", raw)
		}
	}
	resp = post(t, srv.URL+"/v1/embeddings", `{"model":"m","input":"x"}`)
	if b, _ := io.ReadAll(resp.Body); bytes.Contains(b, []byte(`"usage"`)) {
		t.Errorf("embeddings usage reported: %s", b)
	}
}

func TestResetAfterTokens(t *testing.T) {
	srv := newServer(t, Options{OutputTokens: 20, ResetAfterTokens: 5})
	resp := post(t, srv.URL+"/v1/chat/completions", withField(chatBody, `"stream":true`))
	s := readStream(t, resp.Body)
	if s.done || !errors.Is(s.err, io.ErrUnexpectedEOF) {
		t.Errorf("done %v, err %v; want a cut stream", s.done, s.err)
	}
	if len(s.chunks) != 6 || counter.Count("gpt-4o", s.content) != 5 {
		t.Errorf("%d chunks, content %q; want the role chunk and 5 tokens", len(s.chunks), s.content)
	}
	resp = post(t, srv.URL+"/v1/chat/completions", chatBody)
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("whole answer: read err %v, want a cut body", err)
	}
	// Answers no longer than the reset point complete.
	resp = post(t, srv.URL+"/v1/chat/completions", withField(chatBody, `"stream":true,"max_tokens":5`))
	if s := readStream(t, resp.Body); !s.done || s.err != nil {
		t.Errorf("5-token answer: done %v err %v", s.done, s.err)
	}
}

// fakeClock is an injected clock whose Sleep advances time at once.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.sleeps = append(c.sleeps, d)
	return ctx.Err()
}

func TestPacing(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	srv := newServer(t, Options{TTFT: 300 * time.Millisecond, TokensPerSecond: 20, OutputTokens: 4, Now: clock.Now, Sleep: clock.Sleep})
	resp := post(t, srv.URL+"/v1/chat/completions", withField(chatBody, `"stream":true`))
	s := readStream(t, resp.Body)
	if !s.done || s.chunks[0].Created != 1_700_000_000 {
		t.Fatalf("done %v, created %d", s.done, s.chunks[0].Created)
	}
	want := []time.Duration{300 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond}
	if !equalDurations(clock.sleeps, want) {
		t.Errorf("streamed sleeps %v, want %v", clock.sleeps, want)
	}
	clock.sleeps = nil
	readAnswer(t, post(t, srv.URL+"/v1/chat/completions", chatBody))
	if want := []time.Duration{450 * time.Millisecond}; !equalDurations(clock.sleeps, want) {
		t.Errorf("whole answer sleeps %v, want %v", clock.sleeps, want)
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// blockingSleep lets a token through for each value sent on release and
// records how many waits ended because the request was cancelled.
type blockingSleep struct {
	release   chan struct{}
	mu        sync.Mutex
	waits     int
	cancelled int
}

func (b *blockingSleep) Sleep(ctx context.Context, d time.Duration) error {
	b.mu.Lock()
	b.waits++
	b.mu.Unlock()
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		b.cancelled++
		b.mu.Unlock()
		return ctx.Err()
	}
}

func TestCancellation(t *testing.T) {
	bs := &blockingSleep{release: make(chan struct{})}
	handlerDone := make(chan struct{}, 1)
	h := New(Options{TokensPerSecond: 10, OutputTokens: 1000, Sleep: bs.Sleep})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		handlerDone <- struct{}{}
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(withField(chatBody, `"stream":true`)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := sse.NewReader(resp.Body, 0)
	for i := range 4 { // role, token 0, then two released tokens
		if i >= 2 {
			bs.release <- struct{}{}
		}
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	select {
	case <-handlerDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler kept generating after the client went away")
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.cancelled != 1 || bs.waits != 3 {
		t.Errorf("%d waits, %d cancelled; want 3 and 1", bs.waits, bs.cancelled)
	}
}

func TestEmbeddings(t *testing.T) {
	srv := newServer(t, Options{EmbeddingDims: 16})
	type result struct {
		Object string `json:"object"`
		Data   []struct {
			Object    string          `json:"object"`
			Index     int             `json:"index"`
			Embedding json.RawMessage `json:"embedding"`
		} `json:"data"`
		Model string `json:"model"`
		Usage struct {
			PromptTokens int64 `json:"prompt_tokens"`
			TotalTokens  int64 `json:"total_tokens"`
		} `json:"usage"`
	}
	get := func(body string) result {
		t.Helper()
		resp := post(t, srv.URL+"/v1/embeddings", body)
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s: %d %s", body, resp.StatusCode, b)
		}
		var r result
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	floats := func(raw json.RawMessage) []float32 {
		var v []float32
		var s string
		if json.Unmarshal(raw, &v) == nil {
			return v
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatalf("embedding %s", raw)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		v = make([]float32, len(b)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return v
	}
	for _, tc := range []struct {
		input string
		n     int
	}{
		{`"hello world"`, 1},
		{`["hello world","good night","x"]`, 3},
		{`[1,2,3]`, 1},
		{`[[1,2],[3]]`, 2},
	} {
		body := `{"model":"text-embedding-3-small","input":` + tc.input + `}`
		r := get(body)
		wantPrompt, _ := counter.PromptTokens(sluice.APIEmbeddings, "text-embedding-3-small", []byte(body))
		if r.Object != "list" || len(r.Data) != tc.n || r.Model != "sluice-simulator/text-embedding-3-small" ||
			r.Usage.PromptTokens != wantPrompt || r.Usage.TotalTokens != wantPrompt {
			t.Errorf("%s: %+v", tc.input, r)
		}
		for i, d := range r.Data {
			v := floats(d.Embedding)
			var norm float64
			for _, x := range v {
				norm += float64(x) * float64(x)
			}
			if d.Object != "embedding" || d.Index != i || len(v) != 16 || math.Abs(norm-1) > 1e-5 {
				t.Errorf("%s: item %d: %d dims, norm %v", tc.input, i, len(v), norm)
			}
		}
	}
	a := get(`{"model":"m","input":["same","other"],"dimensions":5}`)
	b := get(`{"model":"m","input":["same"],"encoding_format":"base64","dimensions":5}`)
	va, vb := floats(a.Data[0].Embedding), floats(b.Data[0].Embedding)
	if len(va) != 5 || len(vb) != 5 {
		t.Fatalf("dims %d, %d", len(va), len(vb))
	}
	for i := range va {
		if va[i] != vb[i] {
			t.Fatalf("same input, different vectors: %v %v", va, vb)
		}
	}
	if vo := floats(a.Data[1].Embedding); vo[0] == va[0] && vo[1] == va[1] {
		t.Errorf("different inputs, same vector")
	}
}

func TestModels(t *testing.T) {
	srv := newServer(t, Options{Models: []string{"alpha", "beta"}})
	for _, path := range []string{"/v1/models", "/models"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Object string `json:"object"`
			Data   []struct {
				ID      string `json:"id"`
				Object  string `json:"object"`
				OwnedBy string `json:"owned_by"`
			} `json:"data"`
		}
		json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		if list.Object != "list" || len(list.Data) != 2 || list.Data[0].ID != "alpha" || list.Data[1].OwnedBy != "sluice-simulator" {
			t.Errorf("%s: %+v", path, list)
		}
	}
	resp, err := http.Get(srv.URL + "/v1/models/whatever-model")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct{ ID, Object, OwnedBy string }
	json.NewDecoder(resp.Body).Decode(&m)
	if resp.StatusCode != 200 || m.ID != "whatever-model" || m.Object != "model" {
		t.Errorf("model: %d %+v", resp.StatusCode, m)
	}
}

func TestWithoutV1Prefix(t *testing.T) {
	srv := newServer(t, Options{OutputTokens: 3})
	a := readAnswer(t, post(t, srv.URL+"/chat/completions", chatBody))
	if a.Usage.CompletionTokens != 3 {
		t.Errorf("%+v", a)
	}
}

func TestBadRequests(t *testing.T) {
	srv := newServer(t, Options{})
	for _, tc := range []struct {
		path, body string
		status     int
		param      any
	}{
		{"/v1/chat/completions", `{"model":"m","messages":`, 400, nil},
		{"/v1/chat/completions", `not json`, 400, nil},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`, 400, "model"},
		{"/v1/chat/completions", `{"model":"m"}`, 400, "messages"},
		{"/v1/chat/completions", `{"model":"m","messages":[]}`, 400, "messages"},
		{"/v1/chat/completions", `{"model":"m","messages":["x"]}`, 400, nil},
		{"/v1/chat/completions", `{"model":"m","stream":"yes","messages":[{"role":"user","content":"x"}]}`, 400, "stream"},
		{"/v1/chat/completions", `{"model":"m","max_tokens":1.5,"messages":[{"role":"user","content":"x"}]}`, 400, "max_tokens"},
		{"/v1/chat/completions", `{"model":7,"messages":[{"role":"user","content":"x"}]}`, 400, "model"},
		{"/v1/chat/completions", `[{"model":"m"}]`, 400, nil},
		{"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]} x`, 400, nil},
		{"/v1/chat/completions", `{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}`, 400, "max_tokens"},
		{"/v1/completions", `{"model":"m"}`, 400, "prompt"},
		{"/v1/completions", `{"model":"m","prompt":5}`, 400, nil},
		{"/v1/embeddings", `{"model":"m"}`, 400, "input"},
		{"/v1/embeddings", `{"model":"m","input":[]}`, 400, "input"},
		{"/v1/embeddings", `{"model":"m","input":"x","dimensions":0}`, 400, "dimensions"},
		{"/v1/embeddings", `{"model":"m","input":"x","encoding_format":"hex"}`, 400, "encoding_format"},
		{"/v1/nothing", `{}`, 404, nil},
	} {
		resp := post(t, srv.URL+tc.path, tc.body)
		var e struct {
			Error struct {
				Message string `json:"message"`
				Type    string `json:"type"`
				Param   any    `json:"param"`
				Code    any    `json:"code"`
			} `json:"error"`
		}
		err := json.NewDecoder(resp.Body).Decode(&e)
		if resp.StatusCode != tc.status || err != nil || e.Error.Message == "" || e.Error.Type != "invalid_request_error" || e.Error.Param != tc.param {
			t.Errorf("%s %s: status %d, %+v (%v); want %d, param %v", tc.path, tc.body, resp.StatusCode, e, err, tc.status, tc.param)
		}
	}
	resp, err := http.Get(srv.URL + "/v1/chat/completions")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET chat: %d", resp.StatusCode)
	}
}

func TestParseRequest(t *testing.T) {
	ten := 10
	for _, tc := range []struct {
		body string
		want request
	}{
		{`{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":10,"messages":[{"role":"user","content":"}]\"{"}]}`,
			request{Model: "m", Stream: true, IncludeUsage: true, MaxTokens: &ten, Messages: []byte(`[{"role":"user","content":"}]\"{"}]`)}},
		{" {\n\t\"model\" : \"a\\u00e9\\\"b\" ,\"stream\":null, \"stream_options\" : { \"x\":[1,{}], \"include_usage\" : false } , \"prompt\" : [ 1 , 2 ] } ",
			request{Model: "aé\"b", Prompt: []byte("[ 1 , 2 ]")}},
		{`{"model":"a","model":"b","input":"x","dimensions":3,"encoding_format":"base64","unknown":{"model":"c"}}`,
			request{Model: "b", Input: []byte(`"x"`), Dimensions: new(int), EncodingFormat: "base64"}},
		{`{}`, request{}},
	} {
		got, err := parseRequest([]byte(tc.body))
		if err != nil {
			t.Errorf("%s: %v", tc.body, err)
			continue
		}
		if tc.want.Dimensions != nil {
			*tc.want.Dimensions = 3
		}
		if got.Model != tc.want.Model || got.Stream != tc.want.Stream || got.IncludeUsage != tc.want.IncludeUsage ||
			!equalInt(got.MaxTokens, tc.want.MaxTokens) || !equalInt(got.Dimensions, tc.want.Dimensions) ||
			got.EncodingFormat != tc.want.EncodingFormat || string(got.Messages) != string(tc.want.Messages) ||
			string(got.Prompt) != string(tc.want.Prompt) || string(got.Input) != string(tc.want.Input) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", tc.body, got, tc.want)
		}
	}
}

func equalInt(a, b *int) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

func TestUnusualModelName(t *testing.T) {
	srv := newServer(t, Options{OutputTokens: 2})
	body := `{"model":"we\"ird\u0001\\name/ü","messages":[{"role":"user","content":"x"}]}`
	a := readAnswer(t, post(t, srv.URL+"/v1/chat/completions", body))
	if a.Model != "sluice-simulator/we\"ird\u0001\\name/ü" {
		t.Errorf("model %q", a.Model)
	}
}
