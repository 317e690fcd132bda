-- Databricks usage tracking on the ledger: what the client sent to track
-- the request by, the served entity (target) that answered, and the
-- upstream attempts it took. Existing records have none of them. (Columns
-- with a constant default are added without rewriting the table.)
ALTER TABLE usage
	ADD COLUMN client_request_id text    NOT NULL DEFAULT '',
	ADD COLUMN usage_context     text    NOT NULL DEFAULT '', -- compact JSON object, '' when absent
	ADD COLUMN served_entity     text COLLATE "C" NOT NULL DEFAULT '', -- '' when the endpoint has no served entities
	ADD COLUMN attempts          integer NOT NULL DEFAULT 0,
	ADD COLUMN attempt_log       text    NOT NULL DEFAULT ''; -- "entity:status[:class]" joined by ';'

-- Capacity attribution (EntityUsage) reads a short time range by
-- requested_at and skips records without a served entity; usage_time
-- serves that, so no index is added to the insert path.
