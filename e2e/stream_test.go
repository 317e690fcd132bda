package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/simulator"
	"github.com/sluice-gateway/sluice/usage"
)

// streamed is what an SDK client saw of a chat stream.
type streamed struct {
	id       string
	content  string
	chunks   int      // chunks with content
	usage    []tokens // usage the client received, one per usage chunk
	arrivals []time.Duration
	err      error
}

// streamChat streams a chat completion through the SDK and collects it.
// stop, if not nil, is asked after each chunk whether to stop reading.
func streamChat(t *testing.T, c openai.Client, ctx context.Context, params openai.ChatCompletionNewParams, stop func(s *streamed) bool) streamed {
	t.Helper()
	var resp *http.Response
	start := time.Now()
	st := c.Chat.Completions.NewStreaming(ctx, params, option.WithResponseInto(&resp))
	defer st.Close()
	var s streamed
	if resp != nil {
		s.id = resp.Header.Get("X-Request-Id")
	}
	var b strings.Builder
	for st.Next() {
		ch := st.Current()
		if ch.JSON.Usage.Valid() {
			s.usage = append(s.usage, tokens{ch.Usage.PromptTokens, ch.Usage.CompletionTokens, ch.Usage.TotalTokens})
		}
		for _, choice := range ch.Choices {
			if choice.Delta.Content != "" {
				b.WriteString(choice.Delta.Content)
				s.chunks++
				s.arrivals = append(s.arrivals, time.Since(start))
			}
		}
		if stop != nil && stop(&s) {
			break
		}
	}
	s.content = b.String()
	s.err = st.Err()
	return s
}

// upstreamText is the generated text of an upstream's SSE answer.
func upstreamText(resp []byte) string {
	var b strings.Builder
	for _, d := range sseData(resp) {
		var ch struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if json.Unmarshal(d, &ch) != nil {
			continue
		}
		for _, c := range ch.Choices {
			b.WriteString(c.Delta.Content)
		}
	}
	return b.String()
}

// TestStreamUsage: Sluice always asks the upstream for stream usage; the
// usage chunk reaches the client only if it asked for it, and the record
// carries the upstream's exact counts either way.
func TestStreamUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		opts  openai.ChatCompletionStreamOptionsParam
		asked bool
	}{
		{name: "client did not ask for usage"},
		{name: "client declined usage", opts: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(false)}},
		{name: "client asked for usage", opts: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}, asked: true},
	} {
		asked := tc.asked
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newEnv(t, withSimulator(simulator.Options{OutputTokens: 24}))
			params := chatParams(epChat)
			params.StreamOptions = tc.opts
			s := streamChat(t, env.Client, context.Background(), params, nil)
			if s.err != nil {
				t.Fatalf("stream: %v", s.err)
			}

			up := env.Up.only(t)
			so, _ := up.JSON(t)["stream_options"].(map[string]any)
			if so["include_usage"] != true {
				t.Errorf("Sluice did not ask the upstream for usage: stream_options = %v", up.JSON(t)["stream_options"])
			}
			reported, model := up.Reported(t)
			if want := upstreamText(up.Response()); s.content != want || want == "" {
				t.Errorf("the client got text %q, the upstream sent %q", s.content, want)
			}
			switch {
			case asked && (len(s.usage) != 1 || s.usage[0] != reported):
				t.Errorf("the client asked for usage and got %v, want the upstream's %+v once", s.usage, reported)
			case !asked && len(s.usage) != 0:
				t.Errorf("the client did not ask for usage but got usage chunks %v", s.usage)
			}
			checkSuccess(t, env, env.record(t, s.id), epChat, sluice.APIChat, true, reported, model)
		})
	}
}

// TestStreamUnbuffered: events reach the client as the upstream produces
// them. With a paced upstream the first chunk must arrive long before the
// last; a buffering gateway would deliver them together.
func TestStreamUnbuffered(t *testing.T) {
	t.Parallel()
	const n = 30
	env := newEnv(t, withSimulator(simulator.Options{TokensPerSecond: 50, OutputTokens: n}))
	s := streamChat(t, env.Client, context.Background(), chatParams(epChat), nil)
	if s.err != nil {
		t.Fatalf("stream: %v", s.err)
	}
	if s.chunks < n/2 {
		t.Fatalf("got %d content chunks, want about %d", s.chunks, n)
	}
	first, last := s.arrivals[0], s.arrivals[len(s.arrivals)-1]
	mid := s.arrivals[len(s.arrivals)/2]
	t.Logf("%d chunks: first after %v, middle after %v, last after %v", s.chunks, first, mid, last)
	if first > last/4 {
		t.Errorf("the first chunk arrived after %v, the last after %v: the stream was held back", first, last)
	}
	if mid < last/4 || mid > last*3/4 {
		t.Errorf("the middle chunk arrived after %v of %v: chunks arrived in bursts, not as produced", mid, last)
	}
}

// TestStreamWithoutUpstreamUsage: an upstream that reports no usage is
// metered with the tokenizer and the record says so.
func TestStreamWithoutUpstreamUsage(t *testing.T) {
	t.Parallel()
	const outputTokens = 40
	var counter usage.Counter
	prompt := chatParams(epChat)
	// Tokens of the prompt's text alone; the estimate adds a few per message.
	promptText := int64(counter.Count(chatModel, "You are a terse assistant.") +
		counter.Count(chatModel, "Tell the ledger a short story about counting tokens."))

	check := func(t *testing.T, env *env, rec sluice.UsageRecord, content string, stream bool) {
		t.Helper()
		if bytes.Contains(env.Up.only(t).Response(), []byte(`"usage":{`)) {
			t.Fatalf("the simulator with OmitUsage reported usage")
		}
		if rec.UsageSource != sluice.UsageEstimated || rec.Status != http.StatusOK || rec.ErrorClass != "" || rec.Stream != stream {
			t.Errorf("record: usage %q status %d class %q stream %v; want estimated 200 success stream=%v",
				rec.UsageSource, rec.Status, rec.ErrorClass, rec.Stream, stream)
		}
		want := int64(counter.Count(chatModel, content))
		if d := rec.CompletionTokens - want; rec.CompletionTokens <= 0 || d < -1 || d > 1 {
			t.Errorf("estimated %d completion tokens; the tokenizer counts %d in the text the client got", rec.CompletionTokens, want)
		}
		if rec.CompletionTokens < outputTokens/2 || rec.CompletionTokens > outputTokens*2 {
			t.Errorf("estimated %d completion tokens for an answer of %d tokens", rec.CompletionTokens, outputTokens)
		}
		if rec.PromptTokens < promptText || rec.PromptTokens > promptText+20 {
			t.Errorf("estimated %d prompt tokens; the prompt's text alone has %d", rec.PromptTokens, promptText)
		}
		if rec.TotalTokens != rec.PromptTokens+rec.CompletionTokens {
			t.Errorf("total %d != %d + %d", rec.TotalTokens, rec.PromptTokens, rec.CompletionTokens)
		}
		if want := inputMicros*rec.PromptTokens + outputMicros*rec.CompletionTokens; rec.CostMicros != want {
			t.Errorf("cost %d µ$, want %d for the estimated tokens", rec.CostMicros, want)
		}
	}

	t.Run("streaming", func(t *testing.T) {
		t.Parallel()
		env := newEnv(t, withSimulator(simulator.Options{OutputTokens: outputTokens, OmitUsage: true}))
		s := streamChat(t, env.Client, context.Background(), prompt, nil)
		if s.err != nil {
			t.Fatalf("stream: %v", s.err)
		}
		check(t, env, env.record(t, s.id), s.content, true)
	})
	t.Run("not streaming", func(t *testing.T) {
		t.Parallel()
		env := newEnv(t, withSimulator(simulator.Options{OutputTokens: outputTokens, OmitUsage: true}))
		var resp *http.Response
		c, err := env.Client.Chat.Completions.New(context.Background(), prompt, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatalf("chat: %v", err)
		}
		check(t, env, env.record(t, requestID(t, resp)), c.Choices[0].Message.Content, false)
	})
}

// TestStreamClientDisconnect: a client that goes away mid-stream cancels
// the upstream request, and its record carries the tokens produced so far.
func TestStreamClientDisconnect(t *testing.T) {
	t.Parallel()
	const outputTokens = 200 // 4s at 50 tokens/s: far longer than the test waits
	env := newEnv(t, withSimulator(simulator.Options{TokensPerSecond: 50, OutputTokens: outputTokens}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	s := streamChat(t, env.Client, ctx, chatParams(epChat), func(s *streamed) bool { return s.chunks >= 3 })
	if s.chunks < 3 {
		t.Fatalf("got %d chunks before the stream ended (%v), want at least 3", s.chunks, s.err)
	}
	cancel() // the client goes away

	up := env.Up.only(t)
	up.wait(t)
	if !up.Cancelled() {
		t.Errorf("the upstream's request was not cancelled when the client went away")
	}
	// Pacing is by the wall clock, so an upstream left running takes at
	// least the full 4s however loaded the machine is.
	if took, full := time.Since(start), outputTokens*time.Second/50; took >= full/2 {
		t.Errorf("the upstream ran for %v of its %v answer for a client that left after 3 chunks", took, full)
	}

	rec := env.awaitRecord(t, s.id)
	if rec.ErrorClass != sluice.ErrClassClientDisconnect || !rec.Stream {
		t.Errorf("record: class %q stream %v, want %q, stream", rec.ErrorClass, rec.Stream, sluice.ErrClassClientDisconnect)
	}
	if rec.CompletionTokens <= 0 || rec.CompletionTokens >= outputTokens {
		t.Errorf("record has %d completion tokens, want the partial count: > 0 and < %d", rec.CompletionTokens, outputTokens)
	}
	if rec.UsageSource != sluice.UsageEstimated || rec.PromptTokens <= 0 || rec.CostMicros <= 0 {
		t.Errorf("record: usage %q, %d prompt tokens, %d µ$; want an estimate with prompt tokens and a cost",
			rec.UsageSource, rec.PromptTokens, rec.CostMicros)
	}
	if n := env.recordCount(t); n != 1 {
		t.Errorf("the ledger has %d records, want 1", n)
	}
}

// TestClientDisconnectBeforeAnswer: a client that gives up while the
// upstream is still thinking (before the first token, or before a
// non-streamed answer is ready) cancels the upstream request and gets one
// client_disconnect record.
func TestClientDisconnectBeforeAnswer(t *testing.T) {
	t.Parallel()
	for _, stream := range []bool{true, false} {
		name := map[bool]string{true: "streaming, before the first token", false: "not streaming"}[stream]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// 4s to the first token, or 4s to a whole answer of 200 tokens.
			o := simulator.Options{TTFT: 4 * time.Second, OutputTokens: 16}
			if !stream {
				o = simulator.Options{TokensPerSecond: 50, OutputTokens: 200}
			}
			env := newEnv(t, withSimulator(o))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			start := time.Now()
			errc := make(chan error, 1)
			go func() {
				var err error
				if stream {
					err = streamChat(t, env.Client, ctx, chatParams(epChat), nil).err
				} else {
					_, err = env.Client.Chat.Completions.New(ctx, chatParams(epChat))
				}
				errc <- err
			}()
			// Leave once the upstream has the request.
			for env.Up.Count() == 0 && time.Since(start) < 10*time.Second {
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
			if err := <-errc; err == nil {
				t.Fatalf("the call succeeded although the client cancelled it")
			}
			up := env.Up.only(t)
			up.wait(t)
			if !up.Cancelled() {
				t.Errorf("the upstream's request was not cancelled when the client went away")
			}
			if took := time.Since(start); took >= 2*time.Second {
				t.Errorf("the upstream ran for %v of its 4s for a client that left at once", took)
			}
			// The client never saw a request id: find the record by count.
			deadline := time.Now().Add(10 * time.Second)
			for env.recordCount(t) == 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			rows, err := env.srv.Store().UsageReport(context.Background(), sluice.UsageQuery{GroupBy: []sluice.UsageGroup{sluice.GroupEndpoint}})
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 1 || rows[0].Requests != 1 || rows[0].Errors != 1 || rows[0].Keys[0] != epChat {
				t.Errorf("ledger: %+v, want one failed request on %s", rows, epChat)
			}
		})
	}
}

// TestStreamUpstreamReset: an upstream that cuts its stream mid-way gives
// the client an error, never a clean end, and exactly one record.
func TestStreamUpstreamReset(t *testing.T) {
	t.Parallel()
	opts := withSimulator(simulator.Options{OutputTokens: 20, ResetAfterTokens: 5})
	checkRecord := func(t *testing.T, env *env, id string) {
		t.Helper()
		rec := env.record(t, id)
		if rec.ErrorClass != sluice.ErrClassUpstreamReset || !rec.Stream {
			t.Errorf("record: class %q stream %v, want %q, stream", rec.ErrorClass, rec.Stream, sluice.ErrClassUpstreamReset)
		}
		if rec.CompletionTokens <= 0 || rec.CompletionTokens >= 20 {
			t.Errorf("record has %d completion tokens, want those produced before the reset", rec.CompletionTokens)
		}
		if n := env.recordCount(t); n != 1 {
			t.Errorf("the ledger has %d records, want exactly 1", n)
		}
	}

	t.Run("sdk", func(t *testing.T) {
		t.Parallel()
		env := newEnv(t, opts)
		s := streamChat(t, env.Client, context.Background(), chatParams(epChat), nil)
		if s.err == nil {
			t.Fatalf("the stream ended cleanly after %d chunks (%q); want an error", s.chunks, s.content)
		}
		t.Logf("the SDK reported: %v", s.err)
		if s.chunks == 0 {
			t.Errorf("no chunk arrived before the reset")
		}
		checkRecord(t, env, s.id)
	})
	t.Run("not streaming", func(t *testing.T) {
		t.Parallel()
		env := newEnv(t, opts)
		_, err := env.Client.Chat.Completions.New(context.Background(), chatParams(epChat))
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadGateway || apiErr.Code != "upstream_error" {
			t.Fatalf("got %v, want a 502 upstream_error", err)
		}
		rec := env.record(t, requestID(t, apiErr.Response))
		if rec.Status != http.StatusBadGateway || rec.ErrorClass != sluice.ErrClassUpstreamReset || rec.Stream {
			t.Errorf("record: status %d class %q stream %v, want 502 %q", rec.Status, rec.ErrorClass, rec.Stream, sluice.ErrClassUpstreamReset)
		}
		if n := env.recordCount(t); n != 1 {
			t.Errorf("the ledger has %d records, want exactly 1", n)
		}
	})
	t.Run("raw", func(t *testing.T) {
		t.Parallel()
		env := newEnv(t, opts)
		req, _ := http.NewRequest(http.MethodPost, env.URL+"/v1/chat/completions",
			strings.NewReader(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+env.Key)
		resp, err := env.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, done, rerr := readSSE(resp.Body)
		if done {
			t.Errorf("[DONE] arrived after an upstream reset")
		}
		sawError := len(data) > 0 && bytes.Contains(data[len(data)-1], []byte(`"error"`))
		if !sawError && rerr == nil {
			t.Errorf("the stream ended cleanly after %d events with neither an error event nor a broken connection", len(data))
		}
		t.Logf("%d events; last error event: %v; read error: %v", len(data), sawError, rerr)
		checkRecord(t, env, requestID(t, resp))
	})
}
