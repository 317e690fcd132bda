// Package sse reads server-sent event streams (text/event-stream) such as
// the streaming responses of OpenAI-compatible upstreams.
//
// The Reader is built for a proxy: every event comes with the exact bytes it
// was made of, so the caller can forward the stream verbatim while looking
// at each event's data. Concatenating Raw of every event returned gives the
// input back byte for byte. Reading does not allocate per event.
//
//	r := sse.NewReader(resp.Body, 1<<20)
//	for {
//		ev, err := r.Next()
//		if err != nil {
//			break // io.EOF: clean end; io.ErrUnexpectedEOF: cut mid-event
//		}
//		w.Write(ev.Raw)
//		if ev.Data != nil {
//			inspect(ev.Data)
//		}
//	}
//
// Lines may end in "\n", "\r\n" or "\r" (the three endings of the SSE
// specification); a UTF-8 byte order mark at the start of the stream is
// ignored when parsing, and kept in Raw.
package sse

import (
	"bytes"
	"errors"
	"io"
)

// DefaultMaxEvent is the event size limit used when NewReader is given a
// limit of zero or less.
const DefaultMaxEvent = 1 << 20

// ErrTooLarge is returned by Next when an event is longer than the limit
// given to NewReader.
var ErrTooLarge = errors.New("sse: event too large")

// Event is one block of a stream: the lines up to and including a blank
// line.
type Event struct {
	// Raw is the exact bytes of the event, its terminating blank line
	// included, ready to be forwarded. When a "\r\n" was split across reads
	// and the event ended at its "\r", the "\n" starts the next event's Raw.
	Raw []byte
	// Data is the value of the event's data lines joined with "\n". It is
	// nil when the event had no data line (a comment such as a keep-alive,
	// or a stray blank line) and empty but not nil for "data:" with nothing
	// after it.
	Data []byte
	// Name is the value of the last "event:" line, or "".
	Name string
}

// Reader reads events from a stream. It is not safe for concurrent use.
type Reader struct {
	rd      io.Reader
	buf     []byte
	start   int // buf[start:end] holds bytes not yet returned
	end     int
	max     int
	readErr error // from rd; reported once buffered bytes are used up
	err     error // sticky result of Next
	skipLF  bool  // the last line ended in a "\r" at the end of the buffer
	begun   bool  // the first line has been seen (for the BOM)
	spans   []span
	data    []byte
	name    string // the last Name returned, reused to avoid allocating
}

// span is a data value's position, relative to the event's start.
type span struct{ from, to int }

// NewReader returns a Reader reading from r that refuses events longer than
// maxEvent bytes (DefaultMaxEvent if maxEvent <= 0).
func NewReader(r io.Reader, maxEvent int) *Reader {
	if maxEvent <= 0 {
		maxEvent = DefaultMaxEvent
	}
	return &Reader{rd: r, max: maxEvent}
}

// Next returns the next event.
//
// At the end of the stream it returns io.EOF. When the stream ends in the
// middle of an event, that event is returned first with a nil error (its
// Raw lacks the terminating blank line and the last line may be cut), and
// the following call returns io.ErrUnexpectedEOF. A read error other than
// io.EOF is reported the same way, in place of io.ErrUnexpectedEOF. An event
// longer than the limit gives ErrTooLarge. Once Next has returned an error
// it returns the same error on every later call.
//
// The slices of the returned Event are valid only until the next call to
// Next; copy them to keep them.
func (r *Reader) Next() (Event, error) {
	if r.err != nil {
		return Event{}, r.err
	}
	if r.start == r.end {
		r.start, r.end = 0, 0
	}
	r.spans = r.spans[:0]
	nameFrom, nameTo := -1, -1
	off := 0       // start of the current line, relative to r.start
	seen := 0      // bytes of the current line known to hold no line break
	onlyLF := true // nothing but a carried-over "\n" has been seen
	for {
		rest := r.buf[r.start+off : r.end]
		if r.skipLF {
			if len(rest) == 0 {
				if !r.fill() {
					return r.atEnd(off, onlyLF, nameFrom, nameTo)
				}
				continue
			}
			r.skipLF = false
			if rest[0] == '\n' {
				off++
				rest = rest[1:]
			}
		}
		n, term := lineEnd(rest[seen:])
		n += seen
		if term == 0 {
			seen = len(rest) // a long line is not scanned again after each read
			if r.end-r.start >= r.max {
				r.err = ErrTooLarge
				return Event{}, r.err
			}
			if !r.fill() {
				return r.atEnd(off, onlyLF, nameFrom, nameTo)
			}
			continue
		}
		onlyLF, seen = false, 0
		if term == 1 && rest[n] == '\r' && n+1 == len(rest) {
			r.skipLF = true // a "\n" may follow in the next read
		}
		lineOff := off
		off += n + term
		from := r.bomLen(rest[:n])
		if n == from {
			return r.dispatch(off, nameFrom, nameTo)
		}
		if f, t, kind := field(rest[:n], from); kind != fieldOther {
			if kind == fieldData {
				r.spans = append(r.spans, span{lineOff + f, lineOff + t})
			} else {
				nameFrom, nameTo = lineOff+f, lineOff+t
			}
		}
	}
}

// lineEnd returns the length of the line at the start of b and the length
// of its terminator, or term 0 if b holds no complete line.
func lineEnd(b []byte) (n, term int) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		if k := bytes.IndexByte(b[:i], '\r'); k >= 0 {
			if k == i-1 {
				return k, 2
			}
			return k, 1
		}
		return i, 1
	}
	if k := bytes.IndexByte(b, '\r'); k >= 0 {
		return k, 1
	}
	return 0, 0
}

type fieldKind uint8

const (
	fieldOther fieldKind = iota
	fieldData
	fieldEvent
)

// bomLen returns the length of the byte order mark that starts line if line
// is the first line of the stream, else 0.
func (r *Reader) bomLen(line []byte) int {
	if r.begun {
		return 0
	}
	r.begun = true
	if bytes.HasPrefix(line, bom) {
		return len(bom)
	}
	return 0
}

// field parses a line whose content starts at from and returns the bounds
// of its value within the line when it is a data or event field.
func field(line []byte, from int) (vfrom, to int, kind fieldKind) {
	l := line[from:]
	if len(l) == 0 || l[0] == ':' {
		return 0, 0, fieldOther
	}
	name := l
	vfrom = len(line)
	if c := bytes.IndexByte(l, ':'); c >= 0 {
		name = l[:c]
		vfrom = from + c + 1
		if vfrom < len(line) && line[vfrom] == ' ' {
			vfrom++
		}
	}
	switch string(name) {
	case "data":
		return vfrom, len(line), fieldData
	case "event":
		return vfrom, len(line), fieldEvent
	}
	return 0, 0, fieldOther
}

var bom = []byte("\xEF\xBB\xBF")

// dispatch returns the event made of the next n buffered bytes.
func (r *Reader) dispatch(n, nameFrom, nameTo int) (Event, error) {
	raw := r.buf[r.start : r.start+n : r.start+n]
	if len(raw) > r.max {
		r.err = ErrTooLarge
		return Event{}, r.err
	}
	ev := Event{Raw: raw}
	switch len(r.spans) {
	case 0:
	case 1:
		s := r.spans[0]
		ev.Data = raw[s.from:s.to:s.to]
	default:
		d := r.data[:0]
		for i, s := range r.spans {
			if i > 0 {
				d = append(d, '\n')
			}
			d = append(d, raw[s.from:s.to]...)
		}
		if d == nil {
			d = []byte{}
		}
		r.data = d
		ev.Data = d
	}
	if nameFrom >= 0 {
		if name := raw[nameFrom:nameTo]; string(name) != r.name {
			r.name = string(name)
		}
		ev.Name = r.name
	}
	r.start += n
	return ev, nil
}

// atEnd handles the end of the input with off bytes of the current event
// scanned: it returns what is left as a last event and arranges for the
// following call to report how the stream ended.
func (r *Reader) atEnd(off int, onlyLF bool, nameFrom, nameTo int) (Event, error) {
	endErr := r.readErr
	if r.start == r.end {
		r.err = endErr
		return Event{}, r.err
	}
	if !onlyLF || r.end-r.start > off {
		if endErr == io.EOF {
			endErr = io.ErrUnexpectedEOF
		}
		// The last line has no terminator; parse it as a line all the same.
		if line := r.buf[r.start+off : r.end]; len(line) > 0 {
			if f, t, kind := field(line, r.bomLen(line)); kind == fieldData {
				r.spans = append(r.spans, span{off + f, off + t})
			} else if kind == fieldEvent {
				nameFrom, nameTo = off+f, off+t
			}
		}
	}
	ev, err := r.dispatch(r.end-r.start, nameFrom, nameTo)
	if err != nil {
		return ev, err
	}
	r.err = endErr
	return ev, nil
}

// maxEmptyReads bounds the reads that return neither data nor an error.
const maxEmptyReads = 100

// fill reads more input into the buffer. It reports false when there is no
// more to read; r.readErr then says why.
func (r *Reader) fill() bool {
	if r.readErr != nil {
		return false
	}
	if r.buf == nil {
		r.buf = make([]byte, 4096)
	}
	if r.end == len(r.buf) {
		if r.start > 0 {
			r.end = copy(r.buf, r.buf[r.start:r.end])
			r.start = 0
		} else {
			nb := make([]byte, min(2*len(r.buf), max(r.max, len(r.buf)+1)))
			r.end = copy(nb, r.buf[r.start:r.end])
			r.buf = nb
		}
	}
	for range maxEmptyReads {
		n, err := r.rd.Read(r.buf[r.end:])
		if n < 0 || n > len(r.buf)-r.end {
			r.readErr = errors.New("sse: reader returned invalid count")
			return false
		}
		r.end += n
		if err != nil {
			r.readErr = err
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
	r.readErr = io.ErrNoProgress
	return false
}
