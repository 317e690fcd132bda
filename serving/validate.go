package serving

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/pricing"
)

// MaxServedEntities is Databricks' limit on served entities per endpoint.
const MaxServedEntities = 10

var (
	endpointNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,63}$`)
	entityNameRE   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,63}$`)
	notEntityChar  = regexp.MustCompile(`[^A-Za-z0-9._-]+`)
)

// problems gathers what is wrong with a request, each with its field.
type problems []problem

type problem struct{ field, msg string }

func (p *problems) add(field, format string, a ...any) {
	*p = append(*p, problem{field, fmt.Sprintf(format, a...)})
}

// err is a 400 INVALID_PARAMETER_VALUE naming every problem, or nil.
func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	msgs := make([]string, len(p))
	for i, q := range p {
		msgs[i] = q.field + ": " + q.msg
	}
	return invalid(p[0].field, "%s", strings.Join(msgs, "; "))
}

// invalid is a 400 INVALID_PARAMETER_VALUE.
func invalid(field, format string, a ...any) *apierr.Error {
	return apierr.BadRequest(field, apierr.DBInvalidParameterValue, format, a...)
}

func checkEndpointName(name string) error {
	if !endpointNameRE.MatchString(name) {
		return invalid("name", "name: %q must be 1-63 letters, digits, '-' or '_'", name)
	}
	return nil
}

// checkConfig validates c and fills in its defaults: served-entity names
// and, for a single entity, the traffic config. Registered entities must
// name an upstream that upstream knows.
func checkConfig(c *Config, upstream func(string) bool) error {
	var p problems
	if c == nil {
		p.add("config", "is required, with at least one served entity")
		return p.err()
	}
	if len(c.ServedModels) > 0 && string(c.ServedModels) != "null" {
		p.add("config.served_models", "is the legacy form and is not supported; use served_entities")
	}
	if len(c.AutoCaptureConfig) > 0 && string(c.AutoCaptureConfig) != "null" {
		p.add("config.auto_capture_config", "is not supported; use ai_gateway.inference_table_config")
	}
	c.ConfigVersion, c.StartTime = 0, 0
	switch n := len(c.ServedEntities); {
	case n == 0:
		p.add("config.served_entities", "at least one served entity is required")
	case n > MaxServedEntities:
		p.add("config.served_entities", "at most %d served entities are allowed, got %d", MaxServedEntities, n)
	}
	names := map[string]bool{}
	for i := range c.ServedEntities {
		f := fmt.Sprintf("config.served_entities[%d]", i)
		e := &c.ServedEntities[i]
		e.CreationTimestamp, e.Creator, e.State = 0, "", nil
		checkEntity(&p, f, e, upstream)
		if e.Name != "" {
			if names[e.Name] {
				p.add(f+".name", "served entity name %q is used twice", e.Name)
			}
			names[e.Name] = true
		}
	}
	checkTraffic(&p, c, names)
	return p.err()
}

func checkEntity(p *problems, f string, e *ServedEntity, upstream func(string) bool) {
	switch {
	case e.EntityName != "" && e.ExternalModel != nil:
		p.add(f, "set entity_name or external_model, not both")
	case e.EntityName == "" && e.ExternalModel == nil:
		p.add(f, "needs entity_name (an upstream of Sluice's configuration) or external_model")
	case e.EntityName != "":
		if !upstream(e.EntityName) {
			p.add(f+".entity_name", "%q is not an upstream of Sluice's configuration; registered entities name a configured upstream", e.EntityName)
		}
	default:
		checkExternal(p, f+".external_model", e.ExternalModel)
	}
	if e.Name == "" {
		switch {
		case e.EntityName != "" && e.EntityVersion != "":
			e.Name = derivedName(e.EntityName + "-" + e.EntityVersion)
		case e.EntityName != "":
			e.Name = derivedName(e.EntityName)
		case e.ExternalModel != nil:
			e.Name = derivedName(e.ExternalModel.Name)
		}
	} else if !entityNameRE.MatchString(e.Name) {
		p.add(f+".name", "%q must be 1-63 letters, digits, '.', '_' or '-'", e.Name)
	}
	if e.WorkloadSize != "" && config.WorkloadConcurrency(e.WorkloadSize) == 0 {
		p.add(f+".workload_size", "%q is not Small, Medium or Large", e.WorkloadSize)
	}
	if e.MinProvisionedThroughput < 0 || e.MaxProvisionedThroughput < 0 || e.ProvisionedModelUnits < 0 ||
		e.MinProvisionedConcurrency < 0 || e.MaxProvisionedConcurrency < 0 {
		p.add(f, "provisioned throughput, model units and concurrency must not be negative")
	}
	if e.MaxProvisionedThroughput > 0 && e.MinProvisionedThroughput > e.MaxProvisionedThroughput {
		p.add(f+".min_provisioned_throughput", "must not exceed max_provisioned_throughput")
	}
	if e.MaxProvisionedConcurrency > 0 && e.MinProvisionedConcurrency > e.MaxProvisionedConcurrency {
		p.add(f+".min_provisioned_concurrency", "must not exceed max_provisioned_concurrency")
	}
	if c := e.Capacity; c != nil {
		if _, err := c.config(); err != nil {
			p.add(f+".capacity", "%v", err)
		}
	}
}

// derivedName turns s into a served-entity name, as Databricks derives one
// when none is given.
func derivedName(s string) string {
	s = strings.Trim(notEntityChar.ReplaceAllString(s, "-"), "-")
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

var unsupportedProviders = map[string]bool{
	"anthropic": true, "amazon-bedrock": true, "cohere": true, "google-cloud-vertex-ai": true,
	"ai21labs": true, "palm": true,
}

func checkExternal(p *problems, f string, m *ExternalModel) {
	if m.Name == "" {
		p.add(f+".name", "is required: the provider's model name")
	}
	switch m.Task {
	case TaskChat, TaskCompletions, TaskEmbeddings:
	case "":
		p.add(f+".task", "is required: %s, %s or %s", TaskChat, TaskCompletions, TaskEmbeddings)
	default:
		p.add(f+".task", "%q is not %s, %s or %s", m.Task, TaskChat, TaskCompletions, TaskEmbeddings)
	}
	given := map[string]bool{
		"openai_config":                   m.OpenAIConfig != nil,
		"custom_provider_config":          m.CustomProviderConfig != nil,
		"databricks_model_serving_config": m.DatabricksModelServingConfig != nil,
		"ai21labs_config":                 len(m.AI21LabsConfig) > 0,
		"amazon_bedrock_config":           len(m.AmazonBedrockConfig) > 0,
		"anthropic_config":                len(m.AnthropicConfig) > 0,
		"cohere_config":                   len(m.CohereConfig) > 0,
		"google_cloud_vertex_ai_config":   len(m.GoogleCloudVertexAIConfig) > 0,
		"palm_config":                     len(m.PaLMConfig) > 0,
	}
	want := strings.ReplaceAll(m.Provider, "-", "_") + "_config"
	switch m.Provider {
	case ProviderOpenAI:
		if m.OpenAIConfig == nil {
			p.add(f+".openai_config", "is required for provider openai")
		} else {
			checkOpenAI(p, f+".openai_config", m.OpenAIConfig)
		}
	case ProviderCustom:
		want = "custom_provider_config"
		if m.CustomProviderConfig == nil {
			p.add(f+".custom_provider_config", "is required for provider custom")
		} else {
			checkCustom(p, f+".custom_provider_config", m.CustomProviderConfig)
		}
	case ProviderDatabricks:
		want = "databricks_model_serving_config"
		if c := m.DatabricksModelServingConfig; c == nil {
			p.add(f+".databricks_model_serving_config", "is required for provider databricks-model-serving")
		} else {
			checkURL(p, f+".databricks_model_serving_config.databricks_workspace_url", c.DatabricksWorkspaceURL)
			checkSecret(p, f+".databricks_model_serving_config", "databricks_api_token", c.DatabricksAPIToken, c.DatabricksAPITokenPlaintext)
		}
	case "":
		p.add(f+".provider", "is required: openai, custom or databricks-model-serving")
		return
	default:
		if unsupportedProviders[m.Provider] {
			p.add(f+".provider", "%q is not supported: Sluice does not speak that provider's API; put an OpenAI-compatible proxy in front of it and use provider \"custom\" with custom_provider_config", m.Provider)
		} else {
			p.add(f+".provider", "%q is not a provider Sluice supports: openai, custom or databricks-model-serving", m.Provider)
		}
		return
	}
	for name, ok := range given {
		if ok && name != want {
			p.add(f+"."+name, "does not apply to provider %s", m.Provider)
		}
	}
}

func checkOpenAI(p *problems, f string, c *OpenAIConfig) {
	checkSecret(p, f, "openai_api_key", c.OpenAIAPIKey, c.OpenAIAPIKeyPlaintext)
	if c.MicrosoftEntraClientID != "" || c.MicrosoftEntraClientSecret != "" || c.MicrosoftEntraClientSecretPlaintext != "" || c.MicrosoftEntraTenantID != "" {
		p.add(f, "Microsoft Entra ID client credentials are not supported: Sluice does not fetch Entra ID tokens; give openai_api_key")
	}
	switch c.OpenAIAPIType {
	case "", "openai":
		if c.OpenAIAPIBase != "" {
			checkURL(p, f+".openai_api_base", c.OpenAIAPIBase)
		}
		if c.OpenAIDeploymentName != "" {
			p.add(f+".openai_deployment_name", "applies to openai_api_type azure only")
		}
	case "azure", "azuread":
		if c.OpenAIAPIBase == "" {
			p.add(f+".openai_api_base", "is required for azure: https://RESOURCE.openai.azure.com")
		} else {
			checkURL(p, f+".openai_api_base", c.OpenAIAPIBase)
		}
		if c.OpenAIAPIVersion == "" {
			p.add(f+".openai_api_version", "is required for azure (e.g. 2024-10-21)")
		}
		if c.OpenAIDeploymentName == "" {
			p.add(f+".openai_deployment_name", "is required for azure")
		}
	default:
		p.add(f+".openai_api_type", "%q is not openai, azure or azuread", c.OpenAIAPIType)
	}
}

func checkCustom(p *problems, f string, c *CustomProviderConfig) {
	checkURL(p, f+".custom_provider_url", c.CustomProviderURL)
	switch {
	case c.APIKeyAuth != nil && c.BearerTokenAuth != nil:
		p.add(f, "set api_key_auth or bearer_token_auth, not both")
	case c.APIKeyAuth != nil:
		a := c.APIKeyAuth
		if !validHeaderName(a.Key) {
			p.add(f+".api_key_auth.key", "must be an HTTP header name")
		}
		checkSecret(p, f+".api_key_auth", "value", a.Value, a.ValuePlaintext)
	case c.BearerTokenAuth != nil:
		a := c.BearerTokenAuth
		checkSecret(p, f+".bearer_token_auth", "token", a.Token, a.TokenPlaintext)
	default:
		p.add(f, "needs api_key_auth or bearer_token_auth")
	}
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 126 || r <= 32 || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	switch http.CanonicalHeaderKey(s) {
	case "Host", "Content-Length", "Content-Type", "Transfer-Encoding", "Connection":
		return false
	}
	return true
}

// checkSecret checks a pair of secret fields: exactly one of the
// reference (or key) field and its *_plaintext twin, with a well-formed
// reference. Messages never include the value.
func checkSecret(p *problems, f, name, ref, plain string) {
	switch {
	case ref != "" && plain != "":
		p.add(f+"."+name, "set %s or %s_plaintext, not both", name, name)
	case ref == "" && plain == "":
		p.add(f+"."+name, "is required: a secret reference {{secrets/scope/key}} (or %s_plaintext)", name)
	case strings.Contains(ref, "{{") && !isSecretRef(ref):
		p.add(f+"."+name, "is not a valid secret reference; write {{secrets/scope/key}} with letters, digits, '.', '_' and '-'")
	}
}

// checkURL checks an upstream base URL without echoing it.
func checkURL(p *problems, f, s string) {
	u, err := url.Parse(s)
	switch {
	case s == "":
		p.add(f, "is required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		p.add(f, "must be an absolute http or https URL")
	case u.RawQuery != "" || u.User != nil || u.Fragment != "":
		p.add(f, "must not carry a query, fragment or credentials")
	}
}

// checkTraffic validates the routes, or defaults them for one entity.
func checkTraffic(p *problems, c *Config, names map[string]bool) {
	if c.TrafficConfig == nil || len(c.TrafficConfig.Routes) == 0 {
		if len(c.ServedEntities) == 1 && c.ServedEntities[0].Name != "" {
			c.TrafficConfig = &TrafficConfig{Routes: []Route{{ServedEntityName: c.ServedEntities[0].Name, TrafficPercentage: 100}}}
		} else if len(c.ServedEntities) > 1 {
			p.add("config.traffic_config", "is required with more than one served entity: give each a traffic_percentage, summing to 100")
		}
		return
	}
	seen := map[string]bool{}
	sum := 0
	for i := range c.TrafficConfig.Routes {
		r := &c.TrafficConfig.Routes[i]
		f := fmt.Sprintf("config.traffic_config.routes[%d]", i)
		if r.ServedEntityName == "" {
			r.ServedEntityName = r.ServedModelName
		}
		r.ServedModelName = ""
		switch {
		case r.ServedEntityName == "":
			p.add(f+".served_entity_name", "is required")
		case !names[r.ServedEntityName]:
			p.add(f+".served_entity_name", "%q is not a served entity of this config", r.ServedEntityName)
		case seen[r.ServedEntityName]:
			p.add(f+".served_entity_name", "%q has two routes", r.ServedEntityName)
		}
		seen[r.ServedEntityName] = true
		if r.TrafficPercentage < 0 || r.TrafficPercentage > 100 {
			p.add(f+".traffic_percentage", "must be between 0 and 100")
		}
		sum += r.TrafficPercentage
	}
	if sum != 100 {
		p.add("config.traffic_config.routes", "traffic percentages sum to %d, not 100", sum)
	}
}

// config converts c to the YAML side's Capacity with its defaults.
func (c *Capacity) config() (config.Capacity, error) {
	out := config.Capacity{TokensPerSecond: c.TokensPerSecond, Concurrency: c.Concurrency,
		HourlyPrice: c.HourlyPrice, MaxQueue: c.MaxQueue, MaxQueueWait: config.Duration(10 * time.Second)}
	if c.TokensPerSecond < 0 || c.Concurrency < 0 {
		return out, fmt.Errorf("tokens_per_second and concurrency must not be negative")
	}
	if c.TokensPerSecond == 0 && c.Concurrency == 0 {
		return out, fmt.Errorf("needs tokens_per_second or concurrency")
	}
	if c.HourlyPrice != "" {
		if _, err := pricing.ParseUSD(c.HourlyPrice); err != nil {
			return out, fmt.Errorf("hourly_price: %w", err)
		}
	}
	if c.MaxQueueWait != "" {
		d, err := time.ParseDuration(c.MaxQueueWait)
		if err != nil || d < 0 || d > 10*time.Minute {
			return out, fmt.Errorf("max_queue_wait must be a duration between 0s and 10m, such as \"10s\"")
		}
		out.MaxQueueWait = config.Duration(d)
	}
	if c.MaxQueue < 0 {
		return out, fmt.Errorf("max_queue must not be negative")
	}
	if out.MaxQueue == 0 {
		out.MaxQueue = 64
	}
	return out, nil
}

// checkGateway validates AI Gateway settings.
func checkGateway(g *sluice.AIGateway, prefix string) error {
	var p problems
	for _, s := range g.Problems() {
		field, msg, _ := strings.Cut(s, ": ")
		p.add(prefix+field, "%s", msg)
	}
	return p.err()
}

// checkTags validates tags.
func checkTags(tags []Tag, field string) error {
	var p problems
	seen := map[string]bool{}
	for i, t := range tags {
		f := fmt.Sprintf("%s[%d].key", field, i)
		switch {
		case t.Key == "":
			p.add(f, "is required")
		case len(t.Key) > 255 || len(t.Value) > 255:
			p.add(f, "keys and values are at most 255 characters")
		case seen[t.Key]:
			p.add(f, "%q is given twice", t.Key)
		}
		seen[t.Key] = true
	}
	return p.err()
}
