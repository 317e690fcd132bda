package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/sse"
	"github.com/sluice-gateway/sluice/usage"
)

// maxEvent bounds one SSE event from an upstream.
const maxEvent = 4 << 20

// relayStream relays an SSE answer event by event, flushing each one as it
// arrives. Headers go out with the first event, so an upstream that fails
// before producing anything is still answered with a proper error status.
// The usage-only chunk Sluice asked for is removed if the client did not
// ask for it; [DONE] is held back until the usage record is committed.
func (c *call) relayStream(ctx context.Context, resp *http.Response) error {
	rd := sse.NewReader(resp.Body, maxEvent)
	rc := http.NewResponseController(c.w)
	var (
		u        usage.Usage
		gotUsage bool
		raw      []byte // chunk data, kept in case no usage arrives
		ends     []int  // end of each chunk in raw
		done     []byte // the upstream's [DONE] event
		readErr  error
		writeErr error
	)
	for {
		ev, err := rd.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				readErr = err
			} else {
				readErr = io.ErrUnexpectedEOF // ended without [DONE]
			}
			break
		}
		ch := usage.ParseChunk(ev.Data)
		if ch.Done {
			done = append(done, ev.Raw...)
			break
		}
		if ch.Model != "" && c.rec.UpstreamModel == "" {
			c.rec.UpstreamModel = ch.Model
		}
		if ch.HasUsage {
			u, gotUsage = ch.Usage, true
		}
		if !gotUsage && len(ev.Data) > 0 {
			// Keep the data; its text is extracted only if the stream
			// ends without usage, which is rare.
			raw = append(raw, ev.Data...)
			ends = append(ends, len(raw))
		}
		if ch.UsageOnly && !c.req.includeUsage {
			continue
		}
		if c.ep.CapturePayloads {
			c.capture = appendCapped(c.capture, ev.Data)
			c.capture = appendCapped(c.capture, []byte("\n"))
		}
		if writeErr = c.writeEvent(rc, ev.Raw); writeErr != nil {
			break
		}
	}
	clientGone := writeErr != nil || c.r.Context().Err() != nil
	if gotUsage {
		c.setUsage(u, sluice.UsageUpstream)
	} else {
		var text []byte
		start := 0
		for _, end := range ends {
			text = usage.AppendText(text, raw[start:end])
			start = end
		}
		c.estimate(text)
	}
	switch {
	case clientGone:
		c.rec.Status, c.rec.ErrorClass = 499, sluice.ErrClassClientDisconnect
		if c.wroteHeader {
			c.rec.Status = http.StatusOK
		}
		c.commit()
		return nil
	case done == nil:
		e := &apierr.Error{Status: 502, Type: "server_error", Code: "upstream_error",
			Msg:   "The upstream '" + c.tgt.Upstream.Name + "' broke off its stream.",
			Class: sluice.ErrClassUpstreamReset, Err: readErr}
		if errors.Is(context.Cause(ctx), errUpstreamTimeout) {
			e.Status, e.Code, e.Class = 504, "upstream_timeout", sluice.ErrClassUpstreamTimeout
		}
		if !c.wroteHeader {
			return e // answered with a status by the caller
		}
		c.rec.Status, c.rec.ErrorClass = http.StatusOK, e.Class
		c.p.o.Logger.Warn("upstream stream cut", "request_id", c.rec.RequestID, "upstream", c.tgt.Upstream.Name, "err", readErr)
		c.commit()
		// Tell the client in the stream (SDKs raise on an "error" event),
		// then cut the connection so no client mistakes this for a clean end.
		c.writeEvent(rc, errorEvent(e))
		panic(http.ErrAbortHandler)
	}
	c.rec.Status = http.StatusOK
	c.commit()
	if !c.wroteHeader {
		c.startStream()
	}
	c.writeEvent(rc, done)
	return nil
}

func (c *call) startStream() {
	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	c.w.WriteHeader(http.StatusOK)
	c.wroteHeader = true
}

// writeEvent writes one event with its own deadline and flushes it.
func (c *call) writeEvent(rc *http.ResponseController, raw []byte) error {
	if !c.wroteHeader {
		c.startStream()
		c.rec.TTFT = c.p.o.Now().Sub(c.start)
	}
	rc.SetWriteDeadline(c.p.o.Now().Add(c.p.o.StreamWriteTimeout))
	if _, err := c.w.Write(raw); err != nil {
		return err
	}
	return rc.Flush()
}

func errorEvent(e *apierr.Error) []byte {
	b := append([]byte("data: "), apierr.OpenAIBody(e)...)
	return append(b, "\n\n"...)
}

// parseOpenAIError reads an OpenAI-shaped error body.
func parseOpenAIError(raw []byte) (msg, typ, param, code string, ok bool) {
	var b struct {
		Error *struct {
			Message string          `json:"message"`
			Type    string          `json:"type"`
			Param   *string         `json:"param"`
			Code    json.RawMessage `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &b) != nil || b.Error == nil || b.Error.Message == "" {
		return "", "", "", "", false
	}
	if b.Error.Param != nil {
		param = *b.Error.Param
	}
	var s string
	if json.Unmarshal(b.Error.Code, &s) == nil {
		code = s
	}
	return b.Error.Message, b.Error.Type, param, code, true
}
