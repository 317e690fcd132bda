-- Audit trail: hash-chained records (package audit). seq is the chain
-- position and the rowid; rows are only ever appended. Times are
-- microseconds since the Unix epoch (UTC); lists are JSON arrays.
CREATE TABLE audit (
	seq           INTEGER PRIMARY KEY CHECK (seq > 0),
	at            INTEGER NOT NULL,
	kind          TEXT    NOT NULL,
	request_id    TEXT    NOT NULL,
	key_id        TEXT    NOT NULL,
	team          TEXT    NOT NULL,
	endpoint      TEXT    NOT NULL,
	class         TEXT    NOT NULL,
	class_reasons TEXT    NOT NULL,
	candidates    TEXT    NOT NULL,
	upstream      TEXT    NOT NULL,
	egress_class  TEXT    NOT NULL,
	dialed_addr   TEXT    NOT NULL,
	client_addr   TEXT    NOT NULL,
	decision      TEXT    NOT NULL,
	reason        TEXT    NOT NULL,
	prev_hash     BLOB    NOT NULL CHECK (length(prev_hash) = 32),
	hash          BLOB    NOT NULL CHECK (length(hash) = 32)
);

-- `sluice audit --from --to` selects a time range.
CREATE INDEX audit_time ON audit (at);
