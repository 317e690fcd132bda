-- Keys restricted to source networks, and their data-class floor.
ALTER TABLE keys
	ADD COLUMN source_cidrs text[] NOT NULL DEFAULT '{}', -- CIDR prefixes; empty means anywhere
	ADD COLUMN class_floor  text   NOT NULL DEFAULT '';   -- '' means the lowest class
