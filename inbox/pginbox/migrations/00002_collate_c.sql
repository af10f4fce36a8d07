-- The inbox's keys compare byte by byte (COLLATE "C"): event ids and aggregate
-- names are opaque, and a byte comparison is cheaper than the database's
-- locale in every index probe and sort of an admission. Changing a column's
-- collation keeps its rows and rebuilds its indexes.

-- +goose Up
ALTER TABLE {{seen}} ALTER COLUMN event_id TYPE text COLLATE "C";
ALTER TABLE {{aggregates}}
    ALTER COLUMN aggregate_type TYPE text COLLATE "C",
    ALTER COLUMN aggregate_id TYPE text COLLATE "C";
ALTER TABLE {{held}}
    ALTER COLUMN aggregate_type TYPE text COLLATE "C",
    ALTER COLUMN aggregate_id TYPE text COLLATE "C";

-- +goose Down
ALTER TABLE {{held}}
    ALTER COLUMN aggregate_type TYPE text COLLATE "default",
    ALTER COLUMN aggregate_id TYPE text COLLATE "default";
ALTER TABLE {{aggregates}}
    ALTER COLUMN aggregate_type TYPE text COLLATE "default",
    ALTER COLUMN aggregate_id TYPE text COLLATE "default";
ALTER TABLE {{seen}} ALTER COLUMN event_id TYPE text COLLATE "default";
