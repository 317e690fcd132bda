-- Keys restricted to source networks, and their data-class floor.
ALTER TABLE keys ADD COLUMN source_cidrs TEXT NOT NULL DEFAULT '[]'; -- JSON array of CIDR prefixes; [] means anywhere
ALTER TABLE keys ADD COLUMN class_floor  TEXT NOT NULL DEFAULT '';   -- '' means the lowest class
