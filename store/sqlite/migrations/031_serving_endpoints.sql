-- Serving endpoints created through the control plane. spec is the
-- endpoint's definition as JSON, kept byte for byte (a BLOB, which SQLite
-- never converts); version increases by one on every update. Times are
-- microseconds since the Unix epoch (UTC).
CREATE TABLE serving_endpoints (
	name       TEXT    PRIMARY KEY CHECK (name <> ''),
	id         TEXT    NOT NULL UNIQUE CHECK (id <> ''),
	creator    TEXT    NOT NULL,
	spec       BLOB    NOT NULL,
	version    INTEGER NOT NULL CHECK (version > 0),
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
);
