package simulator

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// Transport returns a RoundTripper that serves every request with h in
// the same process, without a socket. The response is returned as soon as
// h writes its header (or flushes, or returns), and its body streams what
// h writes; Flush hands buffered output to the reader at once.
//
// Cancelling the request's context makes body reads fail with the
// context's error and cancels the context h sees; closing the body early
// does the same. A handler that panics with http.ErrAbortHandler cuts the
// response as a dropped connection would: reads fail with
// io.ErrUnexpectedEOF (or RoundTrip does, if no header was written). Other
// panics are reported the same way rather than crashing the process.
//
// The goroutine running h ends when h returns; h must return once its
// context is done or its writes fail, as every well-behaved handler does.
func Transport(h http.Handler) http.RoundTripper { return &transport{h: h} }

type transport struct{ h http.Handler }

// writers are reused between requests.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}

// errHandlerPanic reports a handler that panicked.
var errHandlerPanic = errors.New("simulator: handler panicked")

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		closeBody(req)
		return nil, errors.New("simulator: request has no URL")
	}
	if err := req.Context().Err(); err != nil {
		// Like a network transport, a request cancelled before it is
		// sent fails; the handler never sees it.
		closeBody(req)
		return nil, context.Cause(req.Context())
	}
	ctx, cancel := context.WithCancel(req.Context())
	in := req.Clone(ctx)
	if in.Body == nil {
		in.Body = http.NoBody
	}
	in.RequestURI = req.URL.RequestURI()
	in.RemoteAddr = "127.0.0.1:0"
	if in.Host == "" {
		in.Host = req.URL.Host
	}
	in.Proto, in.ProtoMajor, in.ProtoMinor = "HTTP/1.1", 1, 1

	pr, pw := io.Pipe()
	w := &responseWriter{header: make(http.Header), pw: pw, ready: make(chan struct{})}
	w.bw = writers.Get().(*bufio.Writer)
	w.bw.Reset(pw)

	// A cancelled request fails the reader at once, even while h is busy.
	stop := context.AfterFunc(req.Context(), func() { pw.CloseWithError(context.Cause(req.Context())) })
	go func() {
		defer func() {
			p := recover()
			stop()
			w.finish(p, req.Context())
			cancel()
			in.Body.Close()
		}()
		t.h.ServeHTTP(w, in)
	}()

	select {
	case <-w.ready:
	case <-req.Context().Done():
		pr.CloseWithError(context.Cause(req.Context()))
		cancel()
		return nil, context.Cause(req.Context())
	}
	if w.failure != nil {
		pr.CloseWithError(w.failure)
		cancel()
		return nil, w.failure
	}
	resp := &http.Response{
		Status:        strconv.Itoa(w.status) + " " + http.StatusText(w.status),
		StatusCode:    w.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.sent,
		Body:          &body{pr: pr, cancel: cancel},
		ContentLength: -1,
		Request:       req,
	}
	if cl, err := strconv.ParseInt(w.sent.Get("Content-Length"), 10, 64); err == nil && cl >= 0 {
		resp.ContentLength = cl
	}
	if req.Method == http.MethodHead {
		resp.Body = http.NoBody
		pr.Close()
		cancel()
	}
	return resp, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// body is a response body; closing it stops the handler.
type body struct {
	pr     *io.PipeReader
	cancel context.CancelFunc
}

func (b *body) Read(p []byte) (int, error) { return b.pr.Read(p) }

func (b *body) Close() error {
	b.pr.CloseWithError(errBodyClosed)
	b.cancel()
	return nil
}

var errBodyClosed = errors.New("simulator: read on closed response body")

// responseWriter is the http.ResponseWriter a handler writes through. Its
// methods run on the handler's goroutine only; RoundTrip reads status,
// sent and failure after ready is closed.
type responseWriter struct {
	header  http.Header
	sent    http.Header // a copy of header as it was when written
	status  int
	pw      *io.PipeWriter
	bw      *bufio.Writer
	ready   chan struct{}
	failure error // set instead of a status if h fails before writing one
	err     error // the first write error
}

var (
	_ http.ResponseWriter = (*responseWriter)(nil)
	_ http.Flusher        = (*responseWriter)(nil)
)

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if w.status != 0 || w.failure != nil {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("simulator: invalid WriteHeader code %d", code))
	}
	if code < 200 {
		return // informational responses are not relayed
	}
	w.status = code
	w.sent = w.header.Clone()
	close(w.ready)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		if w.header.Get("Content-Type") == "" && len(p) > 0 {
			w.header.Set("Content-Type", http.DetectContentType(p))
		}
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.bw.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

// Flush sends what has been written to the reader.
func (w *responseWriter) Flush() { w.FlushError() }

// FlushError is Flush for http.ResponseController.
func (w *responseWriter) FlushError() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = err
		return err
	}
	return nil
}

// finish ends the response once the handler has returned (p is what it
// panicked with, if anything).
func (w *responseWriter) finish(p any, ctx context.Context) {
	var cut error
	switch {
	case p == http.ErrAbortHandler:
		cut = io.ErrUnexpectedEOF
	case p != nil:
		cut = fmt.Errorf("%w: %v", errHandlerPanic, p)
	}
	if cut == nil && w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if cut == nil && w.err == nil {
		w.err = w.bw.Flush()
	}
	w.bw.Reset(nil)
	writers.Put(w.bw)
	w.bw = nil
	switch {
	case cut != nil:
		w.pw.CloseWithError(cut)
	case ctx.Err() != nil:
		w.pw.CloseWithError(context.Cause(ctx))
	default:
		w.pw.Close()
	}
	if w.status == 0 {
		w.failure = cut
		close(w.ready)
	}
}
