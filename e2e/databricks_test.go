package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go"
	dbxserving "github.com/databricks/databricks-sdk-go/service/serving"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/auth"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/server"
	"github.com/sluice-gateway/sluice/simulator"
)

// dbxEnv is a gateway with no endpoints of its own but a custom model
// server declared as an upstream, driven through Databricks' APIs.
type dbxEnv struct {
	URL       string
	Admin     string // an admin key's secret
	Analyst   string // a key of team analytics
	AnalystID string
	LLM       *upstream // an OpenAI-compatible provider (the simulator)
	srv       *server.Server

	mu       sync.Mutex
	mlflowIn []string // bodies the MLflow server received
	ids      *idRecorder
	// mlflowUp is whether the MLflow server's health check passes.
	mlflowUp atomic.Bool
}

const llmSecret = "sk-provider-secret-123"

func newDbxEnv(t *testing.T, opts ...func(*dbxEnv)) *dbxEnv {
	t.Helper()
	e := &dbxEnv{ids: &idRecorder{}}
	e.mlflowUp.Store(true)
	for _, o := range opts {
		o(e)
	}
	// The provider checks it gets the secret the endpoint references.
	sim := simulator.New(simulator.Options{OutputTokens: 8})
	e.LLM = newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+llmSecret {
			w.WriteHeader(401)
			io.WriteString(w, `{"error":{"message":"bad provider key"}}`)
			return
		}
		sim.ServeHTTP(w, r)
	}))
	mlflow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ping", "/health":
			if !e.mlflowUp.Load() {
				w.WriteHeader(503) // still loading the model
				return
			}
			w.WriteHeader(200)
			return
		case "/invocations":
		default:
			w.WriteHeader(404)
			return
		}
		b, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.mlflowIn = append(e.mlflowIn, string(b))
		e.mu.Unlock()
		var in struct {
			DataframeSplit struct {
				Data [][]float64 `json:"data"`
			} `json:"dataframe_split"`
		}
		json.Unmarshal(b, &in)
		preds := make([]float64, len(in.DataframeSplit.Data))
		for i, row := range in.DataframeSplit.Data {
			preds[i] = row[0] / 100
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"predictions": preds})
	}))
	t.Cleanup(mlflow.Close)

	t.Setenv("SLUICE_SECRET_LLM_PROVIDER_KEY", llmSecret)
	dsn := filepath.Join(t.TempDir(), "ledger.db")
	yaml := fmt.Sprintf(`listen: 127.0.0.1:0
ledger: {dsn: %q}
serving: {refresh: 50ms, ready_timeout: 30s}
upstreams:
  - name: fraud-model
    type: mlflow
    base_url: %s
    health_check: {path: /ping, interval: 100ms, timeout: 100ms}
  - name: pt-llama
    type: openai
    base_url: %s/v1
    api_key: %s
endpoints:
  - name: llama-pt
    kind: provisioned_throughput
    upstream: pt-llama
    model: llama-3-70b
    capacity: {concurrency: 2, hourly_price: "40.00", max_queue_wait: 200ms, max_queue: 1}
    price: {input_per_1m: "0", output_per_1m: "0"}
`, dsn, mlflow.URL, e.LLM.URL, llmSecret)
	cfg, err := config.Parse(strings.NewReader(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs := &logBuffer{}
	e.srv, err = server.New(ctx, cfg, server.Options{Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.URL = "http://" + ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := e.srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			t.Logf("gateway log (tail):\n%s", logs.tail(16<<10))
		}
	})
	mk := func(team string, admin bool) (string, string) {
		secret, k, err := auth.NewKey(team, t.Name(), admin, nil, time.Time{}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := e.srv.Store().CreateKey(context.Background(), k); err != nil {
			t.Fatal(err)
		}
		return secret, k.ID
	}
	e.Admin, _ = mk("platform", true)
	e.Analyst, e.AnalystID = mk("analytics", false)
	return e
}

func (e *dbxEnv) workspace(t *testing.T, token string) *databricks.WorkspaceClient {
	t.Helper()
	w, err := databricks.NewWorkspaceClient(&databricks.Config{Host: e.URL, Token: token, AuthType: "pat",
		RetryTimeoutSeconds: 5, HTTPTimeoutSeconds: 30, HTTPTransport: e.ids})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestDatabricksSDK drives the serving-endpoints control plane and the
// query path with the real databricks-sdk-go client.
func TestDatabricksSDK(t *testing.T) {
	e := newDbxEnv(t)
	ctx := context.Background()
	admin := e.workspace(t, e.Admin)
	analyst := e.workspace(t, e.Analyst)

	// Create: a pay-per-token external model (the secret by reference).
	chat, err := admin.ServingEndpoints.CreateAndWait(ctx, dbxserving.CreateServingEndpoint{
		Name: "team-chat",
		Config: &dbxserving.EndpointCoreConfigInput{ServedEntities: []dbxserving.ServedEntityInput{{
			Name: "gpt-mini",
			ExternalModel: &dbxserving.ExternalModel{Name: "gpt-4o-mini", Provider: dbxserving.ExternalModelProviderOpenai, Task: "llm/v1/chat",
				OpenaiConfig: &dbxserving.OpenAiConfig{OpenaiApiKey: "{{secrets/llm/provider-key}}", OpenaiApiBase: e.LLM.URL + "/v1"}},
		}}},
		Tags: []dbxserving.EndpointTag{{Key: "owner", Value: "analytics"}},
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if chat.Name != "team-chat" || chat.State == nil || chat.State.Ready != dbxserving.EndpointStateReadyReady {
		t.Fatalf("created %+v", chat)
	}
	raw, _ := json.Marshal(chat)
	if strings.Contains(string(raw), llmSecret) {
		t.Fatal("the provider secret came back in the endpoint")
	}

	// Embeddings through a custom provider with a bearer token.
	if _, err := admin.ServingEndpoints.CreateAndWait(ctx, dbxserving.CreateServingEndpoint{
		Name: "team-embed",
		Config: &dbxserving.EndpointCoreConfigInput{ServedEntities: []dbxserving.ServedEntityInput{{
			Name: "embed",
			ExternalModel: &dbxserving.ExternalModel{Name: "text-embedding-3-small", Provider: dbxserving.ExternalModelProviderCustom, Task: "llm/v1/embeddings",
				CustomProviderConfig: &dbxserving.CustomProviderConfig{CustomProviderUrl: e.LLM.URL + "/v1",
					BearerTokenAuth: &dbxserving.BearerTokenAuth{Token: "{{secrets/llm/provider-key}}"}}},
		}}},
	}); err != nil {
		t.Fatalf("create embed: %v", err)
	}

	// A custom model: a registered entity served by an MLflow server.
	if _, err := admin.ServingEndpoints.CreateAndWait(ctx, dbxserving.CreateServingEndpoint{
		Name: "fraud",
		Config: &dbxserving.EndpointCoreConfigInput{ServedEntities: []dbxserving.ServedEntityInput{{
			EntityName: "fraud-model", EntityVersion: "3", WorkloadSize: "Small", ScaleToZeroEnabled: false,
		}}},
	}); err != nil {
		t.Fatalf("create custom: %v", err)
	}

	// List and get.
	all, err := admin.ServingEndpoints.ListAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, ep := range all {
		names[ep.Name] = true
	}
	for _, n := range []string{"team-chat", "team-embed", "fraud", "llama-pt"} {
		if !names[n] {
			t.Errorf("list lacks %s: %v", n, names)
		}
	}
	got, err := admin.ServingEndpoints.GetByName(ctx, "fraud")
	if err != nil || got.Config == nil || len(got.Config.ServedEntities) != 1 || got.Config.ServedEntities[0].EntityVersion != "3" {
		t.Fatalf("get: %+v %v", got, err)
	}

	// The analyst may not query until the team is granted CAN_QUERY.
	_, err = analyst.ServingEndpoints.Query(ctx, dbxserving.QueryEndpointInput{Name: "team-chat",
		Messages: []dbxserving.ChatMessage{{Role: "user", Content: "hello"}}})
	if !errors.Is(err, databricks.ErrPermissionDenied) {
		t.Fatalf("query before grant: %v", err)
	}
	for _, name := range []string{"team-chat", "team-embed", "fraud"} {
		ep, err := admin.ServingEndpoints.GetByName(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.ServingEndpoints.UpdatePermissions(ctx, dbxserving.ServingEndpointPermissionsRequest{
			ServingEndpointId: ep.Id,
			AccessControlList: []dbxserving.ServingEndpointAccessControlRequest{{GroupName: "analytics", PermissionLevel: dbxserving.ServingEndpointPermissionLevelCanQuery}},
		}); err != nil {
			t.Fatalf("permissions %s: %v", name, err)
		}
	}

	// Query: chat, with Databricks usage tracking fields.
	resp, err := analyst.ServingEndpoints.Query(ctx, dbxserving.QueryEndpointInput{Name: "team-chat",
		Messages:        []dbxserving.ChatMessage{{Role: "user", Content: "hello there"}},
		MaxTokens:       16,
		ClientRequestId: "batch-7-row-12",
		UsageContext:    map[string]string{"project": "churn"},
	})
	if err != nil {
		t.Fatalf("chat query: %v", err)
	}
	if len(resp.Choices) == 0 || resp.Choices[0].Message == nil || resp.Choices[0].Message.Content == "" || resp.Usage == nil || resp.Usage.TotalTokens == 0 {
		t.Fatalf("chat answer %+v", resp)
	}
	if resp.ServedModelName != "gpt-mini" {
		t.Errorf("served-model-name %q", resp.ServedModelName)
	}
	// Embeddings.
	emb, err := analyst.ServingEndpoints.Query(ctx, dbxserving.QueryEndpointInput{Name: "team-embed", Input: []string{"a", "b"}})
	if err != nil || len(emb.Data) != 2 || len(emb.Data[0].Embedding) == 0 {
		t.Fatalf("embeddings %+v %v", emb, err)
	}
	// A custom model's payload.
	pred, err := analyst.ServingEndpoints.Query(ctx, dbxserving.QueryEndpointInput{Name: "fraud",
		DataframeSplit: &dbxserving.DataframeSplitInput{Columns: []any{"amount"}, Data: []any{[]any{12.5}, []any{80}}}})
	if err != nil || len(pred.Predictions) != 2 || pred.Predictions[0] != 0.125 {
		t.Fatalf("custom %+v %v", pred, err)
	}

	// The usage records carry the tracking fields and the served entity.
	recs := usageRecords(t, e.srv, e.ids, "team-chat")
	if len(recs) != 2 {
		t.Fatalf("team-chat records: %d", len(recs))
	}
	last := recs[len(recs)-1]
	if last.ClientRequestID != "batch-7-row-12" || last.UsageContext != `{"project":"churn"}` || last.ServedEntity != "gpt-mini" ||
		last.Team != "analytics" || last.Status != 200 || last.TotalTokens != int64(resp.Usage.TotalTokens) || last.Attempts != 1 {
		t.Fatalf("record %+v", last)
	}

	// The admin API shows the record, attempts and tracking fields included.
	areq, _ := http.NewRequest("GET", e.URL+"/admin/v1/requests/"+last.RequestID, nil)
	areq.Header.Set("Authorization", "Bearer "+e.Admin)
	aresp, err := http.DefaultClient.Do(areq)
	if err != nil {
		t.Fatal(err)
	}
	var shown map[string]any
	json.NewDecoder(aresp.Body).Decode(&shown)
	aresp.Body.Close()
	if aresp.StatusCode != 200 || shown["served_entity"] != "gpt-mini" || shown["attempts"] != 1.0 || shown["attempt_log"] != "gpt-mini:200" ||
		shown["client_request_id"] != "batch-7-row-12" || fmt.Sprint(shown["usage_context"]) != "map[project:churn]" {
		t.Fatalf("admin record: %d %v", aresp.StatusCode, shown)
	}

	// Update the config: a second served entity with a traffic split.
	upd, err := admin.ServingEndpoints.UpdateConfigAndWait(ctx, dbxserving.EndpointCoreConfigInput{Name: "team-chat",
		ServedEntities: []dbxserving.ServedEntityInput{
			{Name: "gpt-mini", ExternalModel: &dbxserving.ExternalModel{Name: "gpt-4o-mini", Provider: "openai", Task: "llm/v1/chat",
				OpenaiConfig: &dbxserving.OpenAiConfig{OpenaiApiKey: "{{secrets/llm/provider-key}}", OpenaiApiBase: e.LLM.URL + "/v1"}}},
			{Name: "gpt-big", ExternalModel: &dbxserving.ExternalModel{Name: "gpt-4o", Provider: "openai", Task: "llm/v1/chat",
				OpenaiConfig: &dbxserving.OpenAiConfig{OpenaiApiKey: "{{secrets/llm/provider-key}}", OpenaiApiBase: e.LLM.URL + "/v1"}}},
		},
		TrafficConfig: &dbxserving.TrafficConfig{Routes: []dbxserving.Route{{ServedEntityName: "gpt-mini", TrafficPercentage: 0}, {ServedEntityName: "gpt-big", TrafficPercentage: 100}}},
	})
	if err != nil {
		t.Fatalf("update config: %v", err)
	}
	if upd.Config == nil || len(upd.Config.ServedEntities) != 2 || upd.Config.ConfigVersion < 2 {
		t.Fatalf("updated %+v", upd.Config)
	}
	resp, err = analyst.ServingEndpoints.Query(ctx, dbxserving.QueryEndpointInput{Name: "team-chat",
		Messages: []dbxserving.ChatMessage{{Role: "user", Content: "again"}}})
	if err != nil || resp.ServedModelName != "gpt-big" {
		t.Fatalf("after update: %+v %v", resp, err)
	}

	// AI Gateway settings: a per-team call limit.
	if _, err := admin.ServingEndpoints.PutAiGateway(ctx, dbxserving.PutAiGatewayRequest{Name: "team-chat",
		UsageTrackingConfig: &dbxserving.AiGatewayUsageTrackingConfig{Enabled: true},
		RateLimits:          []dbxserving.AiGatewayRateLimit{{Key: "user_group", Calls: 1, RenewalPeriod: "minute"}},
	}); err != nil {
		t.Fatalf("ai gateway: %v", err)
	}
	got, err = admin.ServingEndpoints.GetByName(ctx, "team-chat")
	if err != nil || got.AiGateway == nil || len(got.AiGateway.RateLimits) != 1 {
		t.Fatalf("ai gateway not kept: %+v %v", got.AiGateway, err)
	}
	waitFor(t, func() bool {
		_, err := analyst.ServingEndpoints.Query(ctx, dbxserving.QueryEndpointInput{Name: "team-chat",
			Messages: []dbxserving.ChatMessage{{Role: "user", Content: "x"}}})
		return errors.Is(err, databricks.ErrResourceExhausted) || errors.Is(err, databricks.ErrRequestLimitExceeded) || errors.Is(err, databricks.ErrTooManyRequests)
	})

	// Error shapes for each cause.
	_, err = admin.ServingEndpoints.Create(ctx, dbxserving.CreateServingEndpoint{Name: "team-chat",
		Config: &dbxserving.EndpointCoreConfigInput{ServedEntities: []dbxserving.ServedEntityInput{{EntityName: "fraud-model", EntityVersion: "1", WorkloadSize: "Small"}}}})
	if !errors.Is(err, databricks.ErrResourceAlreadyExists) {
		t.Errorf("name taken: %v", err)
	}
	_, err = admin.ServingEndpoints.Create(ctx, dbxserving.CreateServingEndpoint{Name: "bad name!",
		Config: &dbxserving.EndpointCoreConfigInput{ServedEntities: []dbxserving.ServedEntityInput{{EntityName: "fraud-model", EntityVersion: "1", WorkloadSize: "Small"}}}})
	if !errors.Is(err, databricks.ErrInvalidParameterValue) {
		t.Errorf("bad config: %v", err)
	}
	_, err = analyst.ServingEndpoints.Create(ctx, dbxserving.CreateServingEndpoint{Name: "mine",
		Config: &dbxserving.EndpointCoreConfigInput{ServedEntities: []dbxserving.ServedEntityInput{{EntityName: "fraud-model", EntityVersion: "1", WorkloadSize: "Small"}}}})
	if !errors.Is(err, databricks.ErrPermissionDenied) {
		t.Errorf("permission denied: %v", err)
	}
	if _, err := admin.ServingEndpoints.GetByName(ctx, "nope"); !errors.Is(err, databricks.ErrResourceDoesNotExist) {
		t.Errorf("not found: %v", err)
	}

	// Delete.
	if err := admin.ServingEndpoints.DeleteByName(ctx, "team-embed"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ServingEndpoints.GetByName(ctx, "team-embed"); !errors.Is(err, databricks.ErrResourceDoesNotExist) {
		t.Errorf("after delete: %v", err)
	}
	_, err = analyst.ServingEndpoints.Query(ctx, dbxserving.QueryEndpointInput{Name: "team-embed", Input: "a"})
	if !errors.Is(err, databricks.ErrResourceDoesNotExist) {
		t.Errorf("query after delete: %v", err)
	}
}

// TestOpenAISDKServingPaths uses the official OpenAI SDK the way Databricks
// and Azure users do: base URL /serving-endpoints with model = endpoint,
// and Azure mode against the deployments paths.
func TestOpenAISDKServingPaths(t *testing.T) {
	e := newDbxEnv(t)
	ctx := context.Background()
	// An endpoint for everyone: created by the admin, granted to the team.
	admin := e.workspace(t, e.Admin)
	ep, err := admin.ServingEndpoints.CreateAndWait(ctx, dbxserving.CreateServingEndpoint{
		Name: "chat",
		Config: &dbxserving.EndpointCoreConfigInput{ServedEntities: []dbxserving.ServedEntityInput{{
			Name: "gpt-mini",
			ExternalModel: &dbxserving.ExternalModel{Name: "gpt-4o-mini", Provider: "openai", Task: "llm/v1/chat",
				OpenaiConfig: &dbxserving.OpenAiConfig{OpenaiApiKey: "{{secrets/llm/provider-key}}", OpenaiApiBase: e.LLM.URL + "/v1"}},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ServingEndpoints.SetPermissions(ctx, dbxserving.ServingEndpointPermissionsRequest{ServingEndpointId: ep.Id,
		AccessControlList: []dbxserving.ServingEndpointAccessControlRequest{{GroupName: "analytics", PermissionLevel: "CAN_QUERY"}}}); err != nil {
		t.Fatal(err)
	}

	httpc := &http.Client{Timeout: 30 * time.Second, Transport: e.ids}
	dbx := openai.NewClient(option.WithBaseURL(e.URL+"/serving-endpoints"), option.WithAPIKey(e.Analyst), option.WithMaxRetries(0), option.WithHTTPClient(httpc))
	c, err := dbx.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "chat",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}})
	if err != nil || len(c.Choices) == 0 || c.Choices[0].Message.Content == "" {
		t.Fatalf("serving-endpoints chat: %+v %v", c, err)
	}
	st := dbx.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "chat",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream please")}})
	var text strings.Builder
	for st.Next() {
		for _, ch := range st.Current().Choices {
			text.WriteString(ch.Delta.Content)
		}
	}
	if st.Err() != nil || text.Len() == 0 {
		t.Fatalf("serving-endpoints stream: %q %v", text.String(), st.Err())
	}
	// Pay-per-token and provisioned endpoints side by side on one ledger:
	// the YAML provisioned endpoint answers on the same path.
	if _, err := dbx.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "llama-pt",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}); err != nil {
		t.Fatalf("provisioned endpoint: %v", err)
	}

	az := openai.NewClient(azure.WithEndpoint(e.URL, "2024-10-21"), azure.WithAPIKey(e.Analyst), azure.WithUnsafeAllowHTTP(), option.WithMaxRetries(0), option.WithHTTPClient(httpc))
	c, err = az.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "chat",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello azure")}})
	if err != nil || len(c.Choices) == 0 {
		t.Fatalf("azure chat: %+v %v", c, err)
	}
	// Azure's v1 API: the model in the body.
	v1 := openai.NewClient(option.WithBaseURL(e.URL+"/openai/v1"), option.WithAPIKey(e.Analyst), option.WithMaxRetries(0), option.WithHTTPClient(httpc))
	if _, err := v1.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "chat",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello v1")}}); err != nil {
		t.Fatalf("azure v1 chat: %v", err)
	}
	// An unknown deployment is a 404 in OpenAI's shape.
	_, err = az.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "nope",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")}})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 {
		t.Fatalf("azure unknown deployment: %v", err)
	}

	// (The Azure client bypasses custom transports on loopback, so its
	// request id is not seen; the report counts it.)
	recs := usageRecords(t, e.srv, e.ids, "chat")
	if len(recs) != 3 {
		t.Fatalf("records: %d", len(recs))
	}
	rows, err := e.srv.Store().UsageReport(ctx, sluice.UsageQuery{GroupBy: []sluice.UsageGroup{sluice.GroupEndpoint}})
	if err != nil {
		t.Fatal(err)
	}
	byEP := map[string]int64{}
	for _, r := range rows {
		byEP[r.Keys[0]] = r.Requests
	}
	if byEP["chat"] != 4 || byEP["llama-pt"] != 1 || byEP["nope"] != 1 {
		t.Fatalf("requests by endpoint: %v", byEP)
	}
	for _, r := range recs {
		if r.ServedEntity != "gpt-mini" || r.Team != "analytics" || r.TotalTokens == 0 {
			t.Errorf("record %+v", r)
		}
	}
}

// idRecorder is an HTTP transport that keeps every response's
// X-Request-Id, so that tests can read the records of SDK calls.
type idRecorder struct {
	mu  sync.Mutex
	ids []string
}

func (r *idRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		if id := resp.Header.Get("X-Request-Id"); id != "" {
			r.mu.Lock()
			r.ids = append(r.ids, id)
			r.mu.Unlock()
		}
	}
	return resp, err
}

// usageRecords returns the records of the endpoint among the requests
// the recorder saw, oldest first.
func usageRecords(t *testing.T, srv *server.Server, ids *idRecorder, endpoint string) []sluice.UsageRecord {
	t.Helper()
	ids.mu.Lock()
	defer ids.mu.Unlock()
	var out []sluice.UsageRecord
	for _, id := range ids.ids {
		rec, err := srv.Store().Usage(context.Background(), id)
		if errors.Is(err, sluice.ErrNotFound) {
			continue // a control-plane call
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Endpoint == endpoint {
			out = append(out, rec)
		}
	}
	return out
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDatabricksAIGatewayInferenceTable turns on an endpoint's inference
// table and PII masking: payloads are logged (streamed and not) with the
// email masked, and the provider never sees it.
func TestDatabricksAIGatewayInferenceTable(t *testing.T) {
	e := newDbxEnv(t)
	ctx := context.Background()
	admin := e.workspace(t, e.Admin)
	ep, err := admin.ServingEndpoints.CreateAndWait(ctx, dbxserving.CreateServingEndpoint{
		Name: "logged",
		Config: &dbxserving.EndpointCoreConfigInput{ServedEntities: []dbxserving.ServedEntityInput{{
			Name: "gpt-mini",
			ExternalModel: &dbxserving.ExternalModel{Name: "gpt-4o-mini", Provider: "openai", Task: "llm/v1/chat",
				OpenaiConfig: &dbxserving.OpenAiConfig{OpenaiApiKey: "{{secrets/llm/provider-key}}", OpenaiApiBase: e.LLM.URL + "/v1"}},
		}}},
		AiGateway: &dbxserving.AiGatewayConfig{
			InferenceTableConfig: &dbxserving.AiGatewayInferenceTableConfig{Enabled: true, CatalogName: "main", SchemaName: "ml", TableNamePrefix: "logged"},
			Guardrails:           &dbxserving.AiGatewayGuardrails{Input: &dbxserving.AiGatewayGuardrailParameters{Pii: &dbxserving.AiGatewayGuardrailPiiBehavior{Behavior: "MASK"}}},
			UsageTrackingConfig:  &dbxserving.AiGatewayUsageTrackingConfig{Enabled: true},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ServingEndpoints.SetPermissions(ctx, dbxserving.ServingEndpointPermissionsRequest{ServingEndpointId: ep.Id,
		AccessControlList: []dbxserving.ServingEndpointAccessControlRequest{{GroupName: "analytics", PermissionLevel: "CAN_QUERY"}}}); err != nil {
		t.Fatal(err)
	}
	analyst := e.workspace(t, e.Analyst)
	const email = "jane.doe@example.com"
	if _, err := analyst.ServingEndpoints.Query(ctx, dbxserving.QueryEndpointInput{Name: "logged",
		Messages: []dbxserving.ChatMessage{{Role: "user", Content: "write to " + email}}, ClientRequestId: "r-1"}); err != nil {
		t.Fatal(err)
	}
	// Streamed through the invocations path.
	req, _ := http.NewRequest("POST", e.URL+"/serving-endpoints/logged/invocations",
		strings.NewReader(`{"messages":[{"role":"user","content":"mail `+email+`"}],"stream":true,"client_request_id":"r-2"}`))
	req.Header.Set("Authorization", "Bearer "+e.Analyst)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") || !strings.Contains(string(body), "data: [DONE]") {
		t.Fatalf("stream: %d %s", resp.StatusCode, body)
	}
	for _, c := range e.LLM.Calls() {
		if strings.Contains(string(c.Body), email) {
			t.Fatalf("the provider saw the email: %s", c.Body)
		}
	}
	var rows []sluice.InferenceLogRecord
	waitFor(t, func() bool {
		rows, err = e.srv.Store().InferenceLog(ctx, "logged", time.Time{}, time.Time{}, 10)
		return err == nil && len(rows) == 2
	})
	ids := map[string]bool{}
	for _, r := range rows {
		ids[r.ClientRequestID] = true
		if r.StatusCode != 200 || r.ServedEntity != "gpt-mini" || r.Request == "" || r.Response == "" || r.SamplingFraction != 1 ||
			!strings.HasPrefix(r.Requester, e.AnalystID) || strings.Contains(r.Request, email) {
			t.Errorf("row %+v", r)
		}
	}
	if !ids["r-1"] || !ids["r-2"] {
		t.Errorf("rows %v", ids)
	}
	// The admin API shows the same rows.
	areq, _ := http.NewRequest("GET", e.URL+"/admin/v1/inference-log?endpoint=logged", nil)
	areq.Header.Set("Authorization", "Bearer "+e.Admin)
	aresp, err := http.DefaultClient.Do(areq)
	if err != nil {
		t.Fatal(err)
	}
	var listed struct {
		Rows []struct {
			RequestID string `json:"databricks_request_id"`
			Request   string `json:"request"`
		} `json:"rows"`
	}
	json.NewDecoder(aresp.Body).Decode(&listed)
	aresp.Body.Close()
	if aresp.StatusCode != 200 || len(listed.Rows) != 2 || listed.Rows[0].RequestID == "" || strings.Contains(listed.Rows[0].Request, email) {
		t.Fatalf("admin inference log: %d %+v", aresp.StatusCode, listed)
	}
}

// TestDatabricksEndpointStateFollowsBackend creates a custom-model endpoint
// in front of a model server that is still starting: it is not ready (and
// not served) until the server's health check passes, then it is.
func TestDatabricksEndpointStateFollowsBackend(t *testing.T) {
	e := newDbxEnv(t, func(e *dbxEnv) { e.mlflowUp.Store(false) })
	ctx := context.Background()
	admin := e.workspace(t, e.Admin)
	wait, err := admin.ServingEndpoints.Create(ctx, dbxserving.CreateServingEndpoint{Name: "fraud",
		Config: &dbxserving.EndpointCoreConfigInput{ServedEntities: []dbxserving.ServedEntityInput{{
			EntityName: "fraud-model", EntityVersion: "3", WorkloadSize: "Small"}}}})
	if err != nil {
		t.Fatal(err)
	}
	_ = wait // the SDK's waiter would block until READY
	// Several health-check intervals pass; the server is still loading.
	for range 5 {
		got, err := admin.ServingEndpoints.GetByName(ctx, "fraud")
		if err != nil {
			t.Fatal(err)
		}
		if got.State.Ready != dbxserving.EndpointStateReadyNotReady || got.State.ConfigUpdate != dbxserving.EndpointStateConfigUpdateInProgress {
			t.Fatalf("state while the backend starts: %+v", got.State)
		}
		time.Sleep(100 * time.Millisecond)
	}
	query := func() (*dbxserving.QueryEndpointResponse, error) {
		return admin.ServingEndpoints.Query(ctx, dbxserving.QueryEndpointInput{Name: "fraud",
			DataframeSplit: &dbxserving.DataframeSplitInput{Columns: []any{"amount"}, Data: []any{[]any{50}}}})
	}
	if _, err := query(); err == nil {
		t.Fatal("an endpoint whose backend is not ready answered")
	}
	e.mlflowUp.Store(true)
	got, err := admin.ServingEndpoints.WaitGetServingEndpointNotUpdating(ctx, "fraud", 20*time.Second, nil)
	if err != nil {
		t.Fatalf("not ready after the backend started: %v", err)
	}
	if got.State.Ready != dbxserving.EndpointStateReadyReady {
		t.Fatalf("state %+v", got.State)
	}
	if pred, err := query(); err != nil || len(pred.Predictions) != 1 || pred.Predictions[0] != 0.5 {
		t.Fatalf("query once ready: %+v %v", pred, err)
	}
}
