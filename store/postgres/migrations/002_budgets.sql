-- Budgets and their two-phase bookkeeping. Money is micro-dollars.
CREATE TABLE budgets (
	id               text COLLATE "C" PRIMARY KEY,
	scope            text COLLATE "C" NOT NULL,
	subject          text COLLATE "C" NOT NULL,
	period           text        NOT NULL,
	time_zone        text        NOT NULL,
	limit_micros     bigint      NOT NULL,
	hard             boolean     NOT NULL,
	alert_thresholds integer[]   NOT NULL,
	created_at       timestamptz NOT NULL
);

CREATE INDEX budgets_subject ON budgets (scope, subject);

-- Spend of one period of one budget: settled is what usage records cost,
-- reserved what admitted requests still hold. Reservations and settlement
-- change these rows in place, with conditional updates, so that replicas
-- share one count.
CREATE TABLE budget_periods (
	budget_id       text COLLATE "C" NOT NULL REFERENCES budgets (id) ON DELETE CASCADE,
	period_start    timestamptz NOT NULL,
	settled_micros  bigint      NOT NULL,
	reserved_micros bigint      NOT NULL,
	PRIMARY KEY (budget_id, period_start)
);

-- A reservation lives until its usage record settles it, it is released,
-- or the reconciler releases it after it expires.
CREATE TABLE reservations (
	request_id    text COLLATE "C" PRIMARY KEY,
	owner         text        NOT NULL,
	amount_micros bigint      NOT NULL,
	created_at    timestamptz NOT NULL,
	expires_at    timestamptz NOT NULL
);

CREATE INDEX reservations_expiry ON reservations (expires_at);

-- What a reservation holds on each budget, in the period it was made in.
-- Holds change only by going with their reservation (or their budget), so
-- whoever deletes the reservation row owns them.
CREATE TABLE reservation_holds (
	request_id    text COLLATE "C" NOT NULL REFERENCES reservations (request_id) ON DELETE CASCADE,
	budget_id     text COLLATE "C" NOT NULL REFERENCES budgets (id) ON DELETE CASCADE,
	period_start  timestamptz NOT NULL,
	amount_micros bigint      NOT NULL,
	PRIMARY KEY (request_id, budget_id)
);

CREATE INDEX reservation_holds_budget ON reservation_holds (budget_id);

-- Alert thresholds reached, once per budget, period and threshold; an
-- outbox until delivered.
CREATE TABLE budget_alerts (
	budget_id      text COLLATE "C" NOT NULL REFERENCES budgets (id) ON DELETE CASCADE,
	period_start   timestamptz NOT NULL,
	threshold      integer     NOT NULL,
	limit_micros   bigint      NOT NULL,
	settled_micros bigint      NOT NULL,
	fired_at       timestamptz NOT NULL,
	lease_until    timestamptz,
	delivered_at   timestamptz,
	PRIMARY KEY (budget_id, period_start, threshold)
);

CREATE INDEX budget_alerts_pending ON budget_alerts (fired_at) WHERE delivered_at IS NULL;
