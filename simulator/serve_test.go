package simulator

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestListenAndServe(t *testing.T) {
	// Find a free loopback port, then serve on it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() {
		served <- ListenAndServe(ctx, addr, Options{OutputTokens: 3}, slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	var resp *http.Response
	waitFor(t, func() bool {
		resp, err = http.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(chatBody))
		return err == nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if a := readAnswer(t, resp); a.Usage.CompletionTokens != 3 {
		t.Errorf("answer %+v", a)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("ListenAndServe: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ListenAndServe did not return after the context ended")
	}
	if !strings.Contains(logs.String(), "simulator listening") || !strings.Contains(logs.String(), addr) {
		t.Errorf("log: %s", logs.String())
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Error("still listening after stop")
	}
}

func TestServeStopsStreamsInFlight(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bs := &blockingSleep{release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- serve(ctx, ln, Options{TokensPerSecond: 1, OutputTokens: 1000, Sleep: bs.Sleep}, nil, 50*time.Millisecond)
	}()
	resp, err := http.Post("http://"+ln.Addr().String()+"/v1/chat/completions", "application/json",
		strings.NewReader(withField(chatBody, `"stream":true`)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	cancel() // the stream never ends by itself: Shutdown's grace runs out
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return")
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("the stream ended cleanly although the server stopped mid-answer")
	}
}

func TestListenAndServeBadAddress(t *testing.T) {
	if err := ListenAndServe(context.Background(), "127.0.0.1:notaport", Options{}, nil); err == nil {
		t.Fatal("no error for a bad address")
	}
}

// TestOpenAISDK checks the wire format with the official Go SDK.
func TestOpenAISDK(t *testing.T) {
	srv := newServer(t, Options{OutputTokens: 9})
	client := openai.NewClient(option.WithBaseURL(srv.URL+"/v1"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Hello!")},
	}

	c, err := client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if c.Model != "sluice-simulator/gpt-4o-mini" || c.Usage.CompletionTokens != 9 || c.Choices[0].FinishReason != "stop" ||
		counter.Count("gpt-4o-mini", c.Choices[0].Message.Content) != 9 {
		t.Errorf("chat: %+v", c)
	}

	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	st := client.Chat.Completions.NewStreaming(ctx, params)
	acc := openai.ChatCompletionAccumulator{}
	for st.Next() {
		acc.AddChunk(st.Current())
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Choices[0].Message.Content != c.Choices[0].Message.Content || acc.Usage.CompletionTokens != 9 || acc.Usage.PromptTokens != c.Usage.PromptTokens {
		t.Errorf("stream: %q, usage %+v; whole: %q, %+v", acc.Choices[0].Message.Content, acc.Usage, c.Choices[0].Message.Content, c.Usage)
	}

	comp, err := client.Completions.New(ctx, openai.CompletionNewParams{
		Model:     "gpt-3.5-turbo-instruct",
		Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens: openai.Int(4),
	})
	if err != nil {
		t.Fatal(err)
	}
	if comp.Usage.CompletionTokens != 4 || comp.Choices[0].FinishReason != "length" {
		t.Errorf("completion: %+v", comp)
	}

	emb, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "text-embedding-3-small",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(emb.Data) != 2 || len(emb.Data[1].Embedding) != 8 || emb.Usage.PromptTokens != 2 {
		t.Errorf("embeddings: %+v", emb)
	}

	models, err := client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(models.Data) != len(DefaultModels) || models.Data[0].OwnedBy != Owner {
		t.Errorf("models: %+v", models.Data)
	}
}
