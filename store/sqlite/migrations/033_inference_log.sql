-- Inference tables: logged request/response pairs with the columns of
-- Databricks' inference tables. request_time is microseconds since the
-- Unix epoch (UTC). Payloads are large, so this is a rowid table and the
-- request id gets its own unique index.
CREATE TABLE inference_log (
	databricks_request_id TEXT    PRIMARY KEY CHECK (databricks_request_id <> ''),
	request_time          INTEGER NOT NULL,
	client_request_id     TEXT    NOT NULL,
	endpoint              TEXT    NOT NULL,
	served_entity         TEXT    NOT NULL,
	status_code           INTEGER NOT NULL,
	execution_duration_ms INTEGER NOT NULL,
	request               TEXT    NOT NULL,
	response              TEXT    NOT NULL,
	sampling_fraction     REAL    NOT NULL,
	requester             TEXT    NOT NULL
);

-- InferenceLog reads an endpoint's rows newest first, the request id
-- breaking ties, straight from this index without sorting.
CREATE INDEX inference_log_endpoint ON inference_log (endpoint, request_time, databricks_request_id);
