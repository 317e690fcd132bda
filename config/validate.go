package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Defaults applied to fields left empty.
const (
	DefaultListen             = "127.0.0.1:8080"
	DefaultLedgerDSN          = "./sluice-data/sluice.db"
	DefaultMaxBatch           = 512
	DefaultMaxBodyBytes       = 16 << 20
	DefaultMaxHeaderBytes     = 64 << 10
	DefaultReadHeaderTimeout  = 10 * time.Second
	DefaultBodyReadTimeout    = 60 * time.Second
	DefaultIdleTimeout        = 120 * time.Second
	DefaultStreamWriteTimeout = 30 * time.Second
	DefaultShutdownGrace      = 30 * time.Second
	DefaultUpstreamTimeout    = 300 * time.Second
	DefaultMaxOutputTokens    = 4096
)

func (c *Config) applyDefaults() {
	setDefault(&c.Listen, DefaultListen)
	setDefault(&c.Ledger.DSN, DefaultLedgerDSN)
	setDefault(&c.Ledger.Synchronous, "normal")
	if c.Ledger.MaxBatch == 0 {
		c.Ledger.MaxBatch = DefaultMaxBatch
	}
	s := &c.Server
	setDuration(&s.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDuration(&s.BodyReadTimeout, DefaultBodyReadTimeout)
	setDuration(&s.IdleTimeout, DefaultIdleTimeout)
	setDuration(&s.StreamWriteTimeout, DefaultStreamWriteTimeout)
	setDuration(&s.ShutdownGrace, DefaultShutdownGrace)
	if s.MaxHeaderBytes == 0 {
		s.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if s.MaxBodyBytes == 0 {
		s.MaxBodyBytes = DefaultMaxBodyBytes
	}
	c.networkDefaults()
	c.limitDefaults()
	c.budgetDefaults()
	c.servingDefaults()
	setDefault(&c.Log.Level, "info")
	setDefault(&c.Log.Format, "json")
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		setDuration(&u.Timeout, DefaultUpstreamTimeout)
		if u.Provider == "" {
			switch u.Type {
			case TypeAzure:
				u.Provider = "azure"
			case TypeSimulator:
				u.Provider = "simulator"
			case TypeOpenAI:
				u.Provider = providerFromURL(u.BaseURL)
			}
		}
		if u.Type == TypeSimulator && u.Simulator == nil {
			u.Simulator = &Simulator{}
		}
	}
	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		setDefault(&e.Model, e.Name)
		if e.MaxOutputTokens == 0 {
			e.MaxOutputTokens = DefaultMaxOutputTokens
		}
		if len(e.APIs) == 0 {
			e.APIs = []string{"chat", "completions", "embeddings"}
			for _, t := range e.EndpointTargets() {
				if c.upstreamType(t.Upstream) == TypeMLflow {
					// A custom model takes its own payloads too.
					e.APIs = append(e.APIs, "invocations")
					break
				}
			}
		}
	}
}

func (c *Config) upstreamType(name string) string {
	for _, u := range c.Upstreams {
		if u.Name == name {
			return u.Type
		}
	}
	return ""
}

// providerFromURL guesses the price-catalog provider of an OpenAI-compatible
// base URL; anything unrecognised is self-hosted (priced only by config).
func providerFromURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "self-hosted"
	}
	h := strings.ToLower(u.Hostname())
	switch {
	case h == "api.openai.com":
		return "openai"
	case strings.HasSuffix(h, ".azuredatabricks.net"), strings.HasSuffix(h, ".cloud.databricks.com"),
		strings.HasSuffix(h, ".gcp.databricks.com"), strings.Contains(u.Path, "/serving-endpoints"):
		return "databricks"
	case strings.HasSuffix(h, ".openai.azure.com"):
		return "azure"
	}
	return "self-hosted"
}

func setDefault(s *string, v string) {
	if *s == "" {
		*s = v
	}
}

func setDuration(d *Duration, v time.Duration) {
	if *d == 0 {
		*d = Duration(v)
	}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Validate checks every field and returns one Error per problem, with the
// field's path (line numbers are filled in by Parse).
func (c *Config) Validate() Errors {
	var errs Errors
	add := func(field, format string, a ...any) {
		errs = append(errs, Error{Field: field, Msg: fmt.Sprintf(format, a...)})
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add("listen", "%q is not host:port", c.Listen)
	}
	if c.Ledger.DSN == "" {
		add("ledger.dsn", "must not be empty")
	}
	switch c.Ledger.Synchronous {
	case "normal", "full":
	default:
		add("ledger.synchronous", "must be normal or full, not %q", c.Ledger.Synchronous)
	}
	if c.Ledger.MaxBatch < 1 || c.Ledger.MaxBatch > 10000 {
		add("ledger.max_batch", "must be between 1 and 10000")
	}
	if c.Server.MaxBodyBytes < 1024 {
		add("server.max_body_bytes", "must be at least 1024")
	}
	if c.Server.MaxHeaderBytes < 1024 {
		add("server.max_header_bytes", "must be at least 1024")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "must be debug, info, warn or error")
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		add("log.format", "must be json or text")
	}
	if c.Prices.USDPerDBU != "" {
		if err := checkUSD(c.Prices.USDPerDBU); err != nil {
			add("prices.usd_per_dbu", "%v", err)
		}
	}
	for i, o := range c.Prices.Overrides {
		f := fmt.Sprintf("prices.overrides[%d]", i)
		if o.Model == "" {
			add(f+".model", "must not be empty")
		}
		if o.Provider == "" {
			add(f+".provider", "must not be empty")
		}
		if err := checkUSD(o.Input); err != nil {
			add(f+".input_per_1m", "%v", err)
		}
		if err := checkUSD(o.Output); err != nil {
			add(f+".output_per_1m", "%v", err)
		}
	}
	ups := map[string]bool{}
	for i, u := range c.Upstreams {
		f := fmt.Sprintf("upstreams[%d]", i)
		if !nameRE.MatchString(u.Name) {
			add(f+".name", "%q must be 1-63 letters, digits, '.', '_' or '-'", u.Name)
		} else if ups[u.Name] {
			add(f+".name", "%q is declared twice", u.Name)
		}
		ups[u.Name] = true
		switch u.Type {
		case TypeOpenAI, TypeAzure, TypeMLflow:
			pu, err := url.Parse(u.BaseURL)
			if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
				add(f+".base_url", "must be an absolute http or https URL")
			} else if pu.RawQuery != "" || pu.User != nil {
				add(f+".base_url", "must not carry a query or credentials; use api_key")
			}
			if u.Type == TypeAzure && u.APIVersion == "" {
				add(f+".api_version", "is required for azure upstreams (e.g. 2024-10-21)")
			}
			if u.Simulator != nil {
				add(f+".simulator", "is only for type simulator")
			}
		case TypeSimulator:
			if u.BaseURL != "" {
				add(f+".base_url", "must be empty for the in-process simulator")
			}
			if s := u.Simulator; s != nil {
				if s.TokensPerSecond < 0 {
					add(f+".simulator.tokens_per_second", "must not be negative")
				}
				if s.OutputTokens < 0 || s.OutputTokens > 1<<20 {
					add(f+".simulator.output_tokens", "must be between 0 and 1048576")
				}
				if s.EmbeddingDims < 0 || s.EmbeddingDims > 1<<16 {
					add(f+".simulator.embedding_dims", "must be between 0 and 65536")
				}
			}
		case "":
			add(f+".type", "is required: openai, azure, mlflow or simulator")
		default:
			add(f+".type", "%q is not one of openai, azure, mlflow, simulator", u.Type)
		}
		if u.Type != TypeAzure && u.APIVersion != "" {
			add(f+".api_version", "is only for azure upstreams")
		}
		for h := range u.Headers {
			switch strings.ToLower(h) {
			case "host", "content-length", "transfer-encoding", "connection":
				add(f+".headers", "%q cannot be set", h)
			}
		}
		if u.Timeout < 0 {
			add(f+".timeout", "must not be negative")
		}
	}
	eps := map[string]bool{}
	for i, e := range c.Endpoints {
		f := fmt.Sprintf("endpoints[%d]", i)
		if !nameRE.MatchString(e.Name) {
			add(f+".name", "%q must be 1-63 letters, digits, '.', '_' or '-'", e.Name)
		} else if eps[e.Name] {
			add(f+".name", "%q is declared twice", e.Name)
		}
		eps[e.Name] = true
		if e.Upstream == "" {
			add(f+".upstream", "is required")
		} else if !ups[e.Upstream] {
			add(f+".upstream", "%q is not a declared upstream", e.Upstream)
		}
		for j, a := range e.APIs {
			switch a {
			case "chat", "completions", "embeddings", "invocations":
			default:
				add(fmt.Sprintf("%s.apis[%d]", f, j), "%q is not chat, completions, embeddings or invocations", a)
			}
		}
		if e.MaxOutputTokens < 0 || e.MaxOutputTokens > 10_000_000 {
			add(f+".max_output_tokens", "must be between 1 and 10000000")
		}
		if p := e.Price; p != nil {
			if err := checkUSD(p.Input); err != nil {
				add(f+".price.input_per_1m", "%v", err)
			}
			if err := checkUSD(p.Output); err != nil {
				add(f+".price.output_per_1m", "%v", err)
			}
		}
	}
	c.validateNetwork(add)
	c.validateLimits(add)
	c.validateBudgets(add)
	c.validateServing(add)
	return errs
}

// checkUSD accepts a non-negative decimal amount such as "0.15" or "12".
func checkUSD(s string) error {
	if s == "" {
		return fmt.Errorf("is required (USD, e.g. \"0.15\")")
	}
	for _, r := range s {
		if (r < '0' || r > '9') && r != '.' {
			return fmt.Errorf("%q is not a plain decimal USD amount", s)
		}
	}
	if _, err := strconv.ParseFloat(s, 64); err != nil || strings.Count(s, ".") > 1 {
		return fmt.Errorf("%q is not a plain decimal USD amount", s)
	}
	return nil
}
