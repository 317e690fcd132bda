package sse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

type got struct {
	raw, data string
	hasData   bool
	name      string
}

// readAll reads every event from r and returns them with the final error.
func readAll(t testing.TB, r *Reader) ([]got, error) {
	t.Helper()
	var evs []got
	for range 100000 {
		ev, err := r.Next()
		if err != nil {
			return evs, err
		}
		evs = append(evs, got{string(ev.Raw), string(ev.Data), ev.Data != nil, ev.Name})
	}
	t.Fatal("reader did not stop")
	return nil, nil
}

func TestReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []got
		err  error
	}{
		{
			name: "openai chunks",
			in:   "data: {\"a\":1}\n\ndata: [DONE]\n\n",
			want: []got{
				{"data: {\"a\":1}\n\n", `{"a":1}`, true, ""},
				{"data: [DONE]\n\n", "[DONE]", true, ""},
			},
			err: io.EOF,
		},
		{
			name: "crlf",
			in:   "event: x\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n",
			want: []got{
				{"event: x\r\ndata: 1\r\n\r\n", "1", true, "x"},
				{"data: 2\r\n\r\n", "2", true, ""},
			},
			err: io.EOF,
		},
		{
			name: "cr",
			in:   "data: 1\r\rdata: 2\r\r",
			want: []got{
				{"data: 1\r\r", "1", true, ""},
				{"data: 2\r\r", "2", true, ""},
			},
			err: io.EOF,
		},
		{
			name: "mixed endings",
			in:   "data: a\rdata: b\r\ndata: c\n\n",
			want: []got{{"data: a\rdata: b\r\ndata: c\n\n", "a\nb\nc", true, ""}},
			err:  io.EOF,
		},
		{
			name: "comments and keep-alives",
			in:   ": ping\n\n:x\ndata: 1\n: y\n\n",
			want: []got{
				{": ping\n\n", "", false, ""},
				{":x\ndata: 1\n: y\n\n", "1", true, ""},
			},
			err: io.EOF,
		},
		{
			name: "data spacing",
			in:   "data:x\n\ndata:  x\n\ndata\n\ndata:\n\n",
			want: []got{
				{"data:x\n\n", "x", true, ""},
				{"data:  x\n\n", " x", true, ""},
				{"data\n\n", "", true, ""},
				{"data:\n\n", "", true, ""},
			},
			err: io.EOF,
		},
		{
			name: "multiple data lines",
			in:   "data: a\ndata:\ndata: c\n\n",
			want: []got{{"data: a\ndata:\ndata: c\n\n", "a\n\nc", true, ""}},
			err:  io.EOF,
		},
		{
			name: "other fields ignored, last event name wins",
			in:   "id: 7\nretry: 10\nevent: a\nevent: b\nfoo: bar\ndata: d\n\n",
			want: []got{{"id: 7\nretry: 10\nevent: a\nevent: b\nfoo: bar\ndata: d\n\n", "d", true, "b"}},
			err:  io.EOF,
		},
		{
			name: "field names are case sensitive",
			in:   "Data: x\nDATA: y\n\n",
			want: []got{{"Data: x\nDATA: y\n\n", "", false, ""}},
			err:  io.EOF,
		},
		{
			name: "stray blank lines",
			in:   "\ndata: 1\n\n\n",
			want: []got{
				{"\n", "", false, ""},
				{"data: 1\n\n", "1", true, ""},
				{"\n", "", false, ""},
			},
			err: io.EOF,
		},
		{
			name: "byte order mark",
			in:   "\xEF\xBB\xBFdata: 1\n\ndata: \xEF\xBB\xBF\n\n",
			want: []got{
				{"\xEF\xBB\xBFdata: 1\n\n", "1", true, ""},
				{"data: \xEF\xBB\xBF\n\n", "\xEF\xBB\xBF", true, ""},
			},
			err: io.EOF,
		},
		{
			name: "cut after a line",
			in:   "data: 1\n\ndata: 2\n",
			want: []got{
				{"data: 1\n\n", "1", true, ""},
				{"data: 2\n", "2", true, ""},
			},
			err: io.ErrUnexpectedEOF,
		},
		{
			name: "cut mid line",
			in:   "data: 1\n\nevent: e\ndata: {\"cho",
			want: []got{
				{"data: 1\n\n", "1", true, ""},
				{"event: e\ndata: {\"cho", `{"cho`, true, "e"},
			},
			err: io.ErrUnexpectedEOF,
		},
		{
			name: "cut in a comment",
			in:   ": keep",
			want: []got{{": keep", "", false, ""}},
			err:  io.ErrUnexpectedEOF,
		},
		{name: "empty", in: "", err: io.EOF},
	}
	readers := map[string]func(string) io.Reader{
		"whole":   func(s string) io.Reader { return strings.NewReader(s) },
		"onebyte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"dataerr": func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) },
	}
	for _, tt := range tests {
		for rname, mk := range readers {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				r := NewReader(mk(tt.in), 0)
				evs, err := readAll(t, r)
				if rname == "onebyte" {
					evs = mergeCarriedLF(evs)
				}
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				if len(evs) != len(tt.want) {
					t.Fatalf("got %d events %+v, want %d %+v", len(evs), evs, len(tt.want), tt.want)
				}
				for i := range evs {
					if evs[i] != tt.want[i] {
						t.Errorf("event %d = %+v, want %+v", i, evs[i], tt.want[i])
					}
				}
				if _, err2 := r.Next(); err2 != err {
					t.Errorf("second call: err = %v, want sticky %v", err2, err)
				}
			})
		}
	}
}

// mergeCarriedLF moves the "\n" of a "\r\n" split across reads back to the
// event it ends, so that one-byte reads can be compared with whole reads.
func mergeCarriedLF(evs []got) []got {
	var out []got
	for _, e := range evs {
		if len(out) > 0 && strings.HasPrefix(e.raw, "\n") && strings.HasSuffix(out[len(out)-1].raw, "\r") {
			out[len(out)-1].raw += "\n"
			e.raw = e.raw[1:]
			if e.raw == "" {
				continue
			}
		}
		out = append(out, e)
	}
	return out
}

func TestCRLFSplitAcrossReads(t *testing.T) {
	// The event is dispatched at the "\r" without waiting for the "\n",
	// which then opens the next event's Raw.
	r := NewReader(iotest.OneByteReader(strings.NewReader("data: 1\r\n\r\ndata: 2\r\n\r\n")), 0)
	evs, err := readAll(t, r)
	if err != io.EOF {
		t.Fatalf("err = %v", err)
	}
	want := []got{
		{"data: 1\r\n\r", "1", true, ""},
		{"\ndata: 2\r\n\r", "2", true, ""},
		{"\n", "", false, ""},
	}
	if len(evs) != len(want) {
		t.Fatalf("got %+v, want %+v", evs, want)
	}
	for i := range want {
		if evs[i] != want[i] {
			t.Errorf("event %d = %+v, want %+v", i, evs[i], want[i])
		}
	}
}

func TestTooLarge(t *testing.T) {
	for _, in := range []string{
		"data: 0123456789\n\n",      // arrives whole, then found too long
		"data: 0123456789012345678", // never terminated
	} {
		for _, oneByte := range []bool{false, true} {
			var rd io.Reader = strings.NewReader("data: 1\n\n" + in)
			if oneByte {
				rd = iotest.OneByteReader(rd)
			}
			r := NewReader(rd, 12)
			if ev, err := r.Next(); err != nil || string(ev.Data) != "1" {
				t.Fatalf("first event: %q, %v", ev.Data, err)
			}
			if _, err := r.Next(); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("%q oneByte=%v: err = %v, want ErrTooLarge", in, oneByte, err)
			}
			if _, err := r.Next(); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("not sticky: %v", err)
			}
		}
	}
	// An event of exactly the limit is fine.
	r := NewReader(iotest.OneByteReader(strings.NewReader("data: 1234\n\n")), 12)
	if ev, err := r.Next(); err != nil || string(ev.Data) != "1234" {
		t.Fatalf("event at the limit: %q, %v", ev.Data, err)
	}
}

func TestLargeEventGrowsBuffer(t *testing.T) {
	payload := strings.Repeat("x", 100_000)
	in := "data: " + payload + "\ndata: " + payload + "\n\ndata: end\n\n"
	r := NewReader(strings.NewReader(in), 300_000)
	ev, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if string(ev.Data) != payload+"\n"+payload {
		t.Fatalf("data has %d bytes", len(ev.Data))
	}
	if ev, err = r.Next(); err != nil || string(ev.Data) != "end" {
		t.Fatalf("second event: %q, %v", ev.Data, err)
	}
}

func TestReadErrorMidEvent(t *testing.T) {
	boom := errors.New("connection reset")
	rd := io.MultiReader(strings.NewReader("data: 1\n\ndata: 2"), iotest.ErrReader(boom))
	r := NewReader(rd, 0)
	evs, err := readAll(t, r)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	if len(evs) != 2 || evs[1].raw != "data: 2" {
		t.Fatalf("events = %+v", evs)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestNoProgress(t *testing.T) {
	_, err := NewReader(zeroReader{}, 0).Next()
	if !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("err = %v", err)
	}
}

func TestNoAllocationsPerEvent(t *testing.T) {
	stream := benchStream(200)
	br := bytes.NewReader(stream)
	r := NewReader(br, 0)
	allocs := testing.AllocsPerRun(20, func() {
		br.Reset(stream)
		*r = Reader{rd: br, max: DefaultMaxEvent, buf: r.buf, data: r.data, spans: r.spans, name: r.name}
		n := 0
		for {
			_, err := r.Next()
			if err != nil {
				break
			}
			n++
		}
		if n != 203 {
			t.Fatalf("read %d events", n)
		}
	})
	if allocs > 0 {
		t.Fatalf("%.1f allocations per stream of 203 events, want 0", allocs)
	}
}

// benchStream builds an OpenAI-style chat stream of n content chunks.
func benchStream(n int) []byte {
	var b bytes.Buffer
	b.WriteString("event: message\ndata: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n")
	for range n {
		b.WriteString("event: message\ndata: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" hello\"},\"finish_reason\":null}]}\n\n")
	}
	b.WriteString(": keep-alive\n\n")
	b.WriteString("data: [DONE]\n\n")
	return b.Bytes()
}

func BenchmarkReader(b *testing.B) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"lf", benchStream(500)},
		{"crlf", bytes.ReplaceAll(benchStream(500), []byte("\n"), []byte("\r\n"))},
		{"multiline", bytes.ReplaceAll(benchStream(500), []byte(`"delta"`), []byte("\ndata: \"delta\""))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			br := bytes.NewReader(tc.in)
			events := 0
			b.SetBytes(int64(len(tc.in)))
			b.ReportAllocs()
			for b.Loop() {
				br.Reset(tc.in)
				r := NewReader(br, 0)
				for {
					if _, err := r.Next(); err != nil {
						break
					}
					events++
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
		})
	}
}
