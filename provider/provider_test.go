package provider_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/provider"
)

type seen struct {
	method, path, query, auth, apiKey, custom, body string
}

func upstream(t *testing.T) (*httptest.Server, *seen) {
	s := &seen{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		*s = seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get("api-key"), r.Header.Get("X-Custom"), string(b)}
		w.Write([]byte("{}"))
	}))
	t.Cleanup(srv.Close)
	return srv, s
}

func send(t *testing.T, a provider.Adapter, api sluice.API, model string) {
	t.Helper()
	req, err := a.NewRequest(context.Background(), api, model, []byte(`{"model":"m"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The request can be sent again (GetBody) for retries.
	if req.GetBody == nil {
		t.Fatal("no GetBody")
	}
}

func TestOpenAIAdapter(t *testing.T) {
	srv, s := upstream(t)
	// A Databricks-style base URL keeps its path prefix.
	a, err := provider.NewOpenAI(srv.URL+"/serving-endpoints/", "dapi-secret", map[string]string{"X-Custom": "yes"})
	if err != nil {
		t.Fatal(err)
	}
	for api, path := range map[sluice.API]string{
		sluice.APIChat: "/serving-endpoints/chat/completions", sluice.APICompletions: "/serving-endpoints/completions",
		sluice.APIEmbeddings: "/serving-endpoints/embeddings",
	} {
		send(t, a, api, "databricks-meta-llama-3-3-70b-instruct")
		if s.method != "POST" || s.path != path || s.auth != "Bearer dapi-secret" || s.custom != "yes" || s.body != `{"model":"m"}` {
			t.Errorf("%s: upstream saw %+v", api, *s)
		}
	}
}

func TestAzureAdapter(t *testing.T) {
	srv, s := upstream(t)
	a, err := provider.NewAzure(srv.URL, "azure-key", "2024-10-21", nil)
	if err != nil {
		t.Fatal(err)
	}
	send(t, a, sluice.APIChat, "my gpt4o")
	if s.path != "/openai/deployments/my gpt4o/chat/completions" || s.query != "api-version=2024-10-21" {
		t.Errorf("path %q query %q", s.path, s.query)
	}
	if s.apiKey != "azure-key" || s.auth != "" {
		t.Errorf("credentials: api-key %q, Authorization %q", s.apiKey, s.auth)
	}
	send(t, a, sluice.APIEmbeddings, "emb")
	if s.path != "/openai/deployments/emb/embeddings" {
		t.Errorf("embeddings path %q", s.path)
	}
}
