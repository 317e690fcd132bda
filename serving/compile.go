package serving

import (
	"fmt"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/proxy"
)

// DefaultOpenAIBase is where openai_config sends calls when it names no
// openai_api_base.
const DefaultOpenAIBase = "https://api.openai.com/v1"

// MaxOutputTokens is the completion size assumed for calls to API-created
// endpoints that set no max_tokens (for worst-case reservations).
const MaxOutputTokens = 4096

// compiled is a config turned into targets. It is built once per
// (endpoint id, config version) and reused while that config serves, so
// upstreams, guards and gates keep their state across unrelated updates
// (tags, permissions, AI Gateway settings).
type compiled struct {
	id      string
	version int64
	targets []*proxy.Target
	split   []int // aligned with targets; nil for a single target
	kind    string
	apis    []sluice.API
}

var (
	apisLLM    = []sluice.API{sluice.APIChat, sluice.APICompletions, sluice.APIEmbeddings}
	apisMLflow = []sluice.API{sluice.APIChat, sluice.APICompletions, sluice.APIEmbeddings, sluice.APIInvocations}
)

func taskAPI(task string) sluice.API {
	switch task {
	case TaskChat:
		return sluice.APIChat
	case TaskCompletions:
		return sluice.APICompletions
	case TaskEmbeddings:
		return sluice.APIEmbeddings
	}
	return ""
}

// compile resolves c's secrets and upstreams into targets. c has passed
// checkConfig. Errors are 400 INVALID_PARAMETER_VALUE naming the field (a
// secret's reference, never its value; never an upstream URL).
//
// Everything that can fail without side effects (secrets, upstream names,
// tasks) is checked before the first external upstream is built, so a
// config that is retried until a secret appears builds nothing meanwhile.
func (m *Manager) compile(endpoint, id string, c *Config) (*compiled, error) {
	out := &compiled{id: id, version: c.ConfigVersion, kind: config.KindPayPerToken}
	var apis []sluice.API
	custom, provisioned := false, false
	type plan struct {
		t        *proxy.Target
		external *config.Upstream
		f        string
	}
	plans := make([]plan, len(c.ServedEntities))
	for i := range c.ServedEntities {
		e := &c.ServedEntities[i]
		f := fmt.Sprintf("config.served_entities[%d]", i)
		var entAPIs []sluice.API
		if e.ExternalModel != nil {
			u, t, err := m.externalUpstream(endpoint, f+".external_model", e)
			if err != nil {
				return nil, err
			}
			plans[i] = plan{t: t, external: &u, f: f + ".external_model"}
			entAPIs = []sluice.API{taskAPI(e.ExternalModel.Task)}
		} else {
			t, mlflow, err := m.registeredTarget(endpoint, f, e)
			if err != nil {
				return nil, err
			}
			plans[i] = plan{t: t}
			entAPIs = apisLLM
			if mlflow {
				entAPIs = apisMLflow
			}
			if mlflow || e.WorkloadSize != "" || e.MaxProvisionedConcurrency > 0 {
				custom = true
			}
		}
		if e.MinProvisionedThroughput > 0 || e.MaxProvisionedThroughput > 0 || e.ProvisionedModelUnits > 0 || e.Capacity != nil {
			provisioned = true
		}
		if i == 0 {
			apis = entAPIs
		} else {
			apis = intersect(apis, entAPIs)
		}
	}
	if len(apis) == 0 {
		return nil, invalid("config.served_entities", "config.served_entities: the served entities share no task; an endpoint's entities must all serve the same task")
	}
	for _, p := range plans {
		if p.external == nil {
			continue
		}
		if m.o.Hooks.NewUpstream == nil {
			return nil, invalid(p.f, "%s: external models are not enabled on this server", p.f)
		}
		up, err := m.o.Hooks.NewUpstream(*p.external)
		if err != nil {
			// The cause may hold the URL: it is logged, not shown.
			return nil, &apierr.Error{Status: 400, Code: apierr.DBInvalidParameterValue, Param: p.f,
				Msg:   p.f + ": the external model's upstream could not be set up (its URL or egress policy); the server log has the cause",
				Class: sluice.ErrClassInvalidRequest, Err: err}
		}
		p.t.Upstream = up
	}
	for i, p := range plans {
		e := &c.ServedEntities[i]
		if m.o.Hooks.Guard != nil {
			p.t.Guard = m.o.Hooks.Guard(p.t.Upstream)
		}
		if cp, ok := entityCapacity(e); ok && m.o.Hooks.Gate != nil {
			p.t.Gate = m.o.Hooks.Gate(endpoint, e.Name, cp)
		}
		out.targets = append(out.targets, p.t)
	}
	out.apis = apis
	switch {
	case custom:
		out.kind = config.KindCustom
	case provisioned:
		out.kind = config.KindProvisioned
	}
	if len(out.targets) > 1 && c.TrafficConfig != nil {
		pct := map[string]int{}
		for _, r := range c.TrafficConfig.Routes {
			pct[r.ServedEntityName] = r.TrafficPercentage
		}
		out.split = make([]int, len(out.targets))
		for i, e := range c.ServedEntities {
			out.split[i] = pct[e.Name]
		}
	}
	return out, nil
}

func intersect(a, b []sluice.API) []sluice.API {
	var out []sluice.API
	for _, x := range a {
		for _, y := range b {
			if x == y {
				out = append(out, x)
				break
			}
		}
	}
	return out
}

// entityCapacity is the capacity a served entity declares: its capacity,
// else its workload size or provisioned concurrency as a concurrency
// limit, else its max provisioned throughput as a token rate.
func entityCapacity(e *ServedEntity) (config.Capacity, bool) {
	if e.Capacity != nil {
		c, err := e.Capacity.config()
		return c, err == nil
	}
	c := config.Capacity{MaxQueueWait: config.Duration(10 * time.Second), MaxQueue: 64}
	switch {
	case e.WorkloadSize != "":
		c.Concurrency = config.WorkloadConcurrency(e.WorkloadSize)
	case e.MaxProvisionedConcurrency > 0:
		c.Concurrency = e.MaxProvisionedConcurrency
	case e.MaxProvisionedThroughput > 0:
		c.TokensPerSecond = e.MaxProvisionedThroughput
	default:
		return c, false
	}
	return c, true
}

// registeredTarget points at an upstream of the configuration file, with
// entity_version (default: the endpoint's name) as its model.
func (m *Manager) registeredTarget(endpoint, f string, e *ServedEntity) (*proxy.Target, bool, error) {
	var up *proxy.Upstream
	if m.o.Hooks.Upstream != nil {
		up = m.o.Hooks.Upstream(e.EntityName)
	}
	if up == nil {
		return nil, false, invalid(f+".entity_name", "%s.entity_name: %q is not an upstream of Sluice's configuration", f, e.EntityName)
	}
	model := e.EntityVersion
	if model == "" {
		model = endpoint
	}
	mlflow := up.Passthrough
	if m.o.Config != nil {
		for _, u := range m.o.Config.Upstreams {
			if u.Name == e.EntityName {
				mlflow = mlflow || u.Type == config.TypeMLflow
			}
		}
	}
	t := &proxy.Target{Upstream: up, Model: model, Name: e.Name}
	m.price(t, up.Provider, model)
	return t, mlflow, nil
}

// externalUpstream is the upstream of an external model, with its secrets
// resolved now, and its target (priced, without its upstream yet).
func (m *Manager) externalUpstream(endpoint, f string, e *ServedEntity) (config.Upstream, *proxy.Target, error) {
	x := e.ExternalModel
	u := config.Upstream{Name: endpoint + "/" + e.Name, Type: config.TypeOpenAI}
	u.CircuitBreaker = &config.CircuitBreaker{Failures: 5, Cooldown: config.Duration(30 * time.Second)}
	model, priceModel := x.Name, x.Name
	secret := func(field, ref, plain string) (string, error) {
		v, err := m.sec.secretOrPlain(ref, plain)
		if err != nil {
			return "", invalid(f+"."+field, "%s.%s: %v", f, field, err)
		}
		return v, nil
	}
	var err error
	switch x.Provider {
	case ProviderOpenAI:
		c := x.OpenAIConfig
		u.APIKey, err = secret("openai_config.openai_api_key", c.OpenAIAPIKey, c.OpenAIAPIKeyPlaintext)
		if c.OpenAIAPIType == "azure" || c.OpenAIAPIType == "azuread" {
			u.Type, u.Provider = config.TypeAzure, "azure"
			u.BaseURL, u.APIVersion = c.OpenAIAPIBase, c.OpenAIAPIVersion
			model = c.OpenAIDeploymentName
		} else {
			u.Provider, u.BaseURL = "openai", c.OpenAIAPIBase
			if u.BaseURL == "" {
				u.BaseURL = DefaultOpenAIBase
			}
			if c.OpenAIOrganization != "" {
				u.Headers = map[string]string{"OpenAI-Organization": c.OpenAIOrganization}
			}
		}
	case ProviderDatabricks:
		c := x.DatabricksModelServingConfig
		u.Provider = "databricks"
		u.BaseURL = strings.TrimRight(c.DatabricksWorkspaceURL, "/") + "/serving-endpoints"
		u.APIKey, err = secret("databricks_model_serving_config.databricks_api_token", c.DatabricksAPIToken, c.DatabricksAPITokenPlaintext)
	case ProviderCustom:
		c := x.CustomProviderConfig
		u.Provider, u.BaseURL = "self-hosted", c.CustomProviderURL
		if a := c.BearerTokenAuth; a != nil {
			u.APIKey, err = secret("custom_provider_config.bearer_token_auth.token", a.Token, a.TokenPlaintext)
		} else if a := c.APIKeyAuth; a != nil {
			var v string
			v, err = secret("custom_provider_config.api_key_auth.value", a.Value, a.ValuePlaintext)
			u.Headers = map[string]string{a.Key: v}
		}
	default:
		return u, nil, invalid(f+".provider", "%s.provider: %q is not supported", f, x.Provider)
	}
	if err != nil {
		return u, nil, err
	}
	t := &proxy.Target{Model: model, Name: e.Name}
	m.price(t, u.Provider, priceModel)
	return u, t, nil
}

// price sets t's catalog price, if the catalog knows the model; otherwise
// the proxy prices each response by the model the upstream reports.
func (m *Manager) price(t *proxy.Target, provider, model string) {
	if m.o.Catalog == nil {
		return
	}
	if p, ok := m.o.Catalog.Lookup(provider, model); ok {
		t.Price, t.Priced, t.PriceVersion = p, true, m.o.Catalog.Version()
	}
}

// endpoint assembles the data-plane endpoint from a compiled config and
// the endpoint's AI Gateway settings.
func endpointFor(name string, c *compiled, g *sluice.AIGateway) *proxy.Endpoint {
	ep := &proxy.Endpoint{
		Name: name, APIs: c.apis, Targets: c.targets, MaxOutputTokens: MaxOutputTokens,
		Kind: c.kind, Split: c.split, Ordered: true,
	}
	if g != nil {
		cp := *g
		ep.Gateway = &cp
		ep.Fallback = g.FallbackConfig != nil && g.FallbackConfig.Enabled
		ep.CapturePayloads = g.InferenceTableConfig != nil && g.InferenceTableConfig.Enabled
	}
	return ep
}
