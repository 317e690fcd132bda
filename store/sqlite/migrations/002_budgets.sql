-- Budgets and their two-phase bookkeeping. Money is micro-dollars, times
-- are microseconds since the Unix epoch (UTC).
CREATE TABLE budgets (
	id               TEXT    PRIMARY KEY,
	scope            TEXT    NOT NULL,
	subject          TEXT    NOT NULL,
	period           TEXT    NOT NULL,
	time_zone        TEXT    NOT NULL,
	limit_micros     INTEGER NOT NULL,
	hard             INTEGER NOT NULL,
	alert_thresholds TEXT    NOT NULL, -- JSON array of percentages
	created_at       INTEGER NOT NULL
);

CREATE INDEX budgets_subject ON budgets (scope, subject);

-- Spend of one period of one budget: settled is what usage records cost,
-- reserved what admitted requests still hold.
CREATE TABLE budget_periods (
	budget_id       TEXT    NOT NULL REFERENCES budgets (id) ON DELETE CASCADE,
	period_start    INTEGER NOT NULL,
	settled_micros  INTEGER NOT NULL,
	reserved_micros INTEGER NOT NULL,
	PRIMARY KEY (budget_id, period_start)
) WITHOUT ROWID;

-- A reservation lives until its usage record settles it, it is released,
-- or the reconciler releases it after it expires.
CREATE TABLE reservations (
	request_id    TEXT    PRIMARY KEY,
	owner         TEXT    NOT NULL,
	amount_micros INTEGER NOT NULL,
	created_at    INTEGER NOT NULL,
	expires_at    INTEGER NOT NULL
);

CREATE INDEX reservations_expiry ON reservations (expires_at);

-- What a reservation holds on each budget, in the period it was made in.
CREATE TABLE reservation_holds (
	request_id    TEXT    NOT NULL REFERENCES reservations (request_id) ON DELETE CASCADE,
	budget_id     TEXT    NOT NULL REFERENCES budgets (id) ON DELETE CASCADE,
	period_start  INTEGER NOT NULL,
	amount_micros INTEGER NOT NULL,
	PRIMARY KEY (request_id, budget_id)
) WITHOUT ROWID;

CREATE INDEX reservation_holds_budget ON reservation_holds (budget_id);

-- Alert thresholds reached, once per budget, period and threshold; an
-- outbox until delivered.
CREATE TABLE budget_alerts (
	budget_id      TEXT    NOT NULL REFERENCES budgets (id) ON DELETE CASCADE,
	period_start   INTEGER NOT NULL,
	threshold      INTEGER NOT NULL,
	limit_micros   INTEGER NOT NULL,
	settled_micros INTEGER NOT NULL,
	fired_at       INTEGER NOT NULL,
	lease_until    INTEGER,
	delivered_at   INTEGER,
	PRIMARY KEY (budget_id, period_start, threshold)
) WITHOUT ROWID;

CREATE INDEX budget_alerts_pending ON budget_alerts (fired_at) WHERE delivered_at IS NULL;
