-- Teams: keys name their team, and a key created for a team that does not
-- exist creates it. Existing teams are those keys already name.
CREATE TABLE teams (
	name        text COLLATE "C" PRIMARY KEY,
	description text        NOT NULL,
	class_floor text        NOT NULL, -- '' means the lowest class
	created_at  timestamptz NOT NULL
);

INSERT INTO teams (name, description, class_floor, created_at)
	SELECT team, '', '', min(created_at) FROM keys WHERE team <> '' GROUP BY team;

-- Deleting a team looks for its active keys.
CREATE INDEX keys_team ON keys (team);

-- Daily rollup of the ledger, which chargeback reports read for whole UTC
-- days instead of the raw rows. InsertUsage adds each newly inserted record
-- to its row in the same statement that inserts it. day is the UTC
-- calendar day.
CREATE TABLE usage_daily (
	day               date   NOT NULL,
	team              text COLLATE "C" NOT NULL,
	endpoint          text COLLATE "C" NOT NULL,
	key_id            text COLLATE "C" NOT NULL,
	end_user          text COLLATE "C" NOT NULL,
	upstream_model    text COLLATE "C" NOT NULL,
	upstream          text COLLATE "C" NOT NULL,
	requests          bigint NOT NULL,
	errors            bigint NOT NULL,
	prompt_tokens     bigint NOT NULL,
	completion_tokens bigint NOT NULL,
	total_tokens      bigint NOT NULL,
	cost_micros       bigint NOT NULL,
	PRIMARY KEY (day, team, endpoint, key_id, end_user, upstream_model, upstream)
) WITH (fillfactor = 70); -- room on each page, so that adding to a row is a HOT update that leaves the indexes alone

-- Reports and budget seeding now read whole days from the rollup and only
-- partial days from the ledger, by time (usage_time). The per-team,
-- per-endpoint and per-key indexes on the ledger cost three scattered
-- index writes per record and are no longer read.
DROP INDEX usage_team;
DROP INDEX usage_endpoint;
DROP INDEX usage_key;

-- Backfill from the ledger (the same statement as backfillDailySQL), in
-- key order, so that the rows of a day are stored together.
INSERT INTO usage_daily
	SELECT (requested_at AT TIME ZONE 'UTC')::date,
		team, endpoint, key_id, end_user, upstream_model, upstream,
		count(*), count(*) FILTER (WHERE error_class <> ''), sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(cost_micros)
	FROM usage GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7;

-- Budget seeding sums a team's, key's or endpoint's whole days from the
-- rollup. These indexes change only when a rollup row is added, not when
-- one is updated (a HOT update, see the fillfactor), so they cost little
-- on insert. (Created after the
-- backfill, which is faster.)
CREATE INDEX usage_daily_team     ON usage_daily (team, day);
CREATE INDEX usage_daily_endpoint ON usage_daily (endpoint, day);
CREATE INDEX usage_daily_key      ON usage_daily (key_id, day);
