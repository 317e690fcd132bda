package serving

import (
	"encoding/json"

	"github.com/sluice-gateway/sluice"
)

// The types below are Databricks' JSON (databricks-sdk-go service/serving),
// limited to the fields Sluice reads or must send back. Fields the SDK may
// send that Sluice has no use for are accepted and ignored (json.RawMessage
// or plain fields marked "ignored"); fields whose meaning Sluice cannot
// honour are refused with a message saying what to use instead. Anything
// else is an unknown field and refused, so that a typo is not silently
// dropped.

// Endpoint states, as Databricks spells them.
const (
	StateReady    = "READY"
	StateNotReady = "NOT_READY"

	ConfigNotUpdating  = "NOT_UPDATING"
	ConfigInProgress   = "IN_PROGRESS"
	ConfigUpdateFailed = "UPDATE_FAILED"
)

// Permission levels, weakest first.
const (
	CanView   = "CAN_VIEW"
	CanQuery  = "CAN_QUERY"
	CanManage = "CAN_MANAGE"
)

// Tasks of external models.
const (
	TaskChat        = "llm/v1/chat"
	TaskCompletions = "llm/v1/completions"
	TaskEmbeddings  = "llm/v1/embeddings"
)

// Endpoint is a serving endpoint: ServingEndpointDetailed in answers to
// create, get and config updates.
type Endpoint struct {
	Name                 string            `json:"name"`
	ID                   string            `json:"id,omitempty"`
	Creator              string            `json:"creator,omitempty"`
	CreationTimestamp    int64             `json:"creation_timestamp,omitempty"`     // ms
	LastUpdatedTimestamp int64             `json:"last_updated_timestamp,omitempty"` // ms
	State                *State            `json:"state,omitempty"`
	Config               *Config           `json:"config,omitempty"`
	PendingConfig        *Config           `json:"pending_config,omitempty"`
	AIGateway            *sluice.AIGateway `json:"ai_gateway,omitempty"`
	Tags                 []Tag             `json:"tags,omitempty"`
	Description          string            `json:"description,omitempty"`
	Task                 string            `json:"task,omitempty"`
	PermissionLevel      string            `json:"permission_level,omitempty"`
}

// State is an endpoint's readiness and the progress of its last config
// update.
type State struct {
	Ready        string `json:"ready"`         // READY, NOT_READY
	ConfigUpdate string `json:"config_update"` // NOT_UPDATING, IN_PROGRESS, UPDATE_FAILED
}

// Config is an endpoint's served entities and traffic split: the body of
// PUT .../config, the config of a create request, and config and
// pending_config in answers.
type Config struct {
	ServedEntities []ServedEntity `json:"served_entities,omitempty"`
	TrafficConfig  *TrafficConfig `json:"traffic_config,omitempty"`
	ConfigVersion  int64          `json:"config_version,omitempty"`
	// StartTime (ms) is when a pending config was submitted.
	StartTime int64 `json:"start_time,omitempty"`

	// Refused: the legacy served_models list and auto_capture_config
	// (use served_entities and ai_gateway.inference_table_config).
	ServedModels      json.RawMessage `json:"served_models,omitempty"`
	AutoCaptureConfig json.RawMessage `json:"auto_capture_config,omitempty"`
}

// TrafficConfig splits an endpoint's calls across its served entities.
type TrafficConfig struct {
	Routes []Route `json:"routes"`
}

// Route sends a share of the calls to one served entity.
type Route struct {
	ServedEntityName  string `json:"served_entity_name,omitempty"`
	ServedModelName   string `json:"served_model_name,omitempty"` // legacy spelling, accepted
	TrafficPercentage int    `json:"traffic_percentage"`
}

// ServedEntity is one model an endpoint serves: either a registered entity
// (EntityName names an upstream from Sluice's configuration file and
// EntityVersion is the model name sent to it) or an external model.
type ServedEntity struct {
	// Name is unique within the endpoint; default entity_name-entity_version
	// for a registered entity, the external model's name for an external
	// one.
	Name          string         `json:"name,omitempty"`
	EntityName    string         `json:"entity_name,omitempty"`
	EntityVersion string         `json:"entity_version,omitempty"`
	ExternalModel *ExternalModel `json:"external_model,omitempty"`

	// WorkloadSize (Small, Medium, Large) caps concurrent calls at 4, 16 or
	// 64 (config.WorkloadConcurrency).
	WorkloadSize       string `json:"workload_size,omitempty"`
	WorkloadType       string `json:"workload_type,omitempty"` // kept, not used
	ScaleToZeroEnabled bool   `json:"scale_to_zero_enabled,omitempty"`

	// Provisioned throughput, in tokens per second: max_provisioned_throughput
	// becomes the capacity's tokens_per_second unless capacity is given.
	MinProvisionedThroughput int64 `json:"min_provisioned_throughput,omitempty"`
	MaxProvisionedThroughput int64 `json:"max_provisioned_throughput,omitempty"`
	ProvisionedModelUnits    int64 `json:"provisioned_model_units,omitempty"`
	// Custom-model concurrency: max_provisioned_concurrency becomes the
	// capacity's concurrency unless capacity or workload_size is given.
	MinProvisionedConcurrency int64 `json:"min_provisioned_concurrency,omitempty"`
	MaxProvisionedConcurrency int64 `json:"max_provisioned_concurrency,omitempty"`

	// Capacity is a Sluice extension: the entity's declared capacity and
	// its hourly price (see Capacity).
	Capacity *Capacity `json:"capacity,omitempty"`

	// Ignored: Databricks container settings.
	EnvironmentVars    json.RawMessage `json:"environment_vars,omitempty"`
	InstanceProfileArn string          `json:"instance_profile_arn,omitempty"`

	// Set in answers only.
	CreationTimestamp int64              `json:"creation_timestamp,omitempty"`
	Creator           string             `json:"creator,omitempty"`
	State             *ServedEntityState `json:"state,omitempty"`
}

// ServedEntityState is a served entity's deployment state in answers.
type ServedEntityState struct {
	Deployment             string `json:"deployment,omitempty"` // DEPLOYMENT_READY, DEPLOYMENT_CREATING
	DeploymentStateMessage string `json:"deployment_state_message,omitempty"`
}

// Capacity (Sluice extension on a served entity) declares dedicated
// capacity: calls are admitted while they fit tokens_per_second and
// concurrency, waiting at most max_queue_wait (default "10s") with at most
// max_queue (default 64) waiting; hourly_price ("12.50" USD) is owed per
// hour whether used or not.
type Capacity struct {
	TokensPerSecond int64  `json:"tokens_per_second,omitempty"`
	Concurrency     int64  `json:"concurrency,omitempty"`
	HourlyPrice     string `json:"hourly_price,omitempty"`
	MaxQueueWait    string `json:"max_queue_wait,omitempty"`
	MaxQueue        int    `json:"max_queue,omitempty"`
}

// Providers of external models.
const (
	ProviderOpenAI     = "openai"
	ProviderCustom     = "custom"
	ProviderDatabricks = "databricks-model-serving"
)

// ExternalModel is a model served by another provider.
type ExternalModel struct {
	Name     string `json:"name"`
	Provider string `json:"provider"`
	Task     string `json:"task"`

	OpenAIConfig                 *OpenAIConfig                 `json:"openai_config,omitempty"`
	CustomProviderConfig         *CustomProviderConfig         `json:"custom_provider_config,omitempty"`
	DatabricksModelServingConfig *DatabricksModelServingConfig `json:"databricks_model_serving_config,omitempty"`

	// Providers Sluice does not speak; decoded only so that the refusal can
	// name them.
	AI21LabsConfig            json.RawMessage `json:"ai21labs_config,omitempty"`
	AmazonBedrockConfig       json.RawMessage `json:"amazon_bedrock_config,omitempty"`
	AnthropicConfig           json.RawMessage `json:"anthropic_config,omitempty"`
	CohereConfig              json.RawMessage `json:"cohere_config,omitempty"`
	GoogleCloudVertexAIConfig json.RawMessage `json:"google_cloud_vertex_ai_config,omitempty"`
	PaLMConfig                json.RawMessage `json:"palm_config,omitempty"`
}

// OpenAIConfig reaches OpenAI or Azure OpenAI. Key fields hold a secret
// reference {{secrets/scope/key}} or, like the *_plaintext fields, the key
// itself.
type OpenAIConfig struct {
	OpenAIAPIKey          string `json:"openai_api_key,omitempty"`
	OpenAIAPIKeyPlaintext string `json:"openai_api_key_plaintext,omitempty"`
	OpenAIAPIBase         string `json:"openai_api_base,omitempty"`
	// OpenAIAPIType is openai (default), azure or azuread (treated as azure
	// with the key sent in the api-key header).
	OpenAIAPIType        string `json:"openai_api_type,omitempty"`
	OpenAIAPIVersion     string `json:"openai_api_version,omitempty"`
	OpenAIDeploymentName string `json:"openai_deployment_name,omitempty"`
	OpenAIOrganization   string `json:"openai_organization,omitempty"`

	// Refused: Sluice does not fetch Entra ID tokens.
	MicrosoftEntraClientID              string `json:"microsoft_entra_client_id,omitempty"`
	MicrosoftEntraClientSecret          string `json:"microsoft_entra_client_secret,omitempty"`
	MicrosoftEntraClientSecretPlaintext string `json:"microsoft_entra_client_secret_plaintext,omitempty"`
	MicrosoftEntraTenantID              string `json:"microsoft_entra_tenant_id,omitempty"`
}

// CustomProviderConfig reaches any OpenAI-compatible server.
type CustomProviderConfig struct {
	CustomProviderURL string           `json:"custom_provider_url"`
	APIKeyAuth        *APIKeyAuth      `json:"api_key_auth,omitempty"`
	BearerTokenAuth   *BearerTokenAuth `json:"bearer_token_auth,omitempty"`
}

// APIKeyAuth sends Value in the header named Key.
type APIKeyAuth struct {
	Key            string `json:"key"`
	Value          string `json:"value,omitempty"`
	ValuePlaintext string `json:"value_plaintext,omitempty"`
}

// BearerTokenAuth sends Authorization: Bearer <token>.
type BearerTokenAuth struct {
	Token          string `json:"token,omitempty"`
	TokenPlaintext string `json:"token_plaintext,omitempty"`
}

// DatabricksModelServingConfig reaches an endpoint of another Databricks
// workspace through its OpenAI-compatible routes.
type DatabricksModelServingConfig struct {
	DatabricksWorkspaceURL      string `json:"databricks_workspace_url"`
	DatabricksAPIToken          string `json:"databricks_api_token,omitempty"`
	DatabricksAPITokenPlaintext string `json:"databricks_api_token_plaintext,omitempty"`
}

// Tag is a key/value label.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
}

// createRequest is CreateServingEndpoint.
type createRequest struct {
	Name        string            `json:"name"`
	Config      *Config           `json:"config"`
	AIGateway   *sluice.AIGateway `json:"ai_gateway"`
	Tags        []Tag             `json:"tags"`
	Description string            `json:"description"`

	// Refused: the legacy endpoint rate limits (use ai_gateway.rate_limits).
	RateLimits json.RawMessage `json:"rate_limits"`
	// Ignored.
	BudgetPolicyID     string          `json:"budget_policy_id"`
	EmailNotifications json.RawMessage `json:"email_notifications"`
	RouteOptimized     bool            `json:"route_optimized"`
}

// tagsPatch is PatchServingEndpointTags.
type tagsPatch struct {
	AddTags    []Tag    `json:"add_tags"`
	DeleteTags []string `json:"delete_tags"`
}

// listResponse is ListEndpointsResponse.
type listResponse struct {
	Endpoints []summary `json:"endpoints"`
}

// summary is ServingEndpoint, a list entry.
type summary struct {
	Name                 string            `json:"name"`
	ID                   string            `json:"id,omitempty"`
	Creator              string            `json:"creator,omitempty"`
	CreationTimestamp    int64             `json:"creation_timestamp,omitempty"`
	LastUpdatedTimestamp int64             `json:"last_updated_timestamp,omitempty"`
	State                *State            `json:"state,omitempty"`
	Config               *summaryConfig    `json:"config,omitempty"`
	AIGateway            *sluice.AIGateway `json:"ai_gateway,omitempty"`
	Tags                 []Tag             `json:"tags,omitempty"`
	Description          string            `json:"description,omitempty"`
	Task                 string            `json:"task,omitempty"`
}

// summaryConfig is EndpointCoreConfigSummary.
type summaryConfig struct {
	ServedEntities []summaryEntity `json:"served_entities,omitempty"`
}

// summaryEntity is ServedEntitySpec.
type summaryEntity struct {
	Name          string         `json:"name,omitempty"`
	EntityName    string         `json:"entity_name,omitempty"`
	EntityVersion string         `json:"entity_version,omitempty"`
	ExternalModel *ExternalModel `json:"external_model,omitempty"`
}

// AccessControl is one entry of an access control list. Principals are
// Sluice's: group_name is a team ("users" is every key),
// service_principal_name and user_name are key ids.
type AccessControl struct {
	GroupName            string `json:"group_name,omitempty"`
	ServicePrincipalName string `json:"service_principal_name,omitempty"`
	UserName             string `json:"user_name,omitempty"`
	PermissionLevel      string `json:"permission_level,omitempty"`
}

// permissionsRequest is ServingEndpointPermissionsRequest.
type permissionsRequest struct {
	AccessControlList []AccessControl `json:"access_control_list"`
}

// permissions is ServingEndpointPermissions.
type permissions struct {
	ObjectID          string        `json:"object_id"`
	ObjectType        string        `json:"object_type"`
	AccessControlList []aclResponse `json:"access_control_list"`
}

// aclResponse is ServingEndpointAccessControlResponse.
type aclResponse struct {
	GroupName            string       `json:"group_name,omitempty"`
	ServicePrincipalName string       `json:"service_principal_name,omitempty"`
	UserName             string       `json:"user_name,omitempty"`
	AllPermissions       []permission `json:"all_permissions"`
}

// permission is ServingEndpointPermission.
type permission struct {
	PermissionLevel     string   `json:"permission_level"`
	Inherited           bool     `json:"inherited"`
	InheritedFromObject []string `json:"inherited_from_object,omitempty"`
}

// permissionLevels is GetServingEndpointPermissionLevelsResponse.
type permissionLevels struct {
	PermissionLevels []levelDescription `json:"permission_levels"`
}

type levelDescription struct {
	PermissionLevel string `json:"permission_level"`
	Description     string `json:"description"`
}

// spec is what the store keeps in ServingEndpointRecord.Spec.
type spec struct {
	Config      *Config           `json:"config,omitempty"`         // serving; nil until the first config is ready
	Pending     *Config           `json:"pending_config,omitempty"` // waiting for its entities
	State       State             `json:"state"`
	AIGateway   *sluice.AIGateway `json:"ai_gateway,omitempty"`
	Tags        []Tag             `json:"tags,omitempty"`
	Description string            `json:"description,omitempty"`
	ACL         []AccessControl   `json:"access_control_list,omitempty"`
	// LastVersion is the last config_version handed out, failed ones
	// included, so versions are never reused.
	LastVersion int64 `json:"last_config_version,omitempty"`
}

// nextVersion is the config_version of the next config.
func (sp *spec) nextVersion() int64 {
	v := sp.LastVersion
	for _, c := range []*Config{sp.Config, sp.Pending} {
		if c != nil && c.ConfigVersion > v {
			v = c.ConfigVersion
		}
	}
	return v + 1
}
