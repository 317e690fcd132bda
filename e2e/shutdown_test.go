package e2e

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/simulator"
	"github.com/sluice-gateway/sluice/store"
	"github.com/sluice-gateway/sluice/store/sqlite"
)

// TestShutdownLetsStreamsFinish: a stream in flight when the server is told
// to stop runs to its end within the grace period, its record is
// committed, and no new connection is accepted meanwhile.
func TestShutdownLetsStreamsFinish(t *testing.T) {
	t.Parallel()
	const outputTokens = 40 // 0.8s at 50 tokens/s
	env := newEnv(t, withSimulator(simulator.Options{TokensPerSecond: 50, OutputTokens: outputTokens}),
		withShutdownGrace(20*time.Second))
	addr := strings.TrimPrefix(env.URL, "http://")

	stopping := false
	s := streamChat(t, env.Client, context.Background(), chatParams(epChat), func(s *streamed) bool {
		if s.chunks > 0 && !stopping {
			stopping = true
			env.shutdown()
		}
		return false
	})
	if !stopping {
		t.Fatalf("no chunk arrived before the stream ended: %v", s.err)
	}
	if s.err != nil {
		t.Fatalf("the stream in flight was cut by the shutdown after %d chunks: %v", s.chunks, s.err)
	}
	if err := env.waitServed(15 * time.Second); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("the stopped server still accepts connections")
	}
	up := env.Up.only(t)
	reported, model := up.Reported(t)
	if want := upstreamText(up.Response()); s.content != want {
		t.Errorf("the client got %q of the upstream's %q", s.content, want)
	}
	checkSuccess(t, env, env.record(t, s.id), epChat, sluice.APIChat, true, reported, model)
}

// TestShutdownGraceOver: a stream still running when the grace period ends
// is cut, and its record (with the tokens produced so far) is still in the
// ledger once the server has closed. The stream has a long prompt, as
// long-context calls do, so metering the cut stream (estimating its
// tokens) takes the gateway a moment after the connection is gone.
func TestShutdownGraceOver(t *testing.T) {
	t.Parallel()
	const outputTokens = 200 // 4s at 50 tokens/s: longer than the grace period
	env := newEnv(t, withSimulator(simulator.Options{TokensPerSecond: 50, OutputTokens: outputTokens}),
		withShutdownGrace(300*time.Millisecond))
	params := chatParams(epChat)
	params.Messages = append(params.Messages,
		openai.UserMessage(strings.Repeat("Here is a long document for the ledger to count. ", 8000)))
	start := time.Now()
	stopping := false
	s := streamChat(t, env.Client, context.Background(), params, func(s *streamed) bool {
		if s.chunks >= 3 && !stopping {
			stopping = true
			env.shutdown()
		}
		return false
	})
	if s.err == nil {
		t.Errorf("the stream ended cleanly (%d chunks) although the grace period was over", s.chunks)
	}
	if err := env.waitServed(15 * time.Second); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	t.Logf("Serve returned %v after the stream began (the whole stream would take %v)",
		time.Since(start).Round(time.Millisecond), outputTokens*time.Second/50)
	// Close as `sluice serve` does right after Serve returns, then look in
	// the ledger file itself.
	if err := env.close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st, err := store.Open(context.Background(), env.DSN, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, err := st.Usage(context.Background(), s.id)
	if err != nil {
		t.Fatalf("the record of the stream cut at shutdown is not in the ledger: %v", err)
	}
	if rec.ErrorClass == "" || !rec.Stream || rec.CompletionTokens <= 0 || rec.CompletionTokens >= outputTokens {
		t.Errorf("record: status %d class %q stream %v, %d completion tokens; want an error class and the partial count",
			rec.Status, rec.ErrorClass, rec.Stream, rec.CompletionTokens)
	}
}
