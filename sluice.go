// Package sluice holds the domain types shared by every part of the gateway:
// API keys, usage records and the store contracts that keep them.
//
// A request travels accept → authenticate → route → proxy and meter → settle.
// The packages that do each step are listed in the README; the types they
// pass between them live here so that no implementation imports another.
package sluice

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// Sentinel errors returned by store implementations. Check with errors.Is.
var (
	// ErrNotFound means the requested object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means an object with the same identity already exists.
	ErrConflict = errors.New("already exists")
)

// API names the OpenAI-style operation a request performs.
type API string

const (
	APIChat        API = "chat"
	APICompletions API = "completions"
	APIEmbeddings  API = "embeddings"
	// APIInvocations is a custom model's own payload (MLflow
	// dataframe_split, dataframe_records, instances or inputs), passed
	// through to the model server, which answers {"predictions": ...}.
	APIInvocations API = "invocations"
)

// UsageSource says where a record's token counts came from.
type UsageSource string

const (
	// UsageUpstream means the upstream reported the counts.
	UsageUpstream UsageSource = "upstream"
	// UsageEstimated means Sluice counted the tokens with its tokenizer
	// because the upstream did not report them (or the stream was cut).
	UsageEstimated UsageSource = "estimated"
	// UsageNone means no tokens were consumed (the request was refused
	// before it reached an upstream).
	UsageNone UsageSource = "none"
)

// Error classes recorded on usage records. Empty means success.
const (
	ErrClassInvalidRequest   = "invalid_request"
	ErrClassAuthentication   = "authentication"
	ErrClassPermission       = "permission"
	ErrClassNotFound         = "not_found"
	ErrClassTooLarge         = "request_too_large"
	ErrClassUpstreamTimeout  = "upstream_timeout"
	ErrClassUpstreamError    = "upstream_error"
	ErrClassUpstreamStatus   = "upstream_status"
	ErrClassUpstreamReset    = "upstream_reset"
	ErrClassUpstreamRate     = "upstream_rate_limited"
	ErrClassClientDisconnect = "client_disconnect"
	ErrClassInternal         = "internal"
	ErrClassRateLimited      = "rate_limited"
	ErrClassBudgetExceeded   = "budget_exceeded"
	ErrClassDataPolicy       = "data_policy"
)

// UsageRecord is the ledger's row: exactly one per data-plane request.
// Money is integer micro-dollars (1 USD = 1,000,000).
type UsageRecord struct {
	RequestID        string    // unique; inserts are idempotent on it
	Time             time.Time // when the request arrived (UTC)
	KeyID            string    // empty when the caller was not authenticated
	Team             string    // the key's team
	User             string    // optional end user (OpenAI `user` field)
	Endpoint         string    // the Sluice endpoint named by `model`
	API              API       // chat, completions or embeddings
	Upstream         string    // configured upstream that served it
	UpstreamModel    string    // the model name the upstream reported
	PromptTokens     int64
	CompletionTokens int64
	TotalTokens      int64
	UsageSource      UsageSource
	CostMicros       int64  // cost in micro-dollars
	PriceVersion     string // price catalog version used for CostMicros
	Status           int    // HTTP status sent to the client
	ErrorClass       string // empty on success, else one of ErrClass*
	Latency          time.Duration
	TTFT             time.Duration // time to first byte sent to the client
	Stream           bool
	ClientAddr       string

	// Databricks usage-tracking fields, kept as the client sent them.
	ClientRequestID string // the body's client_request_id
	UsageContext    string // the body's usage_context object, as compact JSON
	// ServedEntity is the endpoint's served entity (target) that answered,
	// or the last one tried when none did.
	ServedEntity string
	// Attempts is how many upstream attempts the call made (0: refused
	// before any); above 1 means fallback happened.
	Attempts int
	// AttemptLog lists every attempt in order as
	// "entity:status[:class]" joined by ";", e.g.
	// "a:502:upstream_status;b:200". A target skipped because its
	// circuit breaker was open appears as "entity:open".
	AttemptLog string
}

// Key is an API key as stored: never the secret, only its SHA-256 digest.
type Key struct {
	ID        string   // public lookup part of the secret
	Hash      [32]byte // SHA-256 of the whole secret
	Name      string
	Team      string
	Admin     bool
	Endpoints []string  // empty means every endpoint
	ExpiresAt time.Time // zero means never
	// SourceCIDRs, when not empty, are the only networks the key may be
	// used from.
	SourceCIDRs []netip.Prefix
	// ClassFloor is the lowest data class of every request made with the
	// key (empty: the lowest class).
	ClassFloor string
	CreatedAt  time.Time
	RevokedAt  time.Time // zero means active
}

// Active reports whether k may be used at time now.
func (k *Key) Active(now time.Time) bool {
	if !k.RevokedAt.IsZero() {
		return false
	}
	return k.ExpiresAt.IsZero() || now.Before(k.ExpiresAt)
}

// MayUse reports whether k is allowed to call the named endpoint.
func (k *Key) MayUse(endpoint string) bool {
	if len(k.Endpoints) == 0 {
		return true
	}
	for _, e := range k.Endpoints {
		if e == endpoint {
			return true
		}
	}
	return false
}

// KeyStore keeps API keys.
type KeyStore interface {
	// CreateKey stores k. It returns ErrConflict if k.ID exists.
	CreateKey(ctx context.Context, k Key) error
	// Key returns the key with the given id, or ErrNotFound.
	Key(ctx context.Context, id string) (Key, error)
	// Keys lists every key, revoked ones included, oldest first.
	Keys(ctx context.Context) ([]Key, error)
	// RevokeKey marks the key revoked at t. It returns ErrNotFound for an
	// unknown id; revoking a revoked key keeps the first revocation time.
	RevokeKey(ctx context.Context, id string, t time.Time) error
}

// UsageGroup names a dimension usage can be grouped by.
type UsageGroup string

const (
	GroupTeam     UsageGroup = "team"
	GroupEndpoint UsageGroup = "endpoint"
	GroupKey      UsageGroup = "key"
	GroupUser     UsageGroup = "user"
	GroupModel    UsageGroup = "model" // the upstream-reported model
	GroupUpstream UsageGroup = "upstream"
	GroupDay      UsageGroup = "day" // UTC calendar day, YYYY-MM-DD
)

// UsageQuery selects and groups usage records. Zero From/To are open ends;
// the range is [From, To).
type UsageQuery struct {
	From, To time.Time
	GroupBy  []UsageGroup
}

// UsageRow is one group of a usage report. Keys holds one value per
// UsageQuery.GroupBy entry, in the same order.
type UsageRow struct {
	Keys             []string
	Requests         int64
	Errors           int64 // records with a non-empty ErrorClass
	PromptTokens     int64
	CompletionTokens int64
	TotalTokens      int64
	CostMicros       int64
}

// UsageStore keeps usage records.
type UsageStore interface {
	// InsertUsage writes the records in one transaction: all or none.
	// A record whose RequestID exists already is skipped, not an error.
	InsertUsage(ctx context.Context, recs []UsageRecord) error
	// Usage returns the record with the given request id, or ErrNotFound.
	Usage(ctx context.Context, requestID string) (UsageRecord, error)
	// UsageReport sums records by the query's groups, ordered by the group
	// keys. Sums equal the sums of the matching records exactly.
	UsageReport(ctx context.Context, q UsageQuery) ([]UsageRow, error)
}

// Store is everything the gateway keeps durably.
type Store interface {
	KeyStore
	UsageStore
	// Close releases the store's resources.
	Close() error
}
