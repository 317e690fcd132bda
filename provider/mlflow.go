package provider

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/sluice-gateway/sluice"
)

var _ Adapter = (*MLflow)(nil)

// MLflow speaks an MLflow scoring server, the shape of Databricks custom
// model endpoints: every payload (MLflow's dataframe_split,
// dataframe_records, instances or inputs, and chat, completions or
// embeddings bodies for LLM models) is POSTed to BaseURL/invocations as is.
type MLflow struct {
	u      *url.URL
	header http.Header
}

// NewMLflow returns an adapter for the scoring server at baseURL, such as
// http://127.0.0.1:5001. A non-empty token is sent as a Bearer credential.
func NewMLflow(baseURL, token string, headers map[string]string) (*MLflow, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/") + "/invocations")
	if err != nil {
		return nil, fmt.Errorf("base URL: %w", err)
	}
	h := baseHeader(headers)
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return &MLflow{u: u, header: h}, nil
}

// NewRequest implements Adapter; every API goes to /invocations.
func (a *MLflow) NewRequest(ctx context.Context, _ sluice.API, _ string, body []byte) (*http.Request, error) {
	return newRequest(ctx, a.u, a.header, body), nil
}
