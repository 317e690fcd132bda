package serving

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go"
	"github.com/databricks/databricks-sdk-go/apierr"
	dbserving "github.com/databricks/databricks-sdk-go/service/serving"
)

// The Databricks Go SDK drives the control plane: what it sends is
// accepted, and what Sluice answers it parses.
func TestDatabricksSDK(t *testing.T) {
	e := newEnv(t, nil)
	e.writeSecret("llm", "openai", "sk-sdk")
	w, err := databricks.NewWorkspaceClient(&databricks.Config{Host: e.srv.URL, Token: "admin-token", AuthType: "pat",
		RetryTimeoutSeconds: 5, HTTPTimeoutSeconds: 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ep, err := w.ServingEndpoints.CreateAndWait(ctx, dbserving.CreateServingEndpoint{
		Name: "sdk-chat",
		Config: &dbserving.EndpointCoreConfigInput{ServedEntities: []dbserving.ServedEntityInput{{
			Name: "gpt",
			ExternalModel: &dbserving.ExternalModel{Name: "gpt-4o", Provider: dbserving.ExternalModelProviderOpenai, Task: "llm/v1/chat",
				OpenaiConfig: &dbserving.OpenAiConfig{OpenaiApiKey: "{{secrets/llm/openai}}", OpenaiApiBase: "http://127.0.0.1:9/v1"}},
		}}},
		AiGateway: &dbserving.AiGatewayConfig{UsageTrackingConfig: &dbserving.AiGatewayUsageTrackingConfig{Enabled: true}},
		Tags:      []dbserving.EndpointTag{{Key: "team", Value: "ml"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ep.State.Ready != dbserving.EndpointStateReadyReady || ep.State.ConfigUpdate != dbserving.EndpointStateConfigUpdateNotUpdating ||
		ep.Config.ConfigVersion != 1 || ep.Config.ServedEntities[0].ExternalModel.OpenaiConfig.OpenaiApiKey != "{{secrets/llm/openai}}" ||
		ep.Config.TrafficConfig.Routes[0].TrafficPercentage != 100 || ep.PermissionLevel != dbserving.ServingEndpointDetailedPermissionLevelCanManage ||
		!ep.AiGateway.UsageTrackingConfig.Enabled || ep.CreationTimestamp != e.now.UnixMilli() {
		t.Fatalf("created %+v", ep)
	}

	list, err := w.ServingEndpoints.ListAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[1].Name != "sdk-chat" || list[1].Config.ServedEntities[0].ExternalModel.Name != "gpt-4o" {
		t.Fatalf("list %+v", list)
	}

	upd, err := w.ServingEndpoints.UpdateConfigAndWait(ctx, dbserving.EndpointCoreConfigInput{Name: "sdk-chat",
		ServedEntities: []dbserving.ServedEntityInput{
			{Name: "a", EntityName: "vllm", EntityVersion: "llama", WorkloadSize: "Small", ScaleToZeroEnabled: true},
			{Name: "b", EntityName: "vllm", EntityVersion: "llama", MaxProvisionedThroughput: 100},
		},
		TrafficConfig: &dbserving.TrafficConfig{Routes: []dbserving.Route{
			{ServedEntityName: "a", TrafficPercentage: 100}, {ServedEntityName: "b", TrafficPercentage: 0, ForceSendFields: []string{"TrafficPercentage"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if upd.Config.ConfigVersion != 2 || len(upd.Config.ServedEntities) != 2 || upd.Config.ServedEntities[0].WorkloadSize != "Small" {
		t.Fatalf("updated %+v", upd.Config)
	}

	gw, err := w.ServingEndpoints.PutAiGateway(ctx, dbserving.PutAiGatewayRequest{Name: "sdk-chat",
		FallbackConfig: &dbserving.FallbackConfig{Enabled: true},
		RateLimits: []dbserving.AiGatewayRateLimit{{Key: dbserving.AiGatewayRateLimitKeyUser, Calls: 10,
			RenewalPeriod: dbserving.AiGatewayRateLimitRenewalPeriodMinute}}})
	if err != nil {
		t.Fatal(err)
	}
	if !gw.FallbackConfig.Enabled || gw.RateLimits[0].Calls != 10 {
		t.Fatalf("ai gateway %+v", gw)
	}

	tags, err := w.ServingEndpoints.Patch(ctx, dbserving.PatchServingEndpointTags{Name: "sdk-chat",
		AddTags: []dbserving.EndpointTag{{Key: "env", Value: "prod"}}, DeleteTags: []string{"team"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(tags.Tags) != 1 || tags.Tags[0].Key != "env" {
		t.Fatalf("tags %+v", tags)
	}

	perms, err := w.ServingEndpoints.UpdatePermissions(ctx, dbserving.ServingEndpointPermissionsRequest{ServingEndpointId: ep.Id,
		AccessControlList: []dbserving.ServingEndpointAccessControlRequest{{GroupName: "ml", PermissionLevel: dbserving.ServingEndpointPermissionLevelCanQuery}}})
	if err != nil {
		t.Fatal(err)
	}
	if perms.ObjectId != "/serving-endpoints/"+ep.Id || len(perms.AccessControlList) != 3 {
		t.Fatalf("permissions %+v", perms)
	}
	levels, err := w.ServingEndpoints.GetPermissionLevels(ctx, dbserving.GetServingEndpointPermissionLevelsRequest{ServingEndpointId: ep.Id})
	if err != nil || len(levels.PermissionLevels) != 3 {
		t.Fatalf("levels %+v %v", levels, err)
	}
	if err := e.admit("alice-token", "sdk-chat"); err != nil {
		t.Errorf("the ml team cannot query: %v", err)
	}

	// errors match the SDK's sentinels
	_, err = w.ServingEndpoints.GetByName(ctx, "nope")
	if !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("get unknown: %v", err)
	}
	_, err = w.ServingEndpoints.Create(ctx, dbserving.CreateServingEndpoint{Name: "sdk-chat",
		Config: &dbserving.EndpointCoreConfigInput{ServedEntities: []dbserving.ServedEntityInput{{EntityName: "vllm"}}}})
	if !errors.Is(err, apierr.ErrResourceAlreadyExists) {
		t.Errorf("create twice: %v", err)
	}
	_, err = w.ServingEndpoints.Create(ctx, dbserving.CreateServingEndpoint{Name: "bad name"})
	if !errors.Is(err, apierr.ErrInvalidParameterValue) {
		t.Errorf("bad name: %v", err)
	}
	bob, err := databricks.NewWorkspaceClient(&databricks.Config{Host: e.srv.URL, Token: "bob-token", AuthType: "pat", RetryTimeoutSeconds: 5})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bob.ServingEndpoints.GetByName(ctx, "sdk-chat")
	if !errors.Is(err, apierr.ErrPermissionDenied) {
		t.Errorf("no permission: %v", err)
	}

	if err := w.ServingEndpoints.DeleteByName(ctx, "sdk-chat"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ServingEndpoints.GetByName(ctx, "sdk-chat"); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("after delete: %v", err)
	}
}
