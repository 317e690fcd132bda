// Package provider adapts Sluice's calls to each kind of upstream API:
// OpenAI-compatible servers (OpenAI, vLLM, llama.cpp, Ollama, Databricks'
// /serving-endpoints paths) and Azure OpenAI deployments. An adapter only
// builds the upstream request; sending it, metering and error mapping are
// the proxy's. The client's credentials are never forwarded: the adapter
// adds the upstream's own.
package provider

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/sluice-gateway/sluice"
)

// Adapter builds upstream requests.
type Adapter interface {
	// NewRequest returns the HTTP request that performs api on the
	// upstream's model with the given JSON body.
	NewRequest(ctx context.Context, api sluice.API, model string, body []byte) (*http.Request, error)
}

var (
	_ Adapter = (*OpenAI)(nil)
	_ Adapter = (*Azure)(nil)
)

var paths = map[sluice.API]string{
	sluice.APIChat:        "/chat/completions",
	sluice.APICompletions: "/completions",
	sluice.APIEmbeddings:  "/embeddings",
}

// OpenAI speaks the OpenAI REST API under BaseURL (which includes any /v1
// or /serving-endpoints prefix), authenticating with a Bearer key.
type OpenAI struct {
	urls   map[sluice.API]*url.URL
	header http.Header
}

// NewOpenAI returns an adapter for an OpenAI-compatible server.
func NewOpenAI(baseURL, apiKey string, headers map[string]string) (*OpenAI, error) {
	a := &OpenAI{urls: map[sluice.API]*url.URL{}, header: baseHeader(headers)}
	base := strings.TrimRight(baseURL, "/")
	for api, p := range paths {
		u, err := url.Parse(base + p)
		if err != nil {
			return nil, fmt.Errorf("base URL: %w", err)
		}
		a.urls[api] = u
	}
	if apiKey != "" {
		a.header.Set("Authorization", "Bearer "+apiKey)
	}
	return a, nil
}

// NewRequest implements Adapter.
func (a *OpenAI) NewRequest(ctx context.Context, api sluice.API, _ string, body []byte) (*http.Request, error) {
	u, ok := a.urls[api]
	if !ok {
		return nil, fmt.Errorf("unsupported api %q", api)
	}
	return newRequest(ctx, u, a.header, body), nil
}

// Azure speaks Azure OpenAI: the model is a deployment in the URL path,
// the API version a query parameter, and the key goes in the api-key header.
type Azure struct {
	base    string
	version string
	header  http.Header
}

// NewAzure returns an adapter for an Azure OpenAI resource such as
// https://RESOURCE.openai.azure.com.
func NewAzure(baseURL, apiKey, apiVersion string, headers map[string]string) (*Azure, error) {
	if _, err := url.Parse(baseURL); err != nil {
		return nil, fmt.Errorf("base URL: %w", err)
	}
	a := &Azure{base: strings.TrimRight(baseURL, "/"), version: apiVersion, header: baseHeader(headers)}
	if apiKey != "" {
		a.header.Set("api-key", apiKey)
	}
	return a, nil
}

// NewRequest implements Adapter.
func (a *Azure) NewRequest(ctx context.Context, api sluice.API, deployment string, body []byte) (*http.Request, error) {
	p, ok := paths[api]
	if !ok {
		return nil, fmt.Errorf("unsupported api %q", api)
	}
	u, err := url.Parse(a.base + "/openai/deployments/" + url.PathEscape(deployment) + p + "?api-version=" + url.QueryEscape(a.version))
	if err != nil {
		return nil, err
	}
	return newRequest(ctx, u, a.header, body), nil
}

func baseHeader(extra map[string]string) http.Header {
	h := http.Header{}
	for k, v := range extra {
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	return h
}

func newRequest(ctx context.Context, u *url.URL, h http.Header, body []byte) *http.Request {
	r := &http.Request{
		Method:        http.MethodPost,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h.Clone(),
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Host:          u.Host,
		GetBody: func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(body)), nil
		},
	}
	return r.WithContext(ctx)
}
