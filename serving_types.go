package sluice

import (
	"context"
	"time"
)

// Serving endpoints created through the control plane
// (/api/2.0/serving-endpoints) are kept in the store so that every replica
// serves them and they survive a restart. The store keeps the definition as
// opaque JSON (package serving owns its shape) with a version for
// optimistic concurrency.

// ServingEndpointRecord is one stored serving endpoint.
type ServingEndpointRecord struct {
	Name    string // unique; letters, digits, '-' and '_', 1-63 characters
	ID      string // stable id, distinct from the name (permissions use it)
	Creator string // key id of the creator
	// Spec is the endpoint's definition as JSON (config, ai_gateway, tags,
	// description, permissions, pending config and state).
	Spec []byte
	// Version increases by one on every update.
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// ServingStore keeps serving endpoints.
type ServingStore interface {
	// CreateServingEndpoint stores e with Version 1. It returns
	// ErrConflict if the name exists.
	CreateServingEndpoint(ctx context.Context, e ServingEndpointRecord) error
	// ServingEndpoint returns the named endpoint, or ErrNotFound.
	ServingEndpoint(ctx context.Context, name string) (ServingEndpointRecord, error)
	// ServingEndpoints lists every endpoint ordered by name.
	ServingEndpoints(ctx context.Context) ([]ServingEndpointRecord, error)
	// UpdateServingEndpoint replaces the spec of e.Name if its stored
	// version is still e.Version, and stores it as e.Version+1 with
	// UpdatedAt = e.UpdatedAt. It returns ErrNotFound for an unknown name
	// and ErrConflict if the version moved on (a concurrent update).
	UpdateServingEndpoint(ctx context.Context, e ServingEndpointRecord) error
	// DeleteServingEndpoint removes the named endpoint, or returns
	// ErrNotFound.
	DeleteServingEndpoint(ctx context.Context, name string) error
}

// CapacityCharge is one hour of a provisioned served entity's capacity,
// owed whether it was used or not.
type CapacityCharge struct {
	Endpoint     string
	ServedEntity string
	Hour         time.Time // UTC, truncated to the hour
	CostMicros   int64
	// The capacity the hour paid for (one of them may be 0).
	TokensPerSecond int64
	Concurrency     int64
}

// EntityHourUsage is what one team used of one served entity in one hour.
type EntityHourUsage struct {
	Endpoint     string
	ServedEntity string
	Hour         time.Time // UTC, truncated to the hour
	Team         string
	Requests     int64
	Tokens       int64 // total tokens
	BusyMillis   int64 // sum of the requests' latencies
}

// CapacityStore keeps hourly capacity charges and reads the usage they
// are attributed by.
type CapacityStore interface {
	// AccrueCapacity inserts the charges; a charge for an (endpoint,
	// served entity, hour) already stored is skipped, so accrual is
	// idempotent across restarts and replicas.
	AccrueCapacity(ctx context.Context, charges []CapacityCharge) error
	// CapacityCharges returns the charges with Hour in [from, to), ordered
	// by endpoint, served entity, hour.
	CapacityCharges(ctx context.Context, from, to time.Time) ([]CapacityCharge, error)
	// EntityUsage sums usage records with a non-empty ServedEntity and
	// Time in [from, to) by endpoint, served entity, hour and team,
	// ordered by those.
	EntityUsage(ctx context.Context, from, to time.Time) ([]EntityHourUsage, error)
}

// InferenceLogRecord is one logged request/response pair, with the
// columns of Databricks' inference tables.
type InferenceLogRecord struct {
	RequestTime         time.Time
	RequestID           string // databricks_request_id: Sluice's request id
	ClientRequestID     string
	Endpoint            string
	ServedEntity        string
	StatusCode          int
	ExecutionDurationMs int64
	// Request and Response are the payloads (masked where sensitive
	// values were detected); empty when over the size cap.
	Request          string
	Response         string
	SamplingFraction float64
	Requester        string // the key id (and end user, if any)
}

// InferenceLogStore keeps inference-table rows.
type InferenceLogStore interface {
	// InsertInferenceLog writes the rows in one transaction; a row whose
	// RequestID exists already is skipped.
	InsertInferenceLog(ctx context.Context, rows []InferenceLogRecord) error
	// InferenceLog returns up to limit rows of an endpoint with
	// RequestTime in [from, to) (zero: open), newest first.
	InferenceLog(ctx context.Context, endpoint string, from, to time.Time, limit int) ([]InferenceLogRecord, error)
}
