-- Keys: never the secret, only its SHA-256 digest. Times are microseconds
-- since the Unix epoch (UTC); NULL means "never" / "not revoked".
CREATE TABLE keys (
	id         TEXT    PRIMARY KEY,
	hash       BLOB    NOT NULL CHECK (length(hash) = 32),
	name       TEXT    NOT NULL,
	team       TEXT    NOT NULL,
	admin      INTEGER NOT NULL,
	endpoints  TEXT    NOT NULL, -- JSON array of endpoint names; [] means all
	expires_at INTEGER,
	created_at INTEGER NOT NULL,
	revoked_at INTEGER
);

CREATE INDEX keys_created ON keys (created_at, id);

-- Usage: one row per data-plane request. Money is micro-dollars, durations
-- and times are microseconds (times since the Unix epoch, UTC). A rowid
-- table, so rows are appended in arrival order; request_id gets its own
-- unique index.
CREATE TABLE usage (
	request_id        TEXT    NOT NULL PRIMARY KEY CHECK (request_id <> ''),
	requested_at      INTEGER NOT NULL,
	key_id            TEXT    NOT NULL,
	team              TEXT    NOT NULL,
	end_user          TEXT    NOT NULL,
	endpoint          TEXT    NOT NULL,
	api               TEXT    NOT NULL,
	upstream          TEXT    NOT NULL,
	upstream_model    TEXT    NOT NULL,
	prompt_tokens     INTEGER NOT NULL,
	completion_tokens INTEGER NOT NULL,
	total_tokens      INTEGER NOT NULL,
	usage_source      TEXT    NOT NULL,
	cost_micros       INTEGER NOT NULL,
	price_version     TEXT    NOT NULL,
	status            INTEGER NOT NULL,
	error_class       TEXT    NOT NULL,
	latency_us        INTEGER NOT NULL,
	ttft_us           INTEGER NOT NULL,
	stream            INTEGER NOT NULL,
	client_addr       TEXT    NOT NULL
);

-- Reports select a time range, optionally narrowed to a team, endpoint or key.
CREATE INDEX usage_time     ON usage (requested_at);
CREATE INDEX usage_team     ON usage (team, requested_at);
CREATE INDEX usage_endpoint ON usage (endpoint, requested_at);
CREATE INDEX usage_key      ON usage (key_id, requested_at);
