-- Databricks usage tracking on the ledger: what the client sent to track
-- the request by, the served entity (target) that answered, and the
-- upstream attempts it took. Existing records have none of them.
ALTER TABLE usage ADD COLUMN client_request_id TEXT    NOT NULL DEFAULT '';
ALTER TABLE usage ADD COLUMN usage_context     TEXT    NOT NULL DEFAULT ''; -- compact JSON object, '' when absent
ALTER TABLE usage ADD COLUMN served_entity     TEXT    NOT NULL DEFAULT ''; -- '' when the endpoint has no served entities
ALTER TABLE usage ADD COLUMN attempts          INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN attempt_log       TEXT    NOT NULL DEFAULT ''; -- "entity:status[:class]" joined by ';'

-- Capacity attribution (EntityUsage) reads a short time range by
-- requested_at and skips records without a served entity; usage_time
-- serves that, so no index is added to the insert path.
