package config

// Network holds the settings that keep traffic inside policy: who may
// connect, where upstream calls may go, how requests are classified, and
// the audit trail.
type Network struct{}

// UpstreamPolicy is an upstream's place in the network policy.
type UpstreamPolicy struct{}

// EndpointRouting is an endpoint's data-class routing.
type EndpointRouting struct{}

func (c *Config) networkDefaults() {}

func (c *Config) validateNetwork(add func(field, format string, a ...any)) {}
