package e2e

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/sluice-gateway/sluice"
)

// chatParams is a small chat request for model.
func chatParams(model string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model: model,
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("You are a terse assistant."),
			openai.UserMessage("Tell the ledger a short story about counting tokens."),
		},
	}
}

func TestSDKChat(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	params := chatParams(epChat)
	params.User = openai.String("alice")
	var resp *http.Response
	c, err := env.Client.Chat.Completions.New(context.Background(), params, option.WithResponseInto(&resp))
	if err != nil {
		t.Fatalf("chat through Sluice: %v", err)
	}
	if len(c.Choices) == 0 || c.Choices[0].Message.Content == "" {
		t.Fatalf("chat answer has no content: %s", c.RawJSON())
	}

	up := env.Up.only(t)
	reported, model := up.Reported(t)
	if got := (tokens{c.Usage.PromptTokens, c.Usage.CompletionTokens, c.Usage.TotalTokens}); got != reported {
		t.Errorf("the client got usage %+v, the upstream reported %+v", got, reported)
	}
	if c.Model != model {
		t.Errorf("the client got model %q, the upstream reported %q", c.Model, model)
	}
	rec := env.record(t, requestID(t, resp))
	checkSuccess(t, env, rec, epChat, sluice.APIChat, false, reported, model)
	if rec.User != "alice" {
		t.Errorf("record user = %q, want alice", rec.User)
	}

	// The upstream got its own model name and none of the client's credentials.
	if got := up.JSON(t)["model"]; got != chatModel {
		t.Errorf("the upstream was asked for model %v, want %q", got, chatModel)
	}
	for name, vs := range up.Header {
		for _, v := range vs {
			if strings.Contains(v, env.Key) || strings.Contains(v, env.KeyID) {
				t.Errorf("the client's key reached the upstream in header %s", name)
			}
		}
	}
}

func TestSDKCompletions(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	var resp *http.Response
	c, err := env.Client.Completions.New(context.Background(), openai.CompletionNewParams{
		Model:  openai.CompletionNewParamsModel(epChat),
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time, a gateway")},
	}, option.WithResponseInto(&resp))
	if err != nil {
		t.Fatalf("completion through Sluice: %v", err)
	}
	if len(c.Choices) == 0 || c.Choices[0].Text == "" {
		t.Fatalf("completion has no text: %s", c.RawJSON())
	}
	up := env.Up.only(t)
	if !strings.HasSuffix(up.Path, "/v1/completions") {
		t.Errorf("the upstream got %s, want /v1/completions", up.Path)
	}
	reported, model := up.Reported(t)
	if got := (tokens{c.Usage.PromptTokens, c.Usage.CompletionTokens, c.Usage.TotalTokens}); got != reported {
		t.Errorf("the client got usage %+v, the upstream reported %+v", got, reported)
	}
	checkSuccess(t, env, env.record(t, requestID(t, resp)), epChat, sluice.APICompletions, false, reported, model)
}

func TestSDKEmbeddings(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	var resp *http.Response
	emb, err := env.Client.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
		Model: epEmbed,
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"meter me", "and me too"}},
	}, option.WithResponseInto(&resp))
	if err != nil {
		t.Fatalf("embeddings through Sluice: %v", err)
	}
	if len(emb.Data) != 2 || len(emb.Data[0].Embedding) == 0 {
		t.Fatalf("got %d embeddings, want 2 non-empty ones", len(emb.Data))
	}
	up := env.Up.only(t)
	if got := up.JSON(t)["model"]; got != embedModel {
		t.Errorf("the upstream was asked for model %v, want %q", got, embedModel)
	}
	reported, model := up.Reported(t)
	if emb.Usage.PromptTokens != reported.Prompt || reported.Prompt == 0 {
		t.Errorf("the client got %d prompt tokens, the upstream reported %d (want > 0)", emb.Usage.PromptTokens, reported.Prompt)
	}
	checkSuccess(t, env, env.record(t, requestID(t, resp)), epEmbed, sluice.APIEmbeddings, false, reported, model)
}

func TestSDKModels(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	ctx := context.Background()
	list := func(c openai.Client) map[string]string {
		t.Helper()
		page, err := c.Models.List(ctx)
		if err != nil {
			t.Fatalf("list models: %v", err)
		}
		owners := map[string]string{}
		for _, m := range page.Data {
			owners[m.ID] = m.OwnedBy
		}
		return owners
	}

	owners := list(env.Client)
	ids := make([]string, 0, len(owners))
	for id := range owners {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	want := []string{epBroken, epChat, epEmbed, epRateLimited, epBuiltin, epSlow}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("the key sees models %v, want exactly %v (not %q, which it may not use)", ids, want, epRestricted)
	}
	if o := owners[epBuiltin]; !strings.Contains(o, "simulator") {
		t.Errorf("the built-in simulator is listed as owned by %q; it must be named a simulator", o)
	}
	if o := owners[epChat]; strings.Contains(o, "simulator") {
		t.Errorf("endpoint %s (an openai-type upstream) is listed as owned by %q", epChat, o)
	}

	limited, _ := env.newKey(t, epChat)
	if got := list(env.client(limited)); len(got) != 1 || got[epChat] == "" {
		t.Errorf("a key limited to %s sees %v", epChat, got)
	}

	m, err := env.Client.Models.Get(ctx, epBuiltin)
	if err != nil || m.ID != epBuiltin || !strings.Contains(m.OwnedBy, "simulator") {
		t.Errorf("get %s: %+v, %v", epBuiltin, m, err)
	}
	_, err = env.Client.Models.Get(ctx, epRestricted)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
		t.Errorf("get %s with a key that may not use it: %v, want a 404", epRestricted, err)
	}
	if n := env.Up.Count(); n != 0 {
		t.Errorf("listing models sent %d requests upstream", n)
	}
}

// TestSDKBuiltinSimulator calls the in-process simulator (type: simulator).
func TestSDKBuiltinSimulator(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	var resp *http.Response
	c, err := env.Client.Chat.Completions.New(context.Background(), chatParams(epBuiltin), option.WithResponseInto(&resp))
	if err != nil {
		t.Fatalf("chat with the built-in simulator: %v", err)
	}
	rec := env.record(t, requestID(t, resp))
	if rec.Upstream != builtinUpstream || rec.Status != http.StatusOK || rec.UsageSource != sluice.UsageUpstream {
		t.Errorf("record: upstream %q, status %d, usage %q", rec.Upstream, rec.Status, rec.UsageSource)
	}
	if rec.PromptTokens != c.Usage.PromptTokens || rec.CompletionTokens != c.Usage.CompletionTokens || rec.CompletionTokens == 0 {
		t.Errorf("record tokens %d+%d, the simulator reported %d+%d", rec.PromptTokens, rec.CompletionTokens,
			c.Usage.PromptTokens, c.Usage.CompletionTokens)
	}
	if n := env.Up.Count(); n != 0 {
		t.Errorf("the built-in simulator's request reached the test upstream (%d requests)", n)
	}
}

// TestSDKErrors checks that each failure reaches the SDK as an API error
// with the right status and code, and is recorded once with its class.
func TestSDKErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	chat := func(c openai.Client, model string) error {
		_, err := c.Chat.Completions.New(ctx, chatParams(model))
		return err
	}
	stream := func(c openai.Client, model string) error {
		s := c.Chat.Completions.NewStreaming(ctx, chatParams(model))
		defer s.Close()
		for s.Next() {
		}
		return s.Err()
	}
	cases := []struct {
		name     string
		call     func(t *testing.T, e *env) error
		status   int
		code     string
		class    string
		upstream int // requests the upstream must get
		endpoint string
		stream   bool
	}{
		{name: "unknown model", call: func(t *testing.T, e *env) error { return chat(e.Client, "no-such-model") },
			status: 404, code: "model_not_found", class: sluice.ErrClassNotFound, endpoint: "no-such-model"},
		{name: "unknown model, streaming", call: func(t *testing.T, e *env) error { return stream(e.Client, "no-such-model") },
			status: 404, code: "model_not_found", class: sluice.ErrClassNotFound, endpoint: "no-such-model", stream: true},
		{name: "key not allowed", call: func(t *testing.T, e *env) error { return chat(e.Client, epRestricted) },
			status: 403, code: "model_not_allowed", class: sluice.ErrClassPermission, endpoint: epRestricted},
		{name: "missing key", call: func(t *testing.T, e *env) error { return chat(e.client(""), epChat) },
			status: 401, code: "invalid_api_key", class: sluice.ErrClassAuthentication},
		{name: "malformed key", call: func(t *testing.T, e *env) error { return chat(e.client("sk-not-a-sluice-key"), epChat) },
			status: 401, code: "invalid_api_key", class: sluice.ErrClassAuthentication},
		{name: "revoked key", call: func(t *testing.T, e *env) error {
			secret, id := e.newKey(t)
			e.revoke(t, id)
			return chat(e.client(secret), epChat)
		}, status: 401, code: "invalid_api_key", class: sluice.ErrClassAuthentication},
		{name: "key revoked while in use", call: func(t *testing.T, e *env) error {
			secret, id := e.newKey(t)
			c := e.client(secret)
			if err := chat(c, epBuiltin); err != nil {
				t.Fatalf("the key works before it is revoked: %v", err)
			}
			e.revoke(t, id)
			// Running gateways learn of a revocation within a refresh interval.
			deadline := time.Now().Add(10 * time.Second)
			for {
				err := chat(c, epBuiltin)
				if err != nil || time.Now().After(deadline) {
					return err
				}
				time.Sleep(100 * time.Millisecond)
			}
		}, status: 401, code: "invalid_api_key", class: sluice.ErrClassAuthentication},
		{name: "upstream rate limited", call: func(t *testing.T, e *env) error { return chat(e.Client, epRateLimited) },
			status: 429, code: "upstream_rate_limited", class: sluice.ErrClassUpstreamRate, upstream: 1, endpoint: epRateLimited},
		{name: "upstream rate limited, streaming", call: func(t *testing.T, e *env) error { return stream(e.Client, epRateLimited) },
			status: 429, code: "upstream_rate_limited", class: sluice.ErrClassUpstreamRate, upstream: 1, endpoint: epRateLimited, stream: true},
		{name: "upstream fails", call: func(t *testing.T, e *env) error { return chat(e.Client, epBroken) },
			status: 502, code: "upstream_error", class: sluice.ErrClassUpstreamStatus, upstream: 1, endpoint: epBroken},
		{name: "upstream fails, streaming", call: func(t *testing.T, e *env) error { return stream(e.Client, epBroken) },
			status: 502, code: "upstream_error", class: sluice.ErrClassUpstreamStatus, upstream: 1, endpoint: epBroken, stream: true},
		{name: "upstream too slow", call: func(t *testing.T, e *env) error { return chat(e.Client, epSlow) },
			status: 504, code: "upstream_timeout", class: sluice.ErrClassUpstreamTimeout, upstream: 1, endpoint: epSlow},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newEnv(t)
			err := tc.call(t, env)
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("got %v (%T), want an *openai.Error with status %d", err, err, tc.status)
			}
			if apiErr.StatusCode != tc.status || apiErr.Code != tc.code {
				t.Errorf("got status %d code %q, want %d %q (%s)", apiErr.StatusCode, apiErr.Code, tc.status, tc.code, apiErr.RawJSON())
			}
			if apiErr.Message == "" || apiErr.Type == "" {
				t.Errorf("error without message or type: %s", apiErr.RawJSON())
			}
			if tc.status == 429 {
				if ra := apiErr.Response.Header.Get("Retry-After"); ra != retryAfter {
					t.Errorf("Retry-After = %q, want the upstream's %q", ra, retryAfter)
				}
			}
			if got := env.Up.Count(); got != tc.upstream {
				t.Errorf("the upstream got %d requests, want %d", got, tc.upstream)
			}
			rec := env.record(t, requestID(t, apiErr.Response))
			checkRefused(t, rec, tc.status, tc.class)
			if rec.Endpoint != tc.endpoint || rec.Stream != tc.stream {
				t.Errorf("record endpoint %q stream %v, want %q %v", rec.Endpoint, rec.Stream, tc.endpoint, tc.stream)
			}
			if tc.class == sluice.ErrClassAuthentication && rec.KeyID != "" {
				t.Errorf("record of a refused key names key %q", rec.KeyID)
			}
			if tc.class == sluice.ErrClassUpstreamTimeout {
				// The gateway gave up on the upstream: its request was cancelled.
				up := env.Up.only(t)
				up.wait(t)
				if !up.Cancelled() {
					t.Errorf("the slow upstream's request was not cancelled after the timeout")
				}
			}
		})
	}
}

// TestAPIKeyHeader: a key is also accepted in the api-key header, as Azure
// OpenAI clients send it.
func TestAPIKeyHeader(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	c := env.client("", option.WithHeader("api-key", env.Key))
	var resp *http.Response
	if _, err := c.Chat.Completions.New(context.Background(), chatParams(epChat), option.WithResponseInto(&resp)); err != nil {
		t.Fatalf("chat with the key in api-key: %v", err)
	}
	if h := resp.Request.Header.Get("Authorization"); h != "" {
		t.Fatalf("the SDK sent Authorization %q as well; the test proves nothing", h)
	}
	if rec := env.record(t, requestID(t, resp)); rec.KeyID != env.KeyID || rec.Status != http.StatusOK {
		t.Errorf("record: key %q status %d, want %q 200", rec.KeyID, rec.Status, env.KeyID)
	}
}
