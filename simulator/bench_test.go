package simulator

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// discardWriter is the cheapest ResponseWriter, to measure the handler
// alone.
type discardWriter struct {
	h http.Header
	n int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
func (w *discardWriter) Flush()                      {}

var benchBodies = []struct {
	name, path, body string
}{
	{"chat", "/v1/chat/completions", chatBody},
	{"chat-stream", "/v1/chat/completions", withField(chatBody, `"stream":true,"stream_options":{"include_usage":true}`)},
	{"completions-stream", "/v1/completions", `{"model":"gpt-3.5-turbo-instruct","prompt":"Say this is a test","stream":true}`},
	{"embeddings", "/v1/embeddings", `{"model":"text-embedding-3-small","input":"The food was delicious and the waiter was friendly."}`},
}

func BenchmarkHandler(b *testing.B) {
	counter.Preload()
	h := New(Options{})
	for _, bb := range benchBodies {
		b.Run(bb.name, func(b *testing.B) {
			body := []byte(bb.body)
			r := bytes.NewReader(body)
			req := httptest.NewRequest(http.MethodPost, bb.path, r)
			w := &discardWriter{h: make(http.Header)}
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(body)
				req.Body = io.NopCloser(r)
				clear(w.h)
				h.ServeHTTP(w, req)
			}
		})
	}
}

func BenchmarkTransport(b *testing.B) {
	counter.Preload()
	c := &http.Client{Transport: Transport(New(Options{}))}
	for _, bb := range benchBodies {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.Post("http://sim"+bb.path, "application/json", strings.NewReader(bb.body))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

func BenchmarkLoopbackHTTP(b *testing.B) {
	srv := httptest.NewServer(New(Options{}))
	defer srv.Close()
	c := srv.Client()
	for _, bb := range benchBodies[:2] {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.Post(srv.URL+bb.path, "application/json", strings.NewReader(bb.body))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
