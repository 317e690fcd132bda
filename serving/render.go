package serving

import (
	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/config"
)

// Served-entity deployment states in answers.
const (
	deploymentReady    = "DEPLOYMENT_READY"
	deploymentCreating = "DEPLOYMENT_CREATING"
)

// YAMLIDPrefix starts the id of an endpoint of the configuration file
// (API-created endpoints have 32 hex digits).
const YAMLIDPrefix = "config-"

// render is an API-created endpoint as ServingEndpointDetailed, with
// secrets left out.
func render(rec sluice.ServingEndpointRecord, sp *spec, lvl string) Endpoint {
	st := sp.State
	ep := Endpoint{
		Name: rec.Name, ID: rec.ID, Creator: rec.Creator,
		CreationTimestamp: millis(rec.CreatedAt), LastUpdatedTimestamp: millis(rec.UpdatedAt),
		State:           &st,
		Config:          renderConfig(sp.Config, rec, deploymentReady),
		PendingConfig:   renderConfig(sp.Pending, rec, deploymentCreating),
		AIGateway:       sp.AIGateway,
		Tags:            sp.Tags,
		Description:     sp.Description,
		PermissionLevel: lvl,
	}
	if sp.Config != nil {
		ep.Task = task(sp.Config)
	} else if sp.Pending != nil {
		ep.Task = task(sp.Pending)
	}
	return ep
}

func renderConfig(c *Config, rec sluice.ServingEndpointRecord, deployment string) *Config {
	if c == nil {
		return nil
	}
	out := &Config{ConfigVersion: c.ConfigVersion, StartTime: c.StartTime}
	if c.TrafficConfig != nil {
		out.TrafficConfig = &TrafficConfig{Routes: append([]Route(nil), c.TrafficConfig.Routes...)}
	}
	for _, e := range c.ServedEntities {
		e.ExternalModel = redactExternal(e.ExternalModel)
		e.Creator, e.CreationTimestamp = rec.Creator, millis(rec.UpdatedAt)
		e.State = &ServedEntityState{Deployment: deployment}
		out.ServedEntities = append(out.ServedEntities, e)
	}
	return out
}

// redactExternal copies x with plain-text keys left out; secret
// references stay.
func redactExternal(x *ExternalModel) *ExternalModel {
	if x == nil {
		return nil
	}
	c := *x
	if o := x.OpenAIConfig; o != nil {
		oc := *o
		oc.OpenAIAPIKey, oc.OpenAIAPIKeyPlaintext = redact(o.OpenAIAPIKey), ""
		oc.MicrosoftEntraClientSecret, oc.MicrosoftEntraClientSecretPlaintext = redact(o.MicrosoftEntraClientSecret), ""
		c.OpenAIConfig = &oc
	}
	if o := x.CustomProviderConfig; o != nil {
		oc := *o
		if a := o.APIKeyAuth; a != nil {
			ac := *a
			ac.Value, ac.ValuePlaintext = redact(a.Value), ""
			oc.APIKeyAuth = &ac
		}
		if a := o.BearerTokenAuth; a != nil {
			ac := *a
			ac.Token, ac.TokenPlaintext = redact(a.Token), ""
			oc.BearerTokenAuth = &ac
		}
		c.CustomProviderConfig = &oc
	}
	if o := x.DatabricksModelServingConfig; o != nil {
		oc := *o
		oc.DatabricksAPIToken, oc.DatabricksAPITokenPlaintext = redact(o.DatabricksAPIToken), ""
		c.DatabricksModelServingConfig = &oc
	}
	c.AI21LabsConfig, c.AmazonBedrockConfig, c.AnthropicConfig = nil, nil, nil
	c.CohereConfig, c.GoogleCloudVertexAIConfig, c.PaLMConfig = nil, nil, nil
	return &c
}

// task is the external models' common task, or "".
func task(c *Config) string {
	t := ""
	for i, e := range c.ServedEntities {
		if e.ExternalModel == nil || (i > 0 && e.ExternalModel.Task != t) {
			return ""
		}
		t = e.ExternalModel.Task
	}
	return t
}

// yamlLevel is k's permission on an endpoint of the configuration file:
// admins manage (though the API cannot change it), keys that may use it
// query it.
func yamlLevel(k *sluice.Key, name string) string {
	switch {
	case k.Admin:
		return CanManage
	case k.MayUse(name):
		return CanQuery
	}
	return ""
}

// renderYAML shows an endpoint of the configuration file in Databricks'
// shape: each target is a registered entity (entity_name = upstream,
// entity_version = model).
func renderYAML(e *config.Endpoint, lvl string) Endpoint {
	ep := Endpoint{
		Name: e.Name, ID: YAMLIDPrefix + e.Name,
		State:           &State{Ready: StateReady, ConfigUpdate: ConfigNotUpdating},
		Description:     "Defined in Sluice's configuration file.",
		PermissionLevel: lvl,
	}
	c := &Config{ConfigVersion: 1, TrafficConfig: &TrafficConfig{}}
	ts := e.EndpointTargets()
	names := e.EntityNames()
	split := false
	for _, t := range ts {
		split = split || t.TrafficPercentage != nil
	}
	for i, t := range ts {
		model := t.Model
		if model == "" {
			model = e.Name
		}
		se := ServedEntity{Name: names[i], EntityName: t.Upstream, EntityVersion: model, WorkloadSize: t.WorkloadSize,
			State: &ServedEntityState{Deployment: deploymentReady}}
		if cp := t.Capacity; cp != nil {
			se.Capacity = &Capacity{TokensPerSecond: cp.TokensPerSecond, Concurrency: cp.Concurrency,
				HourlyPrice: cp.HourlyPrice, MaxQueue: cp.MaxQueue}
			if cp.MaxQueueWait > 0 {
				se.Capacity.MaxQueueWait = cp.MaxQueueWait.D().String()
			}
		}
		c.ServedEntities = append(c.ServedEntities, se)
		pct := 0
		switch {
		case split:
			pct = *t.TrafficPercentage
		case i == 0:
			pct = 100
		}
		c.TrafficConfig.Routes = append(c.TrafficConfig.Routes, Route{ServedEntityName: names[i], TrafficPercentage: pct})
	}
	ep.Config = c
	g := sluice.AIGateway{}
	if e.AIGateway != nil {
		g = *e.AIGateway
	}
	if g.FallbackConfig == nil {
		g.FallbackConfig = &sluice.FallbackConfig{Enabled: e.FallbackEnabled()}
	}
	ep.AIGateway = &g
	if len(e.APIs) == 1 {
		switch sluice.API(e.APIs[0]) {
		case sluice.APIChat:
			ep.Task = TaskChat
		case sluice.APICompletions:
			ep.Task = TaskCompletions
		case sluice.APIEmbeddings:
			ep.Task = TaskEmbeddings
		}
	}
	return ep
}

func (ep *Endpoint) summary() summary {
	s := summary{Name: ep.Name, ID: ep.ID, Creator: ep.Creator, CreationTimestamp: ep.CreationTimestamp,
		LastUpdatedTimestamp: ep.LastUpdatedTimestamp, State: ep.State, AIGateway: ep.AIGateway,
		Tags: ep.Tags, Description: ep.Description, Task: ep.Task}
	c := ep.Config
	if c == nil {
		c = ep.PendingConfig
	}
	if c != nil {
		s.Config = &summaryConfig{}
		for _, e := range c.ServedEntities {
			s.Config.ServedEntities = append(s.Config.ServedEntities, summaryEntity{
				Name: e.Name, EntityName: e.EntityName, EntityVersion: e.EntityVersion, ExternalModel: e.ExternalModel})
		}
	}
	return s
}
