package aigateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/aigateway"
	"github.com/sluice-gateway/sluice/proxy"
	"github.com/sluice-gateway/sluice/store/sqlite"
)

// memLog is an in-memory sluice.InferenceLogStore.
type memLog struct {
	mu     sync.Mutex
	rows   []sluice.InferenceLogRecord
	writes int
	fail   error
}

func (m *memLog) InsertInferenceLog(_ context.Context, rows []sluice.InferenceLogRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes++
	if m.fail != nil {
		return m.fail
	}
	for _, r := range rows {
		if !slicesContainsID(m.rows, r.RequestID) {
			m.rows = append(m.rows, r)
		}
	}
	return nil
}

func (m *memLog) InferenceLog(context.Context, string, time.Time, time.Time, int) ([]sluice.InferenceLogRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]sluice.InferenceLogRecord(nil), m.rows...), nil
}

func (m *memLog) all() []sluice.InferenceLogRecord {
	rows, _ := m.InferenceLog(context.Background(), "", time.Time{}, time.Time{}, 0)
	return rows
}

func slicesContainsID(rows []sluice.InferenceLogRecord, id string) bool {
	for _, r := range rows {
		if r.RequestID == id {
			return true
		}
	}
	return false
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func logged(fraction float64) *proxy.Endpoint {
	return &proxy.Endpoint{Name: "chat", CapturePayloads: true, Gateway: &sluice.AIGateway{
		InferenceTableConfig: &sluice.InferenceTableConfig{Enabled: true, SamplingFraction: fraction}}}
}

func payload(ep *proxy.Endpoint, i int, req, resp string) *proxy.Payload {
	return &proxy.Payload{Endpoint: ep, Request: []byte(req), Response: []byte(resp), Record: &sluice.UsageRecord{
		RequestID: fmt.Sprintf("req-%05d", i), Time: t0.Add(time.Duration(i) * time.Millisecond), KeyID: "k1", Team: "t",
		Endpoint: ep.Name, Status: 200, Latency: 1234 * time.Millisecond, ServedEntity: "gpt-main", ClientRequestID: "c-7"}}
}

const (
	logReq  = `{"model":"chat","messages":[{"role":"user","content":"My card is 4111 1111 1111 1111, mail jo@example.com"}]}`
	logResp = `{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assistant","content":"Noted jo@example.com."}}],"usage":{"total_tokens":12}}`
)

func TestLogRow(t *testing.T) {
	st := &memLog{}
	l := aigateway.NewInferenceLogger(st, aigateway.LoggerOptions{})
	p := payload(logged(0), 1, logReq, logResp)
	p.Record.User = "alice"
	l.Log(p)
	p.Record.RequestID = "changed after Log" // Log keeps a copy
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rows := st.all()
	if len(rows) != 1 {
		t.Fatalf("%d rows", len(rows))
	}
	r := rows[0]
	want := sluice.InferenceLogRecord{RequestTime: t0.Add(time.Millisecond), RequestID: "req-00001", ClientRequestID: "c-7",
		Endpoint: "chat", ServedEntity: "gpt-main", StatusCode: 200, ExecutionDurationMs: 1234, SamplingFraction: 1,
		Requester: "k1/alice",
		Request:   `{"model":"chat","messages":[{"role":"user","content":"My card is [CARD_1], mail [EMAIL_1]"}]}`,
		Response:  `{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assistant","content":"Noted [EMAIL_1]."}}],"usage":{"total_tokens":12}}`,
	}
	if r != want {
		t.Errorf("row\n  %+v\nwant\n  %+v", r, want)
	}
	if !json.Valid([]byte(r.Request)) || !json.Valid([]byte(r.Response)) {
		t.Error("masked payloads are not JSON")
	}
}

// TestLogStream: a stream's events are logged with values masked even
// when split across deltas.
func TestLogStream(t *testing.T) {
	st := &memLog{}
	l := aigateway.NewInferenceLogger(st, aigateway.LoggerOptions{})
	events := `{"choices":[{"delta":{"content":"SSN 219-4"}}]}` + "\n" + `{"choices":[{"delta":{"content":"5-6789."}}]}`
	l.Log(payload(logged(1), 1, `{"model":"chat","stream":true,"prompt":"x"}`, events))
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := st.all()[0].Response; strings.Contains(got, "219") || strings.Contains(got, "6789") || !strings.Contains(got, "[SSN_1]") {
		t.Errorf("stream logged as %s", got)
	}
}

func TestLogSampling(t *testing.T) {
	st := &memLog{}
	r := rand.New(rand.NewPCG(1, 2))
	const n = 10_000
	l := aigateway.NewInferenceLogger(st, aigateway.LoggerOptions{Random: r.Float64, Queue: n})
	ep := logged(0.25)
	for i := range n {
		l.Log(payload(ep, i, `{"prompt":"hi"}`, `{"choices":[{"text":"ok"}]}`))
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rows := st.all()
	if got := float64(len(rows)) / n; got < 0.23 || got > 0.27 {
		t.Errorf("logged %d of %d (%.3f), want 0.25 ± 0.02", len(rows), n, got)
	}
	for _, r := range rows {
		if r.SamplingFraction != 0.25 {
			t.Fatalf("row has sampling fraction %v", r.SamplingFraction)
		}
	}
	if l.Dropped() != 0 {
		t.Errorf("dropped %d", l.Dropped())
	}
}

func TestLogNotEnabled(t *testing.T) {
	st := &memLog{}
	l := aigateway.NewInferenceLogger(st, aigateway.LoggerOptions{})
	ep := logged(1)
	ep.Gateway.InferenceTableConfig.Enabled = false
	l.Log(payload(ep, 1, "{}", "{}"))
	l.Log(&proxy.Payload{Endpoint: ep}) // no record: ignored
	if err := l.Close(context.Background()); err != nil || len(st.all()) != 0 {
		t.Fatalf("logged %d rows for a disabled inference table (err %v)", len(st.all()), err)
	}
}

func TestLogOverCap(t *testing.T) {
	st := &memLog{}
	l := aigateway.NewInferenceLogger(st, aigateway.LoggerOptions{})
	big := `{"prompt":"` + strings.Repeat("a", proxy.MaxPayloadBytes) + `"}`
	l.Log(payload(logged(1), 1, big, logResp))
	p := payload(logged(1), 2, logReq, strings.Repeat("b", proxy.MaxPayloadBytes+1))
	p.Record.Status = 502
	l.Log(p)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rows := st.all()
	if len(rows) != 2 {
		t.Fatalf("%d rows, want one per call", len(rows))
	}
	if rows[0].Request != "" || !strings.Contains(rows[0].Response, "[EMAIL_1]") {
		t.Errorf("over-cap request logged: %d bytes, response %q", len(rows[0].Request), rows[0].Response)
	}
	if rows[1].Response != "" || rows[1].StatusCode != 502 || !strings.Contains(rows[1].Request, "[CARD_1]") {
		t.Errorf("over-cap response logged: %d bytes, status %d", len(rows[1].Response), rows[1].StatusCode)
	}
}

// TestLogQueueFull: with nothing writing, Log drops what does not fit and
// counts it instead of blocking.
func TestLogQueueFull(t *testing.T) {
	st := &memLog{}
	l := aigateway.NewInferenceLogger(st, aigateway.LoggerOptions{Queue: 2})
	for i := range 5 {
		l.Log(payload(logged(1), i, logReq, logResp))
	}
	if l.Dropped() != 3 {
		t.Errorf("Dropped = %d, want 3", l.Dropped())
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(st.all()) != 2 {
		t.Errorf("%d rows written, want the 2 queued", len(st.all()))
	}
	l.Log(payload(logged(1), 9, logReq, logResp))
	if l.Dropped() != 4 {
		t.Errorf("a payload logged after Close was not dropped")
	}

	// The queue is also bounded in bytes.
	st = &memLog{}
	l = aigateway.NewInferenceLogger(st, aigateway.LoggerOptions{QueueBytes: 3 * int64(len(logReq)+len(logResp))})
	for i := range 5 {
		l.Log(payload(logged(1), i, logReq, logResp))
	}
	if l.Dropped() != 2 {
		t.Errorf("Dropped = %d, want 2 past the byte bound", l.Dropped())
	}
	l.Close(context.Background())
}

// TestLogRunAndClose: Run writes in batches; Close stops it and flushes
// the rest; a Run whose ctx ended leaves its rows to Close.
func TestLogRunAndClose(t *testing.T) {
	for _, cancel := range []bool{false, true} {
		t.Run(fmt.Sprintf("cancel=%v", cancel), func(t *testing.T) {
			st := &memLog{}
			l := aigateway.NewInferenceLogger(st, aigateway.LoggerOptions{Flush: time.Hour})
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			ran := make(chan error, 1)
			go func() { ran <- l.Run(ctx) }()
			const n = 1500 // nearly three full batches
			for i := range n {
				l.Log(payload(logged(1), i, logReq, logResp))
			}
			if cancel {
				stop()
				if err := <-ran; !errors.Is(err, context.Canceled) {
					t.Fatalf("Run = %v, want context.Canceled", err)
				}
			}
			if err := l.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !cancel {
				if err := <-ran; err != nil {
					t.Fatalf("Run = %v", err)
				}
			}
			if got := len(st.all()); got != n || l.Dropped() != 0 {
				t.Fatalf("%d rows written, %d dropped; want %d and 0", got, l.Dropped(), n)
			}
			if err := l.Run(context.Background()); err == nil {
				t.Error("Run after Close ran")
			}
		})
	}
}

func TestLogStoreFailure(t *testing.T) {
	st := &memLog{fail: errors.New("disk full")}
	l := aigateway.NewInferenceLogger(st, aigateway.LoggerOptions{})
	for i := range 3 {
		l.Log(payload(logged(1), i, logReq, logResp))
	}
	if err := l.Close(context.Background()); err == nil || l.Failed() != 3 {
		t.Fatalf("Close = %v, Failed = %d; want the store's error and 3", err, l.Failed())
	}
}

// TestLogSQLite writes through the SQLite store once it keeps the
// inference log.
func TestLogSQLite(t *testing.T) {
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "s.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var anyStore any = db
	st, ok := anyStore.(sluice.InferenceLogStore)
	if !ok {
		t.Skip("store/sqlite does not implement sluice.InferenceLogStore yet")
	}
	l := aigateway.NewInferenceLogger(st, aigateway.LoggerOptions{})
	ctx := context.Background()
	go l.Run(ctx)
	for i := range 20 {
		l.Log(payload(logged(1), i, logReq, logResp))
	}
	l.Log(payload(logged(1), 0, logReq, logResp)) // a repeat is skipped
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := st.InferenceLog(ctx, "chat", time.Time{}, time.Time{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 20 {
		t.Fatalf("%d rows, want 20", len(rows))
	}
	r := rows[len(rows)-1] // newest first
	if r.RequestID != "req-00000" || !r.RequestTime.Equal(t0) || r.Requester != "k1" || r.ExecutionDurationMs != 1234 ||
		!strings.Contains(r.Request, "[CARD_1]") || bytes.Contains([]byte(r.Request+r.Response), []byte("example.com")) {
		t.Errorf("row read back: %+v", r)
	}
}
