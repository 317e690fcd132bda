-- Serving endpoints created through the control plane. spec is the
-- endpoint's definition as JSON, kept byte for byte (bytea: jsonb would
-- reorder keys and text would refuse some bytes); version increases by
-- one on every update.
CREATE TABLE serving_endpoints (
	name       text COLLATE "C" PRIMARY KEY CHECK (name <> ''),
	id         text COLLATE "C" NOT NULL UNIQUE CHECK (id <> ''),
	creator    text        NOT NULL,
	spec       bytea       NOT NULL,
	version    bigint      NOT NULL CHECK (version > 0),
	created_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL
);
