-- Inference tables: logged request/response pairs with the columns of
-- Databricks' inference tables.
CREATE TABLE inference_log (
	databricks_request_id text COLLATE "C" PRIMARY KEY CHECK (databricks_request_id <> ''),
	request_time          timestamptz NOT NULL,
	client_request_id     text        NOT NULL,
	endpoint              text COLLATE "C" NOT NULL,
	served_entity         text COLLATE "C" NOT NULL,
	status_code           integer     NOT NULL,
	execution_duration_ms bigint      NOT NULL,
	request               text        NOT NULL,
	response              text        NOT NULL,
	sampling_fraction     double precision NOT NULL,
	requester             text        NOT NULL
);

-- InferenceLog reads an endpoint's rows newest first, the request id
-- breaking ties, straight from this index without sorting.
CREATE INDEX inference_log_endpoint ON inference_log (endpoint, request_time, databricks_request_id);
