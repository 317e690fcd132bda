package simulator

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/sse"
)

func inProcess(h http.Handler) *http.Client {
	return &http.Client{Transport: Transport(h)}
}

func doPost(t *testing.T, c *http.Client, ctx context.Context, url, body string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return c.Do(req)
}

func TestTransportServesSimulator(t *testing.T) {
	c := inProcess(New(Options{OutputTokens: 7}))
	resp, err := doPost(t, c, context.Background(), "http://sim.invalid/v1/chat/completions", chatBody)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := readAnswer(t, resp)
	if a.Usage.CompletionTokens != 7 || resp.ContentLength <= 0 || resp.Header.Get("Content-Type") != "application/json" || resp.Proto != "HTTP/1.1" {
		t.Errorf("answer %+v, content length %d, header %v", a, resp.ContentLength, resp.Header)
	}
	resp, err = doPost(t, c, context.Background(), "http://sim.invalid/v1/chat/completions",
		withField(chatBody, `"stream":true,"stream_options":{"include_usage":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	s := readStream(t, resp.Body)
	if !s.done || s.err != nil || len(s.chunks) != 10 || resp.ContentLength != -1 {
		t.Errorf("stream: done %v err %v, %d chunks, length %d", s.done, s.err, len(s.chunks), resp.ContentLength)
	}
}

// TestTransportStreams: the response arrives when the header is written,
// and each flush reaches the reader while the handler is still running.
func TestTransportStreams(t *testing.T) {
	step := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusAccepted)
		for i := range 3 {
			select {
			case <-step:
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "data: "+string(rune('a'+i))+"\n\n")
			w.(http.Flusher).Flush()
		}
	})
	resp, err := doPost(t, inProcess(h), context.Background(), "http://x/", "")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || resp.Status != "202 Accepted" || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %q, header %v", resp.Status, resp.Header)
	}
	r := sse.NewReader(resp.Body, 0)
	for _, want := range []string{"a", "b", "c"} {
		step <- struct{}{}
		ev, err := r.Next()
		if err != nil || string(ev.Data) != want {
			t.Fatalf("event %q, %v; want %q", ev.Data, err, want)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

func TestTransportRequest(t *testing.T) {
	var got struct {
		method, uri, host, body, header string
	}
	closed := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.method, got.uri, got.host, got.body, got.header = r.Method, r.RequestURI, r.Host, string(b), r.Header.Get("X-Test")
		w.Write([]byte("<html>hi</html>")) // no WriteHeader: 200, sniffed type
	})
	body := &closeRecorder{Reader: strings.NewReader("payload"), closed: closed}
	req, _ := http.NewRequest(http.MethodPut, "http://up.invalid/a/b?c=d", body)
	req.Header.Set("X-Test", "yes")
	resp, err := Transport(h).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "<html>hi</html>" || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("response %d %q %v", resp.StatusCode, b, resp.Header)
	}
	if got.method != "PUT" || got.uri != "/a/b?c=d" || got.host != "up.invalid" || got.body != "payload" || got.header != "yes" {
		t.Errorf("handler saw %+v", got)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Error("the request body was not closed")
	}
}

type closeRecorder struct {
	io.Reader
	closed chan struct{}
}

func (c *closeRecorder) Close() error { close(c.closed); return nil }

func TestTransportEmptyHandler(t *testing.T) {
	resp, err := doPost(t, inProcess(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})), context.Background(), "http://x/", "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(b) != 0 || err != nil {
		t.Errorf("status %d, body %q, err %v", resp.StatusCode, b, err)
	}
}

func TestTransportCancelBeforeHeader(t *testing.T) {
	handlerDone, started := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(handlerDone)
		close(started)
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	_, err := doPost(t, inProcess(h), ctx, "http://x/", "")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	select {
	case <-handlerDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context was not cancelled")
	}
}

func TestTransportCancelMidStream(t *testing.T) {
	bs := &blockingSleep{release: make(chan struct{})}
	c := inProcess(New(Options{TokensPerSecond: 10, OutputTokens: 100, Sleep: bs.Sleep}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := doPost(t, c, ctx, "http://x/v1/chat/completions", withField(chatBody, `"stream":true`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := sse.NewReader(resp.Body, 0)
	for range 2 { // role and the first token
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if _, err := r.Next(); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context.Canceled", err)
	}
	waitFor(t, func() bool { bs.mu.Lock(); defer bs.mu.Unlock(); return bs.cancelled == 1 })
}

func TestTransportBodyCloseStopsHandler(t *testing.T) {
	bs := &blockingSleep{release: make(chan struct{})}
	c := inProcess(New(Options{TokensPerSecond: 10, OutputTokens: 100, Sleep: bs.Sleep}))
	resp, err := doPost(t, c, context.Background(), "http://x/v1/chat/completions", withField(chatBody, `"stream":true`))
	if err != nil {
		t.Fatal(err)
	}
	r := sse.NewReader(resp.Body, 0)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 10)); err == nil {
		t.Error("read after Close succeeded")
	}
	waitFor(t, func() bool { bs.mu.Lock(); defer bs.mu.Unlock(); return bs.cancelled == 1 })
}

func TestTransportAbort(t *testing.T) {
	c := inProcess(New(Options{OutputTokens: 20, ResetAfterTokens: 3}))
	resp, err := doPost(t, c, context.Background(), "http://x/v1/chat/completions", withField(chatBody, `"stream":true`))
	if err != nil {
		t.Fatal(err)
	}
	s := readStream(t, resp.Body)
	resp.Body.Close()
	if !errors.Is(s.err, io.ErrUnexpectedEOF) || s.done || len(s.chunks) != 4 {
		t.Errorf("err %v, done %v, %d chunks; want a cut after the role and 3 tokens", s.err, s.done, len(s.chunks))
	}
	// A handler that fails before writing anything fails the round trip.
	for _, p := range []any{http.ErrAbortHandler, "boom"} {
		h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(p) })
		if _, err := doPost(t, inProcess(h), context.Background(), "http://x/", ""); err == nil {
			t.Errorf("panic(%v): no error", p)
		}
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("partial")); panic("boom") })
	resp, err = doPost(t, inProcess(h), context.Background(), "http://x/", "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, errHandlerPanic) {
		t.Errorf("read: %v, want errHandlerPanic", err)
	}
}

func TestTransportResponseController(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		io.WriteString(w, "x")
		if err := rc.Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
	})
	resp, err := doPost(t, inProcess(h), context.Background(), "http://x/", "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "x" {
		t.Errorf("body %q", b)
	}
}

// TestTransportNoLeaks runs every way a round trip can end and checks
// that no goroutine is left behind.
func TestTransportNoLeaks(t *testing.T) {
	h := New(Options{OutputTokens: 30, TokensPerSecond: 2000, ResetAfterTokens: 25})
	c := inProcess(h)
	run := func() {
		// Complete, streamed and whole.
		for _, body := range []string{withField(chatBody, `"max_tokens":10`), withField(chatBody, `"stream":true,"max_tokens":10`)} {
			resp, err := doPost(t, c, context.Background(), "http://x/v1/chat/completions", body)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		// Reset mid-stream.
		resp, err := doPost(t, c, context.Background(), "http://x/v1/chat/completions", withField(chatBody, `"stream":true`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// Body closed early.
		resp, err = doPost(t, c, context.Background(), "http://x/v1/chat/completions", withField(chatBody, `"stream":true`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Read(make([]byte, 100))
		resp.Body.Close()
		// Cancelled mid-stream, body never closed by the reader.
		ctx, cancel := context.WithCancel(context.Background())
		resp, err = doPost(t, c, ctx, "http://x/v1/chat/completions", withField(chatBody, `"stream":true`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Read(make([]byte, 100))
		cancel()
		io.Copy(io.Discard, resp.Body)
		// Cancelled before the header.
		ctx, cancel = context.WithCancel(context.Background())
		cancel()
		if _, err := doPost(t, c, ctx, "http://x/v1/chat/completions", chatBody); err == nil {
			t.Fatal("cancelled request succeeded")
		}
		// Bad request.
		resp, err = doPost(t, c, context.Background(), "http://x/v1/chat/completions", "{")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	run() // warm up pools and lazy state
	before := runtime.NumGoroutine()
	for range 20 {
		run()
	}
	var after int
	waitFor(t, func() bool { after = runtime.NumGoroutine(); return after <= before })
	if after > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Error("condition not met in 5s")
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTransportConcurrent(t *testing.T) {
	c := inProcess(New(Options{OutputTokens: 8}))
	var failures atomic.Int32
	done := make(chan struct{})
	for i := range 16 {
		go func() {
			defer func() { done <- struct{}{} }()
			body := withField(chatBody, `"stream":true`)
			if i%2 == 0 {
				body = chatBody
			}
			resp, err := c.Post("http://x/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				failures.Add(1)
				return
			}
			defer resp.Body.Close()
			if b, err := io.ReadAll(resp.Body); err != nil || len(b) == 0 {
				failures.Add(1)
			}
		}()
	}
	for range 16 {
		<-done
	}
	if n := failures.Load(); n > 0 {
		t.Errorf("%d of 16 concurrent requests failed", n)
	}
}
