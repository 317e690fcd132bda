-- Hourly capacity charges of provisioned served entities, owed whether the
-- capacity was used or not: one row per endpoint, served entity and hour,
-- written once. hour is the start of a UTC hour; money is micro-dollars.
CREATE TABLE capacity_charges (
	endpoint          text COLLATE "C" NOT NULL,
	served_entity     text COLLATE "C" NOT NULL,
	hour              timestamptz NOT NULL,
	cost_micros       bigint      NOT NULL,
	tokens_per_second bigint      NOT NULL,
	concurrency       bigint      NOT NULL,
	PRIMARY KEY (endpoint, served_entity, hour)
);

-- CapacityCharges selects a range of hours across every entity.
CREATE INDEX capacity_charges_hour ON capacity_charges (hour);
