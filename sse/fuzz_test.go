package sse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// refEvent is what the reference parser finds in a block.
type refEvent struct {
	data    string
	hasData bool
	name    string
}

// refParse is a direct reading of the SSE parsing rules over a whole input:
// it splits lines at "\r\n", "\n" or "\r", and ends a block at each blank
// line. cut reports input left after the last blank line.
func refParse(in []byte) (evs []refEvent, cut bool) {
	var cur refEvent
	var data []string
	first := true
	for len(in) > 0 {
		i := bytes.IndexAny(in, "\r\n")
		var line []byte
		if i < 0 {
			line, in = in, nil
			cut = true
		} else {
			line = in[:i]
			if in[i] == '\r' && i+1 < len(in) && in[i+1] == '\n' {
				in = in[i+2:]
			} else {
				in = in[i+1:]
			}
		}
		if first {
			first = false
			line = bytes.TrimPrefix(line, []byte("\xEF\xBB\xBF"))
		}
		if len(line) == 0 && i >= 0 {
			cur.data = strings.Join(data, "\n")
			evs = append(evs, cur)
			cur, data, cut = refEvent{}, nil, false
			continue
		}
		cut = true
		if len(line) == 0 || line[0] == ':' {
			continue
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if found {
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		switch string(name) {
		case "data":
			data = append(data, string(value))
			cur.hasData = true
		case "event":
			cur.name = string(value)
		}
	}
	if cut {
		cur.data = strings.Join(data, "\n")
		evs = append(evs, cur)
	}
	return evs, cut
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), c.n, len(c.b))
	copy(p, c.b[:k])
	c.b = c.b[k:]
	return k, nil
}

func FuzzReader(f *testing.F) {
	f.Add([]byte("data: {\"a\":1}\n\ndata: [DONE]\n\n"), uint8(0))
	f.Add([]byte("event: x\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n"), uint8(1))
	f.Add([]byte("data: 1\r\rdata: 2\r\r\n"), uint8(3))
	f.Add([]byte(": ping\n\n\ndata\ndata:\ndata:  x\n\n"), uint8(2))
	f.Add([]byte("\xEF\xBB\xBF\ndata: cut"), uint8(5))
	f.Add([]byte("data: "+strings.Repeat("y", 200)+"\n\n"), uint8(7))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		n := int(chunk)
		if n == 0 {
			n = len(in) + 1
		}
		const limit = 256
		r := NewReader(&chunkReader{b: in, n: n}, limit)
		var raw bytes.Buffer
		var evs []refEvent
		var err error
		lastComplete := true
		for range len(in) + 2 {
			var ev Event
			ev, err = r.Next()
			if err != nil {
				break
			}
			if len(ev.Raw) == 0 {
				t.Fatal("empty event")
			}
			if len(ev.Raw) > limit {
				t.Fatalf("event of %d bytes over the limit", len(ev.Raw))
			}
			carried := bytes.HasSuffix(raw.Bytes(), []byte("\r")) && bytes.Equal(ev.Raw, []byte("\n"))
			raw.Write(ev.Raw)
			last := ev.Raw[len(ev.Raw)-1]
			lastComplete = last == '\n' || last == '\r'
			if carried {
				if _, err := r.Next(); err != io.EOF {
					t.Fatalf("a lone carried \"\\n\" is not last: %v", err)
				}
				continue // the tail of a "\r\n" split across reads
			}
			evs = append(evs, refEvent{string(ev.Data), ev.Data != nil, ev.Name})
		}
		if errors.Is(err, ErrTooLarge) {
			return
		}
		if err == nil {
			t.Fatal("reader did not stop")
		}
		if !bytes.Equal(raw.Bytes(), in) {
			t.Fatalf("concatenated Raw differs from input:\n%q\n%q", raw.Bytes(), in)
		}
		want, cut := refParse(in)
		if cut != (err == io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v, reference cut = %v", err, cut)
		}
		if err == io.EOF && len(in) > 0 && !lastComplete {
			t.Fatal("clean end after an event that does not end a line")
		}
		if len(evs) != len(want) {
			t.Fatalf("got %d events %+v, reference %d %+v", len(evs), evs, len(want), want)
		}
		for i := range want {
			if evs[i] != want[i] {
				t.Fatalf("event %d = %+v, reference %+v", i, evs[i], want[i])
			}
		}
	})
}
