package serving

import (
	"slices"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/config"
)

func TestCompile(t *testing.T) {
	e := newEnv(t, nil)
	e.writeSecret("llm", "openai", "sk-1")
	e.writeSecret("llm", "azure", "az-1")

	t.Run("split and fallback across external models", func(t *testing.T) {
		b := createBody("split", externalOpenAI("a", "gpt-4o", "{{secrets/llm/openai}}"), externalOpenAI("b", "gpt-4o-mini", "{{secrets/llm/openai}}"))
		b["config"].(map[string]any)["traffic_config"] = map[string]any{"routes": []any{
			map[string]any{"served_entity_name": "b", "traffic_percentage": 30},
			map[string]any{"served_entity_name": "a", "traffic_percentage": 70}}}
		b["ai_gateway"] = map[string]any{"fallback_config": map[string]any{"enabled": true},
			"inference_table_config": map[string]any{"enabled": true}}
		e.do("admin-token", "POST", "/api/2.0/serving-endpoints", b).wantOK(t)
		ep := e.endpoint("split")
		if ep.Kind != config.KindPayPerToken || !slices.Equal(ep.Split, []int{70, 30}) || !ep.Ordered || !ep.Fallback ||
			!ep.CapturePayloads || ep.Gateway == nil || ep.MaxOutputTokens != 4096 || !slices.Equal(ep.APIs, []sluice.API{sluice.APIChat}) {
			t.Fatalf("%+v", ep)
		}
		if len(ep.Targets) != 2 || ep.Targets[0].Name != "a" || ep.Targets[1].Name != "b" || ep.Targets[1].Model != "gpt-4o-mini" {
			t.Fatalf("targets %+v %+v", ep.Targets[0], ep.Targets[1])
		}
		for _, tg := range ep.Targets {
			if tg.Guard == nil || tg.Gate != nil || !tg.Priced || tg.PriceVersion == "" {
				t.Errorf("target %+v", tg)
			}
		}
	})

	t.Run("custom model with a workload size", func(t *testing.T) {
		e.do("admin-token", "POST", "/api/2.0/serving-endpoints", createBody("scoring",
			map[string]any{"entity_name": "scorer", "entity_version": "3", "workload_size": "Small", "scale_to_zero_enabled": true})).wantOK(t)
		ep := e.endpoint("scoring")
		want := []sluice.API{sluice.APIChat, sluice.APICompletions, sluice.APIEmbeddings, sluice.APIInvocations}
		if ep.Kind != config.KindCustom || !slices.Equal(ep.APIs, want) || ep.Split != nil || ep.Fallback || ep.Gateway != nil {
			t.Fatalf("%+v", ep)
		}
		tg := ep.Targets[0]
		if tg.Name != "scorer-3" || tg.Model != "3" || tg.Upstream.Name != "scorer" || tg.Gate == nil {
			t.Fatalf("target %+v", tg)
		}
		g := tg.Gate.(testGate)
		if g.endpoint != "scoring" || g.entity != "scorer-3" || g.c.Concurrency != 4 || g.c.MaxQueueWait.D() != 10*time.Second || g.c.MaxQueue != 64 {
			t.Errorf("gate %+v", g)
		}
	})

	t.Run("provisioned capacity", func(t *testing.T) {
		e.do("admin-token", "POST", "/api/2.0/serving-endpoints", createBody("pt",
			map[string]any{"name": "llama", "entity_name": "vllm", "entity_version": "llama-3.1-8b",
				"capacity": map[string]any{"tokens_per_second": 2000, "hourly_price": "12.50", "max_queue_wait": "3s", "max_queue": 8}},
			map[string]any{"name": "burst", "entity_name": "vllm", "max_provisioned_throughput": 500},
		)).wantErr(t, 400, "INVALID_PARAMETER_VALUE") // two entities, no traffic config
		b := createBody("pt",
			map[string]any{"name": "llama", "entity_name": "vllm", "entity_version": "llama-3.1-8b",
				"capacity": map[string]any{"tokens_per_second": 2000, "hourly_price": "12.50", "max_queue_wait": "3s", "max_queue": 8}},
			map[string]any{"name": "burst", "entity_name": "vllm", "entity_version": "llama-3.1-8b", "max_provisioned_throughput": 500})
		b["config"].(map[string]any)["traffic_config"] = map[string]any{"routes": []any{
			map[string]any{"served_entity_name": "llama", "traffic_percentage": 100},
			map[string]any{"served_entity_name": "burst", "traffic_percentage": 0}}}
		var out Endpoint
		e.do("admin-token", "POST", "/api/2.0/serving-endpoints", b).wantOK(t).decode(t, &out)
		ep := e.endpoint("pt")
		if ep.Kind != config.KindProvisioned || !slices.Equal(ep.Split, []int{100, 0}) || ep.Fallback {
			t.Fatalf("%+v", ep)
		}
		g0, g1 := ep.Targets[0].Gate.(testGate), ep.Targets[1].Gate.(testGate)
		if g0.c.TokensPerSecond != 2000 || g0.c.HourlyPrice != "12.50" || g0.c.MaxQueueWait.D() != 3*time.Second || g0.c.MaxQueue != 8 {
			t.Errorf("capacity gate %+v", g0)
		}
		if g1.c.TokensPerSecond != 500 || g1.c.Concurrency != 0 {
			t.Errorf("throughput gate %+v", g1)
		}
		if c := out.Config.ServedEntities[0].Capacity; c == nil || c.HourlyPrice != "12.50" || c.MaxQueueWait != "3s" {
			t.Errorf("capacity in the answer %+v", c)
		}
	})

	t.Run("azure", func(t *testing.T) {
		e.do("admin-token", "POST", "/api/2.0/serving-endpoints", createBody("az", map[string]any{"external_model": map[string]any{
			"name": "gpt-4o", "provider": "openai", "task": "llm/v1/embeddings",
			"openai_config": map[string]any{"openai_api_key": "{{secrets/llm/azure}}", "openai_api_type": "azuread",
				"openai_api_base": "http://127.0.0.1:9", "openai_api_version": "2024-10-21", "openai_deployment_name": "prod-4o"}}})).wantOK(t)
		u := e.lastBuilt()
		if u.Type != config.TypeAzure || u.Provider != "azure" || u.APIKey != "az-1" || u.APIVersion != "2024-10-21" || u.BaseURL != "http://127.0.0.1:9" {
			t.Errorf("upstream %+v", u)
		}
		ep := e.endpoint("az")
		if ep.Targets[0].Model != "prod-4o" || ep.Targets[0].Name != "gpt-4o" || !slices.Equal(ep.APIs, []sluice.API{sluice.APIEmbeddings}) {
			t.Errorf("%+v %+v", ep, ep.Targets[0])
		}
	})

	t.Run("databricks model serving", func(t *testing.T) {
		e.do("admin-token", "POST", "/api/2.0/serving-endpoints", createBody("dbx", map[string]any{"external_model": map[string]any{
			"name": "databricks-meta-llama-3-3-70b-instruct", "provider": "databricks-model-serving", "task": "llm/v1/chat",
			"databricks_model_serving_config": map[string]any{"databricks_workspace_url": "http://127.0.0.1:9/", "databricks_api_token_plaintext": "dapi-1"}}})).wantOK(t)
		u := e.lastBuilt()
		if u.Type != config.TypeOpenAI || u.Provider != "databricks" || u.BaseURL != "http://127.0.0.1:9/serving-endpoints" || u.APIKey != "dapi-1" {
			t.Errorf("upstream %+v", u)
		}
		if tg := e.endpoint("dbx").Targets[0]; tg.Model != "databricks-meta-llama-3-3-70b-instruct" {
			t.Errorf("target %+v", tg)
		}
	})

	t.Run("custom provider", func(t *testing.T) {
		e.do("admin-token", "POST", "/api/2.0/serving-endpoints", createBody("hdr", map[string]any{"external_model": map[string]any{
			"name": "my-model", "provider": "custom", "task": "llm/v1/completions",
			"custom_provider_config": map[string]any{"custom_provider_url": "http://127.0.0.1:9/v1",
				"api_key_auth": map[string]any{"key": "X-Api-Key", "value_plaintext": "v-1"}}}})).wantOK(t)
		if u := e.lastBuilt(); u.Provider != "self-hosted" || u.APIKey != "" || u.Headers["X-Api-Key"] != "v-1" || u.BaseURL != "http://127.0.0.1:9/v1" {
			t.Errorf("upstream %+v", u)
		}
		e.do("admin-token", "POST", "/api/2.0/serving-endpoints", createBody("bearer", map[string]any{"external_model": map[string]any{
			"name": "my-model", "provider": "custom", "task": "llm/v1/chat",
			"custom_provider_config": map[string]any{"custom_provider_url": "http://127.0.0.1:9/v1",
				"bearer_token_auth": map[string]any{"token_plaintext": "t-1"}}}})).wantOK(t)
		if u := e.lastBuilt(); u.APIKey != "t-1" || len(u.Headers) != 0 {
			t.Errorf("upstream %+v", u)
		}
		if tg := e.endpoint("bearer").Targets[0]; tg.Priced {
			t.Errorf("a model the catalog does not know is priced: %+v", tg)
		}
	})

	t.Run("entities sharing no task", func(t *testing.T) {
		b := createBody("mixed", externalOpenAI("a", "gpt-4o", "{{secrets/llm/openai}}"), map[string]any{"name": "emb", "external_model": map[string]any{
			"name": "text-embedding-3-small", "provider": "openai", "task": "llm/v1/embeddings",
			"openai_config": map[string]any{"openai_api_key": "{{secrets/llm/openai}}", "openai_api_base": "http://127.0.0.1:9/v1"}}})
		b["config"].(map[string]any)["traffic_config"] = map[string]any{"routes": []any{
			map[string]any{"served_entity_name": "a", "traffic_percentage": 50},
			map[string]any{"served_entity_name": "emb", "traffic_percentage": 50}}}
		msg := e.do("admin-token", "POST", "/api/2.0/serving-endpoints", b).wantErr(t, 400, "INVALID_PARAMETER_VALUE")
		if msg == "" {
			t.Error("no message")
		}
	})

	t.Run("default openai base", func(t *testing.T) {
		e.do("admin-token", "POST", "/api/2.0/serving-endpoints", createBody("default-base", map[string]any{"external_model": map[string]any{
			"name": "gpt-4o", "provider": "openai", "task": "llm/v1/chat",
			"openai_config": map[string]any{"openai_api_key": "{{secrets/llm/openai}}", "openai_organization": "org-1"}}})).wantOK(t)
		if u := e.lastBuilt(); u.BaseURL != DefaultOpenAIBase || u.Headers["OpenAI-Organization"] != "org-1" {
			t.Errorf("upstream %+v", u)
		}
	})
}

func TestSecretResolution(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"SLUICE_SECRET_LLM_OPENAI": "from-env", "SLUICE_SECRET_MY_SCOPE_API_KEY_V2": " padded \n"}
	s := secrets{dir: dir, envPrefix: "SLUICE_SECRET_", lookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
	e := &env{t: t, secrets: dir}
	e.writeSecret("llm", "openai", "  from-file\n")
	for _, c := range []struct {
		ref, want string
		err       bool
	}{
		{"{{secrets/llm/openai}}", "from-file", false},         // the file wins
		{"{{ secrets/my-scope/api.key-v2 }}", "padded", false}, // env name: upper case, '-' and '.' as '_'
		{"sk-plain", "sk-plain", false},                        // not a reference: the key itself
		{"{{secrets/llm/missing}}", "", true},
		{"{{secrets/../etc}}", "", true},
		{"{{secrets/llm/..}}", "", true},
		{"{{secrets/llm}}", "", true},
	} {
		got, err := s.value(c.ref)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("%s: got %q, %v", c.ref, got, err)
		}
	}
	e.writeSecret("llm", "empty", "\n")
	if _, err := s.value("{{secrets/llm/empty}}"); err == nil {
		t.Error("an empty secret resolved")
	}
}

func TestRotatedSecretTakesEffectOnConfigUpdate(t *testing.T) {
	e := newEnv(t, nil)
	e.writeSecret("llm", "openai", "old-key")
	body := createBody("chat", externalOpenAI("", "gpt-4o", "{{secrets/llm/openai}}"))
	e.do("admin-token", "POST", "/api/2.0/serving-endpoints", body).wantOK(t)
	e.writeSecret("llm", "openai", "new-key")
	e.do("admin-token", "PATCH", "/api/2.0/serving-endpoints/chat/tags", map[string]any{"add_tags": []any{map[string]any{"key": "x"}}}).wantOK(t)
	if u := e.lastBuilt(); u.APIKey != "old-key" {
		t.Fatalf("a tag change rebuilt the upstream (key %q)", u.APIKey)
	}
	e.do("admin-token", "PUT", "/api/2.0/serving-endpoints/chat/config", body["config"]).wantOK(t)
	if u := e.lastBuilt(); u.APIKey != "new-key" {
		t.Fatalf("config update used key %q", u.APIKey)
	}
}
