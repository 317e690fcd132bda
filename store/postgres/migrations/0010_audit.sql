-- Audit trail: hash-chained records (package audit). seq is the chain
-- position; rows are only ever appended.
CREATE TABLE audit (
	seq           bigint PRIMARY KEY CHECK (seq > 0),
	at            timestamptz NOT NULL,
	kind          text COLLATE "C" NOT NULL,
	request_id    text COLLATE "C" NOT NULL,
	key_id        text COLLATE "C" NOT NULL,
	team          text COLLATE "C" NOT NULL,
	endpoint      text COLLATE "C" NOT NULL,
	class         text COLLATE "C" NOT NULL,
	class_reasons text[]      NOT NULL,
	candidates    text[]      NOT NULL,
	upstream      text COLLATE "C" NOT NULL,
	egress_class  text        NOT NULL,
	dialed_addr   text        NOT NULL,
	client_addr   text        NOT NULL,
	decision      text        NOT NULL,
	reason        text        NOT NULL,
	prev_hash     bytea       NOT NULL CHECK (length(prev_hash) = 32),
	hash          bytea       NOT NULL CHECK (length(hash) = 32)
);

-- `sluice audit --from --to` selects a time range.
CREATE INDEX audit_time ON audit (at);
