package serving

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/proxy"
)

func TestCreateGetListDelete(t *testing.T) {
	e := newEnv(t, nil)
	e.writeSecret("llm", "openai", "sk-file-secret\n")

	r := e.do("admin-token", "POST", "/api/2.0/serving-endpoints", map[string]any{
		"name":        "chat",
		"config":      map[string]any{"served_entities": []any{externalOpenAI("", "gpt-4o", "{{secrets/llm/openai}}")}},
		"tags":        []any{map[string]any{"key": "team", "value": "ml"}},
		"description": "chat for the ML team",
	}).wantOK(t)
	var ep Endpoint
	r.decode(t, fresh(&ep))
	if ep.Name != "chat" || len(ep.ID) != 32 || ep.Creator != "k-admin" || ep.PermissionLevel != CanManage {
		t.Fatalf("endpoint %+v", ep)
	}
	if want := e.now.UnixMilli(); ep.CreationTimestamp != want || ep.LastUpdatedTimestamp != want {
		t.Errorf("timestamps %d %d, want %d ms", ep.CreationTimestamp, ep.LastUpdatedTimestamp, want)
	}
	if *ep.State != (State{StateReady, ConfigNotUpdating}) || ep.PendingConfig != nil || ep.Config == nil {
		t.Fatalf("a config whose entities are ready is applied at once: state %+v pending %v", ep.State, ep.PendingConfig)
	}
	c := ep.Config
	if c.ConfigVersion != 1 || len(c.ServedEntities) != 1 || c.ServedEntities[0].Name != "gpt-4o" ||
		len(c.TrafficConfig.Routes) != 1 || c.TrafficConfig.Routes[0] != (Route{ServedEntityName: "gpt-4o", TrafficPercentage: 100}) {
		t.Fatalf("config %s", r.body)
	}
	if got := c.ServedEntities[0].ExternalModel.OpenAIConfig.OpenAIAPIKey; got != "{{secrets/llm/openai}}" {
		t.Errorf("the reference is shown, got %q", got)
	}
	if ep.Task != TaskChat || ep.Description != "chat for the ML team" || len(ep.Tags) != 1 {
		t.Errorf("task %q description %q tags %v", ep.Task, ep.Description, ep.Tags)
	}
	if u := e.lastBuilt(); u.APIKey != "sk-file-secret" || u.BaseURL != "http://127.0.0.1:9/v1" || u.Type != config.TypeOpenAI ||
		u.Provider != "openai" || u.Name != "chat/gpt-4o" {
		t.Errorf("upstream built %+v", u)
	}
	served := e.endpoint("chat")
	if served == nil || served.Targets[0].Model != "gpt-4o" || !served.Targets[0].Priced || served.Targets[0].Name != "gpt-4o" {
		t.Fatalf("applied %+v", served)
	}

	// get
	r = e.do("admin-token", "GET", "/api/2.0/serving-endpoints/chat", nil).wantOK(t)
	var got Endpoint
	r.decode(t, &got)
	if got.ID != ep.ID || got.Config.ConfigVersion != 1 {
		t.Errorf("get %s", r.body)
	}

	// list: the configuration file's endpoint and the new one, by name
	var list struct {
		Endpoints []summary `json:"endpoints"`
	}
	e.do("admin-token", "GET", "/api/2.0/serving-endpoints", nil).wantOK(t).decode(t, fresh(&list))
	if len(list.Endpoints) != 2 || list.Endpoints[0].Name != "chat" || list.Endpoints[1].Name != "config-chat" {
		t.Fatalf("list %+v", list)
	}
	if s := list.Endpoints[0]; s.Config == nil || s.Config.ServedEntities[0].ExternalModel.Name != "gpt-4o" || s.State.Ready != StateReady {
		t.Errorf("summary %+v", s)
	}
	// a key without permissions sees only what it may use
	e.do("yaml-token", "GET", "/api/2.0/serving-endpoints", nil).wantOK(t).decode(t, fresh(&list))
	if len(list.Endpoints) != 1 || list.Endpoints[0].Name != "config-chat" {
		t.Fatalf("list for a restricted key %+v", list)
	}

	// delete
	e.do("admin-token", "DELETE", "/api/2.0/serving-endpoints/chat", nil).wantOK(t)
	if e.endpoint("chat") != nil {
		t.Error("a deleted endpoint is still served")
	}
	e.do("admin-token", "GET", "/api/2.0/serving-endpoints/chat", nil).wantErr(t, 404, "RESOURCE_DOES_NOT_EXIST")
}

func TestErrorCodes(t *testing.T) {
	e := newEnv(t, nil)
	e.env["SLUICE_SECRET_LLM_OPENAI"] = "sk-env"
	body := createBody("chat", externalOpenAI("", "gpt-4o", "{{secrets/llm/openai}}"))
	e.do("admin-token", "POST", "/api/2.0/serving-endpoints", body).wantOK(t)

	cases := []struct {
		name, token, method, path string
		body                      any
		status                    int
		code                      string
	}{
		{"name taken", "admin-token", "POST", "/api/2.0/serving-endpoints", body, 409, "RESOURCE_ALREADY_EXISTS"},
		{"name taken by the configuration file", "admin-token", "POST", "/api/2.0/serving-endpoints",
			createBody("config-chat", externalOpenAI("", "gpt-4o", "{{secrets/llm/openai}}")), 409, "RESOURCE_ALREADY_EXISTS"},
		{"get unknown", "admin-token", "GET", "/api/2.0/serving-endpoints/nope", nil, 404, "RESOURCE_DOES_NOT_EXIST"},
		{"delete unknown", "admin-token", "DELETE", "/api/2.0/serving-endpoints/nope", nil, 404, "RESOURCE_DOES_NOT_EXIST"},
		{"config of unknown", "admin-token", "PUT", "/api/2.0/serving-endpoints/nope/config",
			map[string]any{"served_entities": []any{externalOpenAI("", "gpt-4o", "{{secrets/llm/openai}}")}}, 404, "RESOURCE_DOES_NOT_EXIST"},
		{"ai gateway of unknown", "admin-token", "PUT", "/api/2.0/serving-endpoints/nope/ai-gateway", map[string]any{}, 404, "RESOURCE_DOES_NOT_EXIST"},
		{"tags of unknown", "admin-token", "PATCH", "/api/2.0/serving-endpoints/nope/tags", map[string]any{}, 404, "RESOURCE_DOES_NOT_EXIST"},
		{"permissions of unknown id", "admin-token", "GET", "/api/2.0/permissions/serving-endpoints/0123", nil, 404, "RESOURCE_DOES_NOT_EXIST"},
		{"no key", "", "GET", "/api/2.0/serving-endpoints", nil, 401, "UNAUTHENTICATED"},
		{"bad key", "nope", "POST", "/api/2.0/serving-endpoints", body, 401, "UNAUTHENTICATED"},
		{"create without admin", "alice-token", "POST", "/api/2.0/serving-endpoints",
			createBody("mine", externalOpenAI("", "gpt-4o", "{{secrets/llm/openai}}")), 403, "PERMISSION_DENIED"},
		{"get without permission", "alice-token", "GET", "/api/2.0/serving-endpoints/chat", nil, 403, "PERMISSION_DENIED"},
		{"delete without permission", "alice-token", "DELETE", "/api/2.0/serving-endpoints/chat", nil, 403, "PERMISSION_DENIED"},
		{"change the configuration file's endpoint", "admin-token", "PUT", "/api/2.0/serving-endpoints/config-chat/config",
			map[string]any{"served_entities": []any{externalOpenAI("", "gpt-4o", "{{secrets/llm/openai}}")}}, 400, "INVALID_PARAMETER_VALUE"},
		{"delete the configuration file's endpoint", "admin-token", "DELETE", "/api/2.0/serving-endpoints/config-chat", nil, 400, "INVALID_PARAMETER_VALUE"},
		{"not JSON", "admin-token", "POST", "/api/2.0/serving-endpoints", "{", 400, "MALFORMED_REQUEST"},
		{"unknown field", "admin-token", "POST", "/api/2.0/serving-endpoints", map[string]any{"name": "x", "served_entitys": []any{}}, 400, "MALFORMED_REQUEST"},
		{"no such route", "admin-token", "GET", "/api/2.0/serving-endpoints/chat/nothing", nil, 404, "ENDPOINT_NOT_FOUND"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.do(c.token, c.method, c.path, c.body).wantErr(t, c.status, c.code)
		})
	}
}

func TestInvalidConfigs(t *testing.T) {
	e := newEnv(t, nil)
	e.writeSecret("llm", "openai", "sk-from-file")
	ok := func() map[string]any { return externalOpenAI("", "gpt-4o", "{{secrets/llm/openai}}") }
	eleven := make([]map[string]any, 11)
	for i := range eleven {
		eleven[i] = externalOpenAI(fmt.Sprintf("e%d", i), "gpt-4o", "{{secrets/llm/openai}}")
	}
	withProvider := func(p string) map[string]any {
		return map[string]any{"external_model": map[string]any{"name": "claude", "provider": p, "task": "llm/v1/chat",
			"anthropic_config": map[string]any{"anthropic_api_key": "{{secrets/llm/anthropic}}"}}}
	}
	two := func(routes ...any) map[string]any {
		b := createBody("split", externalOpenAI("a", "gpt-4o", "{{secrets/llm/openai}}"), externalOpenAI("b", "gpt-4o-mini", "{{secrets/llm/openai}}"))
		if routes != nil {
			b["config"].(map[string]any)["traffic_config"] = map[string]any{"routes": routes}
		}
		return b
	}
	route := func(name string, pct int) any {
		return map[string]any{"served_entity_name": name, "traffic_percentage": pct}
	}
	cases := []struct {
		name string
		body map[string]any
		want []string // substrings of the message
	}{
		{"bad name", createBody("bad name!", ok()), []string{"name", "1-63 letters"}},
		{"long name", createBody(strings.Repeat("a", 64), ok()), []string{"name"}},
		{"no entities", createBody("x"), []string{"config.served_entities", "at least one"}},
		{"eleven entities", map[string]any{"name": "x", "config": map[string]any{"served_entities": eleven}}, []string{"at most 10"}},
		{"traffic below 100", two(route("a", 50), route("b", 40)), []string{"sum to 90, not 100"}},
		{"traffic to an unknown entity", two(route("a", 50), route("c", 50)), []string{`"c" is not a served entity`}},
		{"several entities, no traffic", two(), []string{"config.traffic_config", "more than one served entity"}},
		{"same entity name twice", createBody("x", externalOpenAI("a", "gpt-4o", "{{secrets/llm/openai}}"), externalOpenAI("a", "gpt-4o", "{{secrets/llm/openai}}")),
			[]string{`"a" is used twice`}},
		{"anthropic", createBody("x", withProvider("anthropic")), []string{`"anthropic" is not supported`, `provider \"custom\"`}},
		{"bedrock", createBody("x", withProvider("amazon-bedrock")), []string{`"amazon-bedrock" is not supported`}},
		{"unknown provider", createBody("x", withProvider("acme")), []string{`"acme" is not a provider`}},
		{"unresolvable secret", createBody("x", externalOpenAI("", "gpt-4o", "{{secrets/llm/missing}}")),
			[]string{"{{secrets/llm/missing}} cannot be resolved", "SLUICE_SECRET_LLM_MISSING"}},
		{"malformed reference", createBody("x", externalOpenAI("", "gpt-4o", "{{secrets/llm}}")), []string{"not a valid secret reference"}},
		{"unknown upstream", createBody("x", map[string]any{"entity_name": "nowhere", "entity_version": "1"}),
			[]string{`"nowhere" is not an upstream`}},
		{"entity and external model", createBody("x", map[string]any{"entity_name": "vllm", "external_model": ok()["external_model"]}),
			[]string{"not both"}},
		{"bad task", createBody("x", map[string]any{"external_model": map[string]any{"name": "m", "provider": "openai", "task": "llm/v1/images",
			"openai_config": map[string]any{"openai_api_key_plaintext": "k"}}}), []string{"task"}},
		{"azure without deployment", createBody("x", map[string]any{"external_model": map[string]any{"name": "gpt-4o", "provider": "openai", "task": "llm/v1/chat",
			"openai_config": map[string]any{"openai_api_key_plaintext": "k", "openai_api_type": "azure", "openai_api_base": "https://r.openai.azure.com", "openai_api_version": "2024-10-21"}}}),
			[]string{"openai_deployment_name"}},
		{"custom without auth", createBody("x", map[string]any{"external_model": map[string]any{"name": "m", "provider": "custom", "task": "llm/v1/chat",
			"custom_provider_config": map[string]any{"custom_provider_url": "http://127.0.0.1:9/v1"}}}), []string{"api_key_auth or bearer_token_auth"}},
		{"bad URL", createBody("x", map[string]any{"external_model": map[string]any{"name": "m", "provider": "custom", "task": "llm/v1/chat",
			"custom_provider_config": map[string]any{"custom_provider_url": "ftp://127.0.0.1/x", "bearer_token_auth": map[string]any{"token_plaintext": "t"}}}}),
			[]string{"custom_provider_url", "http or https"}},
		{"bad workload size", createBody("x", map[string]any{"entity_name": "scorer", "workload_size": "Huge"}), []string{`"Huge" is not Small`}},
		{"bad capacity", createBody("x", map[string]any{"entity_name": "vllm", "capacity": map[string]any{"hourly_price": "12.50"}}),
			[]string{"needs tokens_per_second or concurrency"}},
		{"bad AI Gateway", map[string]any{"name": "x", "config": map[string]any{"served_entities": []any{ok()}},
			"ai_gateway": map[string]any{"rate_limits": []any{map[string]any{"key": "planet", "renewal_period": "minute", "calls": 1}}}},
			[]string{"ai_gateway.rate_limits[0].key"}},
		{"legacy served_models", map[string]any{"name": "x", "config": map[string]any{"served_models": []any{map[string]any{"model_name": "m"}}}},
			[]string{"served_models"}},
		{"egress refused", createBody("x", map[string]any{"external_model": map[string]any{"name": "m", "provider": "custom", "task": "llm/v1/chat",
			"custom_provider_config": map[string]any{"custom_provider_url": "http://refuse.example/v1", "bearer_token_auth": map[string]any{"token_plaintext": "t"}}}}),
			[]string{"could not be set up"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("admin-token", "POST", "/api/2.0/serving-endpoints", c.body)
			msg := r.wantErr(t, 400, "INVALID_PARAMETER_VALUE")
			for _, w := range c.want {
				if !strings.Contains(msg, strings.ReplaceAll(w, `\"`, `"`)) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
			for _, secret := range []string{"sk-from-file", "refuse.example", "127.0.0.1"} {
				if strings.Contains(string(r.body), secret) {
					t.Errorf("answer shows %q: %s", secret, r.body)
				}
			}
		})
	}
	var list listResponse
	e.do("admin-token", "GET", "/api/2.0/serving-endpoints", nil).wantOK(t).decode(t, fresh(&list))
	if len(list.Endpoints) != 1 {
		t.Errorf("refused creations left endpoints behind: %+v", list)
	}
}

func TestPendingConfigBecomesReadyOrFails(t *testing.T) {
	e := newEnv(t, nil)
	e.setReady("vllm", false)
	body := createBody("llama", map[string]any{"entity_name": "vllm", "entity_version": "meta-llama/Llama-3.1-8B"})
	var ep Endpoint
	e.do("admin-token", "POST", "/api/2.0/serving-endpoints", body).wantOK(t).decode(t, fresh(&ep))
	if *ep.State != (State{StateNotReady, ConfigInProgress}) || ep.Config != nil || ep.PendingConfig == nil ||
		ep.PendingConfig.ConfigVersion != 1 || ep.PendingConfig.StartTime != e.now.UnixMilli() {
		t.Fatalf("a new endpoint whose entity is not ready: %+v", ep)
	}
	if se := ep.PendingConfig.ServedEntities[0]; se.Name != "vllm-meta-llama-Llama-3.1-8B" || se.State.Deployment != "DEPLOYMENT_CREATING" {
		t.Errorf("pending entity %+v", se)
	}
	if e.endpoint("llama") != nil {
		t.Fatal("an endpoint with no ready config is served")
	}
	e.sync() // still not ready: nothing moves
	e.do("admin-token", "GET", "/api/2.0/serving-endpoints/llama", nil).wantOK(t).decode(t, fresh(&ep))
	if ep.State.ConfigUpdate != ConfigInProgress {
		t.Fatalf("state %+v", ep.State)
	}

	e.setReady("vllm", true)
	e.sync()
	e.do("admin-token", "GET", "/api/2.0/serving-endpoints/llama", nil).wantOK(t).decode(t, fresh(&ep))
	if *ep.State != (State{StateReady, ConfigNotUpdating}) || ep.PendingConfig != nil || ep.Config.ConfigVersion != 1 {
		t.Fatalf("after the entity became ready: %+v", ep)
	}
	v1 := e.endpoint("llama")
	if v1 == nil || v1.Targets[0].Model != "meta-llama/Llama-3.1-8B" || v1.Targets[0].Upstream.Name != "vllm" {
		t.Fatalf("served %+v", v1)
	}

	// An update waits for its entities; the old config keeps serving.
	e.setReady("scorer", false)
	upd := map[string]any{"served_entities": []any{map[string]any{"entity_name": "scorer", "workload_size": "Small"}}}
	e.do("admin-token", "PUT", "/api/2.0/serving-endpoints/llama/config", upd).wantOK(t).decode(t, fresh(&ep))
	if *ep.State != (State{StateReady, ConfigInProgress}) || ep.Config.ConfigVersion != 1 || ep.PendingConfig.ConfigVersion != 2 {
		t.Fatalf("during the update: %+v", ep)
	}
	if e.endpoint("llama") != v1 {
		t.Fatal("the old config stopped serving during the update")
	}
	e.do("admin-token", "PUT", "/api/2.0/serving-endpoints/llama/config", upd).wantErr(t, 409, "RESOURCE_CONFLICT")

	e.advance(10*time.Minute - time.Second)
	e.sync()
	e.do("admin-token", "GET", "/api/2.0/serving-endpoints/llama", nil).wantOK(t).decode(t, fresh(&ep))
	if ep.State.ConfigUpdate != ConfigInProgress {
		t.Fatalf("failed before the ready timeout: %+v", ep.State)
	}
	e.advance(time.Second)
	e.sync()
	e.do("admin-token", "GET", "/api/2.0/serving-endpoints/llama", nil).wantOK(t).decode(t, fresh(&ep))
	if *ep.State != (State{StateReady, ConfigUpdateFailed}) || ep.PendingConfig != nil || ep.Config.ConfigVersion != 1 {
		t.Fatalf("after the ready timeout: %+v", ep)
	}
	if got := e.endpoint("llama"); got == nil || got.Targets[0].Upstream.Name != "vllm" {
		t.Fatal("the old config does not serve after a failed update")
	}

	// The next update gets a new version and, once ready, replaces the old one.
	e.setReady("scorer", true)
	e.do("admin-token", "PUT", "/api/2.0/serving-endpoints/llama/config", upd).wantOK(t).decode(t, fresh(&ep))
	if *ep.State != (State{StateReady, ConfigNotUpdating}) || ep.Config.ConfigVersion != 3 {
		t.Fatalf("after a ready update: %+v", ep)
	}
	got := e.endpoint("llama")
	if got.Targets[0].Upstream.Name != "scorer" || got.Kind != config.KindCustom {
		t.Fatalf("served after the update: %+v", got)
	}
}

func TestNewEndpointFailsWhenNeverReady(t *testing.T) {
	e := newEnv(t, nil)
	e.setReady("vllm", false)
	e.do("admin-token", "POST", "/api/2.0/serving-endpoints", createBody("x", map[string]any{"entity_name": "vllm"})).wantOK(t)
	e.advance(11 * time.Minute)
	e.sync()
	var ep Endpoint
	e.do("admin-token", "GET", "/api/2.0/serving-endpoints/x", nil).wantOK(t).decode(t, fresh(&ep))
	if *ep.State != (State{StateNotReady, ConfigUpdateFailed}) || ep.Config != nil || ep.PendingConfig != nil {
		t.Fatalf("%+v", ep)
	}
}

func TestPermissions(t *testing.T) {
	e := newEnv(t, nil)
	e.writeSecret("llm", "openai", "sk-1")
	var ep Endpoint
	e.do("admin-token", "POST", "/api/2.0/serving-endpoints", createBody("chat", externalOpenAI("", "gpt-4o", "{{secrets/llm/openai}}"))).wantOK(t).decode(t, fresh(&ep))
	perms := "/api/2.0/permissions/serving-endpoints/" + ep.ID

	e.do("alice-token", "GET", "/api/2.0/serving-endpoints/chat", nil).wantErr(t, 403, "PERMISSION_DENIED")
	if err := e.admit("alice-token", "chat"); err == nil {
		t.Fatal("a key without CAN_QUERY may query")
	}
	if err := e.admit("admin-token", "chat"); err != nil {
		t.Fatal(err)
	}

	// PATCH gives the ml team CAN_VIEW
	var p permissions
	e.do("admin-token", "PATCH", perms, map[string]any{"access_control_list": []any{
		map[string]any{"group_name": "ml", "permission_level": "CAN_VIEW"}}}).wantOK(t).decode(t, fresh(&p))
	if p.ObjectID != "/serving-endpoints/"+ep.ID || p.ObjectType != "serving-endpoint" || len(p.AccessControlList) != 3 {
		t.Fatalf("permissions %+v", p)
	}
	var got Endpoint
	e.do("alice-token", "GET", "/api/2.0/serving-endpoints/chat", nil).wantOK(t).decode(t, &got)
	if got.PermissionLevel != CanView {
		t.Errorf("permission level %q", got.PermissionLevel)
	}
	e.do("alice-token", "PUT", "/api/2.0/serving-endpoints/chat/ai-gateway", map[string]any{}).wantErr(t, 403, "PERMISSION_DENIED")
	e.do("alice-token", "GET", perms, nil).wantErr(t, 403, "PERMISSION_DENIED")
	e.do("bob-token", "GET", "/api/2.0/serving-endpoints/chat", nil).wantErr(t, 403, "PERMISSION_DENIED")
	if err := e.admit("alice-token", "chat"); err == nil {
		t.Fatal("CAN_VIEW may query")
	}

	// PATCH merges: alice's key may query, the team still views
	e.do("admin-token", "PATCH", perms, map[string]any{"access_control_list": []any{
		map[string]any{"user_name": "k-alice", "permission_level": "CAN_QUERY"}}}).wantOK(t)
	if err := e.admit("alice-token", "chat"); err != nil {
		t.Fatalf("CAN_QUERY refused: %v", err)
	}
	// a service principal is a key id too, and CAN_MANAGE lets bob change the endpoint
	e.do("admin-token", "PATCH", perms, map[string]any{"access_control_list": []any{
		map[string]any{"service_principal_name": "k-bob", "permission_level": "CAN_MANAGE"}}}).wantOK(t)
	e.do("bob-token", "PATCH", "/api/2.0/serving-endpoints/chat/tags", map[string]any{"add_tags": []any{map[string]any{"key": "owner", "value": "bob"}}}).wantOK(t)
	// but only admins may reference secrets: Sluice's secrets have no access lists
	msg := e.do("bob-token", "PUT", "/api/2.0/serving-endpoints/chat/config", map[string]any{"served_entities": []any{
		externalOpenAI("", "gpt-4o", "{{secrets/llm/openai}}")}}).wantErr(t, 403, "PERMISSION_DENIED")
	if !strings.Contains(msg, "{{secrets/llm/openai}}") || strings.Contains(msg, "sk-1") {
		t.Errorf("message %q", msg)
	}
	e.do("bob-token", "PUT", "/api/2.0/serving-endpoints/chat/config", map[string]any{"served_entities": []any{
		externalOpenAI("", "gpt-4o", "sk-bobs-own")}}).wantOK(t)
	e.do("bob-token", "GET", perms, nil).wantOK(t).decode(t, fresh(&p))
	if len(p.AccessControlList) != 5 {
		t.Errorf("permissions %+v", p)
	}

	// PUT replaces
	e.do("admin-token", "PUT", perms, map[string]any{"access_control_list": []any{
		map[string]any{"group_name": "users", "permission_level": "CAN_VIEW"}}}).wantOK(t).decode(t, fresh(&p))
	if len(p.AccessControlList) != 3 || p.AccessControlList[2].GroupName != "users" {
		t.Fatalf("after PUT %+v", p)
	}
	if err := e.admit("alice-token", "chat"); err == nil {
		t.Fatal("PUT did not replace alice's CAN_QUERY")
	}
	e.do("bob-token", "GET", "/api/2.0/serving-endpoints/chat", nil).wantOK(t) // every key views
	e.do("bob-token", "DELETE", "/api/2.0/serving-endpoints/chat", nil).wantErr(t, 403, "PERMISSION_DENIED")

	var levels permissionLevels
	e.do("bob-token", "GET", perms+"/permissionLevels", nil).wantOK(t).decode(t, &levels)
	if len(levels.PermissionLevels) != 3 || levels.PermissionLevels[2].PermissionLevel != CanManage {
		t.Errorf("levels %+v", levels)
	}
	e.do("admin-token", "PATCH", perms, map[string]any{"access_control_list": []any{
		map[string]any{"user_name": "k-bob", "permission_level": "CAN_EAT"}}}).wantErr(t, 400, "INVALID_PARAMETER_VALUE")
	e.do("admin-token", "PATCH", perms, map[string]any{"access_control_list": []any{
		map[string]any{"user_name": "k-bob", "group_name": "web", "permission_level": "CAN_VIEW"}}}).wantErr(t, 400, "INVALID_PARAMETER_VALUE")

	// endpoints of the configuration file are not checked by the admitter
	if err := e.admit("bob-token", "config-chat"); err != nil {
		t.Errorf("configuration-file endpoint refused: %v", err)
	}
}

func TestAIGatewayAndTags(t *testing.T) {
	e := newEnv(t, nil)
	e.writeSecret("llm", "openai", "sk-1")
	b := createBody("chat", externalOpenAI("a", "gpt-4o", "{{secrets/llm/openai}}"), externalOpenAI("b", "gpt-4o-mini", "{{secrets/llm/openai}}"))
	b["config"].(map[string]any)["traffic_config"] = map[string]any{"routes": []any{
		map[string]any{"served_entity_name": "a", "traffic_percentage": 80},
		map[string]any{"served_entity_name": "b", "traffic_percentage": 20}}}
	e.do("admin-token", "POST", "/api/2.0/serving-endpoints", b).wantOK(t)
	before := e.endpoint("chat")
	if before.Fallback || before.Gateway != nil || before.CapturePayloads {
		t.Fatalf("defaults: %+v", before)
	}
	builds := len(e.built)

	g := map[string]any{
		"fallback_config":        map[string]any{"enabled": true},
		"inference_table_config": map[string]any{"enabled": true, "catalog_name": "main", "schema_name": "logs", "table_name_prefix": "chat"},
		"rate_limits":            []any{map[string]any{"key": "user_group", "principal": "ml", "renewal_period": "minute", "calls": 100}},
		"usage_tracking_config":  map[string]any{"enabled": true},
		"guardrails":             map[string]any{"input": map[string]any{"pii": map[string]any{"behavior": "MASK"}}},
	}
	var out sluice.AIGateway
	e.do("admin-token", "PUT", "/api/2.0/serving-endpoints/chat/ai-gateway", g).wantOK(t).decode(t, &out)
	if out.FallbackConfig == nil || !out.FallbackConfig.Enabled || len(out.RateLimits) != 1 || out.Guardrails.Input.PII.Behavior != "MASK" {
		t.Fatalf("answer %+v", out)
	}
	after := e.endpoint("chat")
	if !after.Fallback || !after.CapturePayloads || after.Gateway == nil || after.Gateway.RateLimits[0].Principal != "ml" {
		t.Fatalf("served %+v", after)
	}
	if after.Targets[0] != before.Targets[0] || len(e.built) != builds {
		t.Error("changing AI Gateway settings rebuilt the targets")
	}
	e.do("admin-token", "PUT", "/api/2.0/serving-endpoints/chat/ai-gateway", map[string]any{
		"guardrails": map[string]any{"output": map[string]any{"pii": map[string]any{"behavior": "SHOUT"}}}}).
		wantErr(t, 400, "INVALID_PARAMETER_VALUE")

	var tags struct{ Tags []Tag }
	e.do("admin-token", "PATCH", "/api/2.0/serving-endpoints/chat/tags", map[string]any{
		"add_tags": []any{map[string]any{"key": "a", "value": "1"}, map[string]any{"key": "b", "value": "2"}}}).wantOK(t).decode(t, fresh(&tags))
	e.do("admin-token", "PATCH", "/api/2.0/serving-endpoints/chat/tags", map[string]any{
		"add_tags": []any{map[string]any{"key": "b", "value": "3"}}, "delete_tags": []string{"a"}}).wantOK(t).decode(t, fresh(&tags))
	if len(tags.Tags) != 1 || tags.Tags[0] != (Tag{"b", "3"}) {
		t.Fatalf("tags %+v", tags)
	}
	var ep Endpoint
	e.do("admin-token", "GET", "/api/2.0/serving-endpoints/chat", nil).wantOK(t).decode(t, fresh(&ep))
	if len(ep.Tags) != 1 || ep.AIGateway == nil || !ep.AIGateway.UsageTrackingConfig.Enabled {
		t.Errorf("endpoint %+v", ep)
	}
}

func TestConfigurationFileEndpoints(t *testing.T) {
	e := newEnv(t, nil)
	var ep Endpoint
	e.do("yaml-token", "GET", "/api/2.0/serving-endpoints/config-chat", nil).wantOK(t).decode(t, fresh(&ep))
	if ep.ID != "config-config-chat" || *ep.State != (State{StateReady, ConfigNotUpdating}) || ep.PermissionLevel != CanQuery ||
		ep.Task != TaskChat || ep.AIGateway.FallbackConfig == nil || ep.AIGateway.FallbackConfig.Enabled {
		t.Fatalf("%+v", ep)
	}
	se := ep.Config.ServedEntities[0]
	if se.Name != "openai" || se.EntityName != "openai" || se.EntityVersion != "gpt-4o" || ep.Config.TrafficConfig.Routes[0].TrafficPercentage != 100 {
		t.Fatalf("served entity %+v", se)
	}
	e.do("alice-token", "GET", "/api/2.0/serving-endpoints/config-chat", nil).wantOK(t) // alice may use every endpoint
	e.do("admin-token", "PUT", "/api/2.0/serving-endpoints/config-chat/ai-gateway", map[string]any{}).wantErr(t, 400, "INVALID_PARAMETER_VALUE")
	e.do("admin-token", "PATCH", "/api/2.0/serving-endpoints/config-chat/tags", map[string]any{}).wantErr(t, 400, "INVALID_PARAMETER_VALUE")
	e.do("admin-token", "GET", "/api/2.0/permissions/serving-endpoints/config-config-chat", nil).wantOK(t)
	e.do("yaml-token", "GET", "/api/2.0/permissions/serving-endpoints/config-config-chat", nil).wantErr(t, 403, "PERMISSION_DENIED")
	msg := e.do("admin-token", "PUT", "/api/2.0/permissions/serving-endpoints/config-config-chat", map[string]any{"access_control_list": []any{}}).
		wantErr(t, 400, "INVALID_PARAMETER_VALUE")
	if !strings.Contains(msg, "defined in the configuration file") {
		t.Errorf("message %q", msg)
	}
}

func TestSecretsNeverShown(t *testing.T) {
	e := newEnv(t, nil)
	e.writeSecret("llm", "openai", "sk-file-0001")
	e.env["SLUICE_SECRET_DBX_TOKEN"] = "dapi-env-0002"
	b := createBody("mixed",
		externalOpenAI("file", "gpt-4o", "{{secrets/llm/openai}}"),
		map[string]any{"name": "plain", "external_model": map[string]any{"name": "gpt-4o", "provider": "openai", "task": "llm/v1/chat",
			"openai_config": map[string]any{"openai_api_key_plaintext": "sk-plain-0003", "openai_api_base": "http://127.0.0.1:9/v1"}}},
		map[string]any{"name": "plain2", "external_model": map[string]any{"name": "gpt-4o", "provider": "openai", "task": "llm/v1/chat",
			"openai_config": map[string]any{"openai_api_key": "sk-plain-0004", "openai_api_base": "http://127.0.0.1:9/v1"}}},
		map[string]any{"name": "dbx", "external_model": map[string]any{"name": "databricks-meta-llama-3-3-70b-instruct", "provider": "databricks-model-serving", "task": "llm/v1/chat",
			"databricks_model_serving_config": map[string]any{"databricks_workspace_url": "http://127.0.0.1:9", "databricks_api_token": "{{secrets/dbx/token}}"}}},
		map[string]any{"name": "hdr", "external_model": map[string]any{"name": "m", "provider": "custom", "task": "llm/v1/chat",
			"custom_provider_config": map[string]any{"custom_provider_url": "http://127.0.0.1:9/v1", "api_key_auth": map[string]any{"key": "X-Api-Key", "value_plaintext": "hdr-plain-0005"}}}},
	)
	b["config"].(map[string]any)["traffic_config"] = map[string]any{"routes": []any{map[string]any{"served_entity_name": "file", "traffic_percentage": 100}}}
	var answers []response
	answers = append(answers, e.do("admin-token", "POST", "/api/2.0/serving-endpoints", b).wantOK(t))
	answers = append(answers, e.do("admin-token", "GET", "/api/2.0/serving-endpoints/mixed", nil).wantOK(t))
	answers = append(answers, e.do("admin-token", "GET", "/api/2.0/serving-endpoints", nil).wantOK(t))
	answers = append(answers, e.do("admin-token", "PUT", "/api/2.0/serving-endpoints/mixed/config", b["config"]).wantOK(t))
	secrets := []string{"sk-file-0001", "dapi-env-0002", "sk-plain-0003", "sk-plain-0004", "hdr-plain-0005"}
	for _, a := range answers {
		for _, s := range secrets {
			if strings.Contains(string(a.body), s) {
				t.Errorf("answer shows %s: %s", s, a.body)
			}
		}
	}
	for _, s := range secrets {
		if strings.Contains(e.logs.String(), s) {
			t.Errorf("log shows %s", s)
		}
	}
	if !strings.Contains(string(answers[1].body), "{{secrets/dbx/token}}") {
		t.Error("the secret reference is not shown")
	}
	// but the upstreams got them
	keys := map[string]string{}
	for _, u := range e.built {
		keys[u.Name] = u.APIKey + u.Headers["X-Api-Key"]
	}
	want := map[string]string{"mixed/file": "sk-file-0001", "mixed/plain": "sk-plain-0003", "mixed/plain2": "sk-plain-0004",
		"mixed/dbx": "dapi-env-0002", "mixed/hdr": "hdr-plain-0005"}
	for k, v := range want {
		if keys[k] != v {
			t.Errorf("upstream %s got key %q, want %q", k, keys[k], v)
		}
	}
}

func TestConcurrentUpdateRetries(t *testing.T) {
	st := newMemStore()
	e := newEnv(t, st)
	e.do("admin-token", "POST", "/api/2.0/serving-endpoints", createBody("x", map[string]any{"entity_name": "vllm"})).wantOK(t)
	st.mu.Lock()
	st.failUpdates = maxAttempts - 1
	st.mu.Unlock()
	e.do("admin-token", "PATCH", "/api/2.0/serving-endpoints/x/tags", map[string]any{"add_tags": []any{map[string]any{"key": "k"}}}).wantOK(t)
	st.mu.Lock()
	st.failUpdates = maxAttempts
	st.mu.Unlock()
	e.do("admin-token", "PATCH", "/api/2.0/serving-endpoints/x/tags", map[string]any{"add_tags": []any{map[string]any{"key": "j"}}}).
		wantErr(t, 409, "ABORTED")
}

func TestOtherReplicasChangesArePickedUp(t *testing.T) {
	st := sqliteStore(t)
	a, b := newEnv(t, st), newEnv(t, st)
	var created Endpoint
	a.do("admin-token", "POST", "/api/2.0/serving-endpoints", createBody("x", map[string]any{"entity_name": "vllm"})).wantOK(t).decode(t, &created)
	if b.endpoint("x") != nil {
		t.Fatal("b serves x before refreshing")
	}
	b.sync()
	if b.endpoint("x") == nil {
		t.Fatal("b does not serve x after refreshing")
	}
	a.do("admin-token", "PATCH", "/api/2.0/permissions/serving-endpoints/"+created.ID, map[string]any{
		"access_control_list": []any{map[string]any{"user_name": "k-alice", "permission_level": "CAN_QUERY"}}}).wantOK(t)
	b.sync()
	if err := b.admit("alice-token", "x"); err != nil {
		t.Fatalf("b did not pick up the permission: %v", err)
	}
	a.do("admin-token", "DELETE", "/api/2.0/serving-endpoints/x", nil).wantOK(t)
	b.sync()
	if b.endpoint("x") != nil {
		t.Fatal("b still serves x after it was deleted")
	}
}

func TestRunPicksUpChanges(t *testing.T) {
	st := sqliteStore(t)
	a, b := newEnv(t, st), newEnv(t, st)
	applied := make(chan []*proxy.Endpoint, 16)
	b.m.o.Hooks.Apply = func(eps []*proxy.Endpoint) { applied <- eps }
	b.m.o.Refresh = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		b.m.Run(ctx)
		close(done)
	}()
	a.do("admin-token", "POST", "/api/2.0/serving-endpoints", createBody("x", map[string]any{"entity_name": "vllm"})).wantOK(t)
	select {
	case eps := <-applied:
		if len(eps) != 1 || eps[0].Name != "x" {
			t.Errorf("applied %v", eps)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run never applied the other replica's endpoint")
	}
	cancel()
	<-done
}

// Handlers and refreshes running at once (for the race detector): every
// change lands.
func TestConcurrentChanges(t *testing.T) {
	e := newEnv(t, nil)
	e.do("admin-token", "POST", "/api/2.0/serving-endpoints", createBody("x", map[string]any{"entity_name": "vllm"})).wantOK(t)
	var wg sync.WaitGroup
	const n = 4
	errs := make(chan string, 2*n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			r := e.do("admin-token", "PATCH", "/api/2.0/serving-endpoints/x/tags", map[string]any{"add_tags": []any{map[string]any{"key": fmt.Sprint("k", i)}}})
			if r.status != 200 {
				errs <- string(r.body)
			}
		}()
		go func() {
			defer wg.Done()
			if err := e.m.Sync(context.Background()); err != nil {
				errs <- err.Error()
			}
			e.admit("alice-token", "x")
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var ep Endpoint
	e.do("admin-token", "GET", "/api/2.0/serving-endpoints/x", nil).wantOK(t).decode(t, &ep)
	if len(ep.Tags) != n {
		t.Errorf("tags %v", ep.Tags)
	}
}

func TestConfigurationFileShadowsStoredEndpoint(t *testing.T) {
	st := sqliteStore(t)
	now := time.Now()
	if err := st.CreateServingEndpoint(context.Background(), sluice.ServingEndpointRecord{Name: "config-chat", ID: "0123456789abcdef0123456789abcdef",
		Creator: "k-admin", Spec: []byte(`{"config":{"served_entities":[{"name":"v","entity_name":"vllm"}],"config_version":1},"state":{"ready":"READY","config_update":"NOT_UPDATING"}}`),
		CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, st)
	if e.endpoint("config-chat") != nil {
		t.Fatal("the stored endpoint is served under the configuration file's name")
	}
	var ep Endpoint
	e.do("admin-token", "GET", "/api/2.0/serving-endpoints/config-chat", nil).wantOK(t).decode(t, &ep)
	if ep.ID != "config-config-chat" {
		t.Fatalf("got %+v", ep)
	}
	if !strings.Contains(e.logs.String(), "the configuration file's is served") {
		t.Error("no warning about the shadowed endpoint")
	}
}

// A replica that lacks a secret serves the endpoint once the secret
// arrives, without a change to the endpoint.
func TestMissingSecretIsRetried(t *testing.T) {
	st := sqliteStore(t)
	a, b := newEnv(t, st), newEnv(t, st)
	a.writeSecret("llm", "openai", "sk-a")
	a.do("admin-token", "POST", "/api/2.0/serving-endpoints", createBody("x", externalOpenAI("", "gpt-4o", "{{secrets/llm/openai}}"))).wantOK(t)
	b.sync()
	if b.endpoint("x") != nil {
		t.Fatal("served without its secret")
	}
	b.sync()
	if n := strings.Count(b.logs.String(), "does not compile"); n != 1 {
		t.Errorf("logged %d times", n)
	}
	b.writeSecret("llm", "openai", "sk-b")
	b.sync()
	if b.endpoint("x") != nil {
		t.Fatal("retried before RetryFailed")
	}
	b.advance(RetryFailed)
	b.sync()
	if b.endpoint("x") == nil || b.lastBuilt().APIKey != "sk-b" {
		t.Fatal("not served after the secret arrived")
	}
}
