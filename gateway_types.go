package sluice

import "fmt"

// AIGateway is an endpoint's AI Gateway settings in Databricks' shape
// (PUT /api/2.0/serving-endpoints/{name}/ai-gateway), also accepted in the
// YAML config under an endpoint's ai_gateway. How each maps onto Sluice:
//   - RateLimits drive the rate limiter (key user, user_group = team,
//     service_principal = key id, endpoint);
//   - UsageTrackingConfig keeps client_request_id and usage_context on the
//     usage records (tokens and cost are metered regardless: budgets need
//     them);
//   - InferenceTableConfig logs payloads into the inference_log table;
//   - Guardrails.Input/Output.PII uses Sluice's sensitive-data detectors;
//   - FallbackConfig tries the next served entity on failure.
type AIGateway struct {
	UsageTrackingConfig  *UsageTrackingConfig  `yaml:"usage_tracking_config" json:"usage_tracking_config,omitempty"`
	InferenceTableConfig *InferenceTableConfig `yaml:"inference_table_config" json:"inference_table_config,omitempty"`
	RateLimits           []AIRateLimit         `yaml:"rate_limits" json:"rate_limits,omitempty"`
	Guardrails           *Guardrails           `yaml:"guardrails" json:"guardrails,omitempty"`
	FallbackConfig       *FallbackConfig       `yaml:"fallback_config" json:"fallback_config,omitempty"`
}

// UsageTrackingConfig turns usage tracking on.
type UsageTrackingConfig struct {
	Enabled bool `yaml:"enabled" json:"enabled"`
}

// InferenceTableConfig turns payload logging on. Catalog, schema and
// prefix are kept for compatibility and name the rows' table in reports;
// rows go to Sluice's inference_log table.
type InferenceTableConfig struct {
	Enabled         bool   `yaml:"enabled" json:"enabled"`
	CatalogName     string `yaml:"catalog_name" json:"catalog_name,omitempty"`
	SchemaName      string `yaml:"schema_name" json:"schema_name,omitempty"`
	TableNamePrefix string `yaml:"table_name_prefix" json:"table_name_prefix,omitempty"`
	// SamplingFraction (Sluice extension) logs this fraction of requests,
	// in (0, 1]; 0 means 1.
	SamplingFraction float64 `yaml:"sampling_fraction" json:"sampling_fraction,omitempty"`
}

// AIRateLimit is one AI Gateway rate limit.
type AIRateLimit struct {
	// Key is user, user_group, service_principal or endpoint.
	Key string `yaml:"key" json:"key,omitempty"`
	// Principal limits one principal; empty gives each its own bucket.
	Principal     string `yaml:"principal" json:"principal,omitempty"`
	RenewalPeriod string `yaml:"renewal_period" json:"renewal_period"` // minute
	Calls         int64  `yaml:"calls" json:"calls,omitempty"`
	Tokens        int64  `yaml:"tokens" json:"tokens,omitempty"`
}

// Guardrails are checks on requests and responses.
type Guardrails struct {
	Input  *GuardrailParameters `yaml:"input" json:"input,omitempty"`
	Output *GuardrailParameters `yaml:"output" json:"output,omitempty"`
}

// GuardrailParameters configures one direction.
type GuardrailParameters struct {
	PII *PIIBehavior `yaml:"pii" json:"pii,omitempty"`
	// InvalidKeywords refuses payloads containing any of these words.
	InvalidKeywords []string `yaml:"invalid_keywords" json:"invalid_keywords,omitempty"`
	// Safety and ValidTopics are accepted for compatibility; Sluice has no
	// model to judge them and says so in the endpoint's state.
	Safety      bool     `yaml:"safety" json:"safety,omitempty"`
	ValidTopics []string `yaml:"valid_topics" json:"valid_topics,omitempty"`
}

// PIIBehavior is BLOCK, MASK or NONE.
type PIIBehavior struct {
	Behavior string `yaml:"behavior" json:"behavior"`
}

// FallbackConfig turns fallback across served entities on or off.
type FallbackConfig struct {
	Enabled bool `yaml:"enabled" json:"enabled"`
}

// Problems lists what is wrong with g, each as "field: message" with
// fields relative to the settings object (e.g. "rate_limits[0].key").
func (g *AIGateway) Problems() []string {
	if g == nil {
		return nil
	}
	var out []string
	add := func(field, format string, a ...any) { out = append(out, field+": "+fmt.Sprintf(format, a...)) }
	if t := g.InferenceTableConfig; t != nil {
		if t.SamplingFraction < 0 || t.SamplingFraction > 1 {
			add("inference_table_config.sampling_fraction", "must be between 0 and 1")
		}
	}
	for i, r := range g.RateLimits {
		f := fmt.Sprintf("rate_limits[%d]", i)
		switch r.Key {
		case "user", "user_group", "service_principal", "endpoint":
		case "":
			add(f+".key", "is required: user, user_group, service_principal or endpoint")
		default:
			add(f+".key", "%q is not user, user_group, service_principal or endpoint", r.Key)
		}
		if r.RenewalPeriod != "minute" {
			add(f+".renewal_period", "must be minute")
		}
		if r.Calls < 0 || r.Tokens < 0 {
			add(f, "calls and tokens must not be negative")
		} else if r.Calls == 0 && r.Tokens == 0 {
			add(f, "needs calls or tokens")
		}
	}
	if gr := g.Guardrails; gr != nil {
		for _, d := range []struct {
			name string
			p    *GuardrailParameters
		}{{"input", gr.Input}, {"output", gr.Output}} {
			if d.p == nil || d.p.PII == nil {
				continue
			}
			switch d.p.PII.Behavior {
			case "BLOCK", "MASK", "NONE":
			default:
				add("guardrails."+d.name+".pii.behavior", "%q is not BLOCK, MASK or NONE", d.p.PII.Behavior)
			}
		}
	}
	return out
}

// RateScope maps an AI Gateway rate-limit key onto Sluice's rate-limit
// scopes: service_principal is a key, user_group a team.
func RateScope(key string) string {
	switch key {
	case "service_principal":
		return "key"
	case "user_group":
		return "team"
	}
	return key
}
