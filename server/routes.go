package server

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/capacity"
	"github.com/sluice-gateway/sluice/proxy"
)

// routes is the one place the HTTP surface is put together.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	p := s.proxy
	mux.Handle("POST /v1/chat/completions", p.Handler(sluice.APIChat))
	mux.Handle("POST /v1/completions", p.Handler(sluice.APICompletions))
	mux.Handle("POST /v1/embeddings", p.Handler(sluice.APIEmbeddings))
	mux.Handle("GET /v1/models", p.Models())
	mux.Handle("GET /v1/models/{model}", p.Models())

	// Databricks Model Serving: the endpoint in the path, the API decided
	// by the payload; and the OpenAI-compatible paths Databricks' own SDKs
	// use (base URL <workspace>/serving-endpoints, model = endpoint).
	dbx := func(api sluice.API, param string) http.Handler {
		return p.Route(proxy.Route{API: api, EndpointParam: param, Dialect: proxy.DialectDatabricks})
	}
	mux.Handle("POST /serving-endpoints/{name}/invocations", dbx("", "name"))
	mux.Handle("POST /serving-endpoints/chat/completions", dbx(sluice.APIChat, ""))
	mux.Handle("POST /serving-endpoints/completions", dbx(sluice.APICompletions, ""))
	mux.Handle("POST /serving-endpoints/embeddings", dbx(sluice.APIEmbeddings, ""))
	mux.Handle("GET /serving-endpoints/models", p.Models())

	// Azure OpenAI: the deployment in the path names the endpoint.
	for api, path := range map[sluice.API]string{sluice.APIChat: "chat/completions", sluice.APICompletions: "completions", sluice.APIEmbeddings: "embeddings"} {
		mux.Handle("POST /openai/deployments/{name}/"+path, p.Route(proxy.Route{API: api, EndpointParam: "name", RequireQuery: "api-version"}))
		mux.Handle("POST /openai/v1/"+path, p.Handler(api))
	}

	mux.Handle("GET /admin/v1/keys", s.admin(s.adminListKeys))
	mux.Handle("POST /admin/v1/keys", s.admin(s.adminCreateKey))
	mux.Handle("DELETE /admin/v1/keys/{id}", s.admin(s.adminRevokeKey))
	mux.Handle("GET /admin/v1/usage", s.admin(s.adminUsage))
	mux.Handle("GET /admin/v1/teams", s.admin(s.adminListTeams))
	mux.Handle("POST /admin/v1/teams", s.admin(s.adminCreateTeam))
	mux.Handle("GET /admin/v1/teams/{name}", s.admin(s.adminGetTeam))
	mux.Handle("DELETE /admin/v1/teams/{name}", s.admin(s.adminDeleteTeam))
	mux.Handle("GET /admin/v1/budgets", s.admin(s.adminListBudgets))
	mux.Handle("POST /admin/v1/budgets", s.admin(s.adminCreateBudget))
	mux.Handle("GET /admin/v1/budgets/{id}", s.admin(s.adminGetBudget))
	mux.Handle("DELETE /admin/v1/budgets/{id}", s.admin(s.adminDeleteBudget))

	s.serving.mgr.Register(mux, s.authn)

	capReport := capacity.Handler(s.store, s.now)
	mux.Handle("GET /admin/v1/capacity", s.adminHTTP(capReport))
	mux.Handle("GET /admin/v1/inference-log", s.admin(s.adminInferenceLog))
	mux.Handle("GET /admin/v1/requests/{id}", s.admin(s.adminRequest))

	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		apierr.WriteOpenAI(w, apierr.NotFound("", "unknown_url", "Unknown request URL: %s %s.", r.Method, r.URL.Path))
	})
	return tracked(s, recoverer(s, mux))
}

// readyz answers 200 while the server accepts work and its store answers.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	if s.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("draining\n"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.store.Usage(ctx, "readyz-probe"); err != nil && err != sluice.ErrNotFound {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("store unavailable\n"))
		return
	}
	w.Write([]byte("ready\n"))
}

// tracked counts handlers in flight for graceful shutdown.
func tracked(s *Server, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer s.inflight.Done()
		next.ServeHTTP(w, r)
	})
}

// recoverer turns a panicking handler into a 500 and a log line, except for
// http.ErrAbortHandler, which cuts a response on purpose.
func recoverer(s *Server, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("handler panic", "panic", v, "path", r.URL.Path)
				panic(http.ErrAbortHandler)
			}
		}()
		next.ServeHTTP(w, r)
	})
}
