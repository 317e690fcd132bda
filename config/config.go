// Package config defines Sluice's configuration file: one strict YAML
// document with ${ENV} references for secrets, defaults for everything that
// can have one, and validation that names the field and line at fault.
//
//	cfg, err := config.Load("sluice.yaml") // or config.Default() with no file
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration of one Sluice process.
type Config struct {
	// Listen is the data- and control-plane address (host:port).
	Listen string `yaml:"listen"`
	Ledger Ledger `yaml:"ledger"`
	Server Server `yaml:"server"`
	Log    Log    `yaml:"log"`
	Prices Prices `yaml:"prices"`
	// RateLimits caps requests and tokens per minute (limits.go).
	RateLimits RateLimits `yaml:"rate_limits"`
	// Budgets configures reservations and alerts (budgets.go).
	Budgets   Budgets    `yaml:"budgets"`
	Upstreams []Upstream `yaml:"upstreams"`
	Endpoints []Endpoint `yaml:"endpoints"`
	// Secrets resolves {{secrets/scope/key}} references (serving.go).
	Secrets Secrets `yaml:"secrets"`
	// Serving configures the serving-endpoints control plane.
	Serving Serving `yaml:"serving"`

	// Network settings: listeners, egress policy, data classes, audit
	// (network.go).
	Network `yaml:",inline"`
}

// Ledger says where usage records and keys are kept.
type Ledger struct {
	// DSN is a SQLite file path, or a postgres:// URL.
	DSN string `yaml:"dsn"`
	// Synchronous is SQLite's durability level: "normal" (the default)
	// survives a crash of the Sluice process; "full" also survives a power
	// loss, at the cost of one fsync per group commit.
	Synchronous string `yaml:"synchronous"`
	// MaxBatch caps how many records share one commit.
	MaxBatch int `yaml:"max_batch"`
}

// Server holds the HTTP server's limits.
type Server struct {
	ReadHeaderTimeout  Duration `yaml:"read_header_timeout"`
	BodyReadTimeout    Duration `yaml:"body_read_timeout"`
	IdleTimeout        Duration `yaml:"idle_timeout"`
	MaxHeaderBytes     int      `yaml:"max_header_bytes"`
	MaxBodyBytes       int64    `yaml:"max_body_bytes"`
	StreamWriteTimeout Duration `yaml:"stream_write_timeout"`
	ShutdownGrace      Duration `yaml:"shutdown_grace"`
}

// Log configures structured logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or text
}

// Prices adjusts the built-in price catalog.
type Prices struct {
	// USDPerDBU converts Databricks DBU prices to dollars.
	USDPerDBU string          `yaml:"usd_per_dbu"`
	Overrides []PriceOverride `yaml:"overrides"`
}

// PriceOverride sets the price of one provider's model.
type PriceOverride struct {
	Provider string `yaml:"provider"`
	Model    string `yaml:"model"`
	Input    string `yaml:"input_per_1m"`  // USD per 1M input tokens
	Output   string `yaml:"output_per_1m"` // USD per 1M output tokens
}

// Upstream types.
const (
	TypeOpenAI    = "openai"    // any OpenAI-compatible server, Databricks included
	TypeAzure     = "azure"     // Azure OpenAI deployments
	TypeSimulator = "simulator" // Sluice's built-in simulator model
)

// Upstream is a model provider Sluice forwards to.
type Upstream struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// Provider names the price-catalog provider (openai, azure, databricks,
	// self-hosted, simulator). It defaults from Type.
	Provider string `yaml:"provider"`
	// BaseURL is the API root: https://api.openai.com/v1,
	// https://RESOURCE.openai.azure.com, https://WORKSPACE/serving-endpoints,
	// http://127.0.0.1:8000/v1.
	BaseURL    string            `yaml:"base_url"`
	APIKey     string            `yaml:"api_key"`
	APIVersion string            `yaml:"api_version"` // Azure only
	Headers    map[string]string `yaml:"headers"`
	// Timeout bounds the wait for the upstream's response headers.
	Timeout   Duration   `yaml:"timeout"`
	Simulator *Simulator `yaml:"simulator"`

	// UpstreamPolicy says what the upstream may receive and where it may
	// connect (network.go).
	UpstreamPolicy `yaml:",inline"`
	// UpstreamHealth are its health check and circuit breaker (serving.go).
	UpstreamHealth `yaml:",inline"`
}

// Simulator configures a `type: simulator` upstream.
type Simulator struct {
	TTFT            Duration `yaml:"ttft"`
	TokensPerSecond float64  `yaml:"tokens_per_second"`
	OutputTokens    int      `yaml:"output_tokens"`
	EmbeddingDims   int      `yaml:"embedding_dims"`
}

// Endpoint is what clients name in the `model` field.
type Endpoint struct {
	Name     string `yaml:"name"`
	Upstream string `yaml:"upstream"`
	// Model is the upstream's model name (the deployment name for Azure,
	// the serving endpoint name for Databricks).
	Model string `yaml:"model"`
	// APIs lists the operations allowed: chat, completions, embeddings.
	APIs []string `yaml:"apis"`
	// Price overrides the catalog for this endpoint.
	Price *EndpointPrice `yaml:"price"`
	// MaxOutputTokens is the completion size assumed for a request that
	// sets no max_tokens, when reserving its worst-case cost and tokens.
	MaxOutputTokens int64 `yaml:"max_output_tokens"`

	// EndpointRouting adds targets and the data-class routing mode
	// (network.go).
	EndpointRouting `yaml:",inline"`
	// EndpointServing adds the kind, fallback and AI Gateway settings
	// (serving.go).
	EndpointServing `yaml:",inline"`
}

// EndpointPrice is an endpoint's own price in USD per 1M tokens.
type EndpointPrice struct {
	Input  string `yaml:"input_per_1m"`
	Output string `yaml:"output_per_1m"`
}

// Duration is a time.Duration written as "30s" or "1m30s".
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (use e.g. 30s, 5m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

//go:embed default.yaml
var defaultYAML []byte

// DefaultPath is where `sluice serve` looks for a config file when none is
// named. If it does not exist, the embedded default is used.
const DefaultPath = "sluice.yaml"

// Default returns the embedded default configuration: a loopback listener,
// a SQLite ledger in ./sluice-data and the simulator endpoints.
func Default() *Config {
	c, err := Parse(bytes.NewReader(defaultYAML), nil)
	if err != nil {
		panic("config: embedded default is invalid: " + err.Error())
	}
	return c
}

// DefaultYAML returns the embedded default configuration file.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := Parse(f, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Error is a configuration problem at a line of the file (0 if unknown).
type Error struct {
	Line  int
	Field string
	Msg   string
}

func (e Error) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file.
type Errors []Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// Parse reads a YAML configuration strictly: unknown keys are errors, ${ENV}
// references are replaced using lookup (nil refuses every reference), and
// defaults are applied before validation.
func Parse(r io.Reader, lookup func(string) (string, bool)) (*Config, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, err
	}
	var errs Errors
	// Unknown keys: a strict decode of the unexpanded text keeps the
	// original line numbers; its type errors are left to the real decode.
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var probe Config
	if err := dec.Decode(&probe); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, err
		}
		for _, m := range te.Errors {
			if strings.Contains(m, "not found in type") {
				errs = append(errs, lineError(m))
			}
		}
	}
	expandEnv(&root, lookup, &errs)
	if len(errs) > 0 {
		return nil, errs
	}
	c := &Config{}
	if len(root.Content) > 0 {
		if err := root.Decode(c); err != nil {
			var te *yaml.TypeError
			if errors.As(err, &te) {
				for _, m := range te.Errors {
					errs = append(errs, lineError(m))
				}
				return nil, errs
			}
			return nil, err
		}
	}
	c.applyDefaults()
	if verrs := c.Validate(); len(verrs) > 0 {
		for i := range verrs {
			verrs[i].Line = lineOf(&root, verrs[i].Field)
		}
		return nil, verrs
	}
	return c, nil
}

// lineError turns yaml's "line N: msg" text into an Error.
func lineError(m string) Error {
	var line int
	if _, err := fmt.Sscanf(m, "line %d:", &line); err == nil {
		if i := strings.Index(m, ": "); i >= 0 {
			m = m[i+2:]
		}
	}
	m = strings.Replace(m, "field ", "unknown field ", 1)
	if i := strings.Index(m, " not found in type"); i >= 0 {
		m = m[:i]
	}
	return Error{Line: line, Msg: m}
}

func expandEnv(n *yaml.Node, lookup func(string) (string, bool), errs *Errors) {
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			name := ref[2 : len(ref)-1]
			if lookup != nil {
				if v, ok := lookup(name); ok {
					return v
				}
			}
			*errs = append(*errs, Error{Line: n.Line, Msg: "environment variable " + name + " is not set"})
			return ""
		})
	}
	for _, c := range n.Content {
		expandEnv(c, lookup, errs)
	}
}

// lineOf finds the line of a field path such as "upstreams[1].base_url".
func lineOf(root *yaml.Node, path string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, part := range strings.Split(path, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			name = part[:i]
			fmt.Sscanf(part[i:], "[%d]", &idx)
		}
		if n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				line = n.Content[i].Line
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return line
		}
		n = next
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}
