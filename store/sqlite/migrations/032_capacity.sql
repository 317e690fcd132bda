-- Hourly capacity charges of provisioned served entities, owed whether the
-- capacity was used or not: one row per endpoint, served entity and hour,
-- written once. hour is the start of the UTC hour in microseconds since
-- the Unix epoch; money is micro-dollars.
CREATE TABLE capacity_charges (
	endpoint          TEXT    NOT NULL,
	served_entity     TEXT    NOT NULL,
	hour              INTEGER NOT NULL,
	cost_micros       INTEGER NOT NULL,
	tokens_per_second INTEGER NOT NULL,
	concurrency       INTEGER NOT NULL,
	PRIMARY KEY (endpoint, served_entity, hour)
) WITHOUT ROWID;

-- CapacityCharges selects a range of hours across every entity.
CREATE INDEX capacity_charges_hour ON capacity_charges (hour);
