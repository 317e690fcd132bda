-- Text columns use the "C" collation: reports are ordered by byte value,
-- the same in every database whatever its locale, and the indexes are
-- cheaper to maintain.

CREATE TABLE keys (
	id         text COLLATE "C" PRIMARY KEY,
	hash       bytea       NOT NULL CHECK (length(hash) = 32),
	name       text        NOT NULL,
	team       text COLLATE "C" NOT NULL,
	admin      boolean     NOT NULL,
	endpoints  text[]      NOT NULL, -- empty means every endpoint
	expires_at timestamptz,          -- NULL means never
	created_at timestamptz NOT NULL,
	revoked_at timestamptz           -- NULL means active
);

CREATE INDEX keys_created ON keys (created_at, id);

-- One row per data-plane request. Money is micro-dollars, durations are
-- microseconds.
CREATE TABLE usage (
	request_id        text COLLATE "C" PRIMARY KEY CHECK (request_id <> ''),
	requested_at      timestamptz NOT NULL,
	key_id            text COLLATE "C" NOT NULL,
	team              text COLLATE "C" NOT NULL,
	end_user          text COLLATE "C" NOT NULL,
	endpoint          text COLLATE "C" NOT NULL,
	api               text        NOT NULL,
	upstream          text COLLATE "C" NOT NULL,
	upstream_model    text COLLATE "C" NOT NULL,
	prompt_tokens     bigint      NOT NULL,
	completion_tokens bigint      NOT NULL,
	total_tokens      bigint      NOT NULL,
	usage_source      text        NOT NULL,
	cost_micros       bigint      NOT NULL,
	price_version     text        NOT NULL,
	status            integer     NOT NULL,
	error_class       text        NOT NULL,
	latency_us        bigint      NOT NULL,
	ttft_us           bigint      NOT NULL,
	stream            boolean     NOT NULL,
	client_addr       text        NOT NULL
);

-- Reports select a time range, optionally narrowed to a team, endpoint or key.
CREATE INDEX usage_time     ON usage (requested_at);
CREATE INDEX usage_team     ON usage (team, requested_at);
CREATE INDEX usage_endpoint ON usage (endpoint, requested_at);
CREATE INDEX usage_key      ON usage (key_id, requested_at);
