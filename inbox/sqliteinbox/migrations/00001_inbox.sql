-- Herald inbox schema (SQLite): the template of one named inbox. The driver
-- fills in the placeholders (seen, aggregates and held in double braces) with
-- the inbox's tables NAME_seen, NAME_aggregates and NAME_held. Times are unix
-- microseconds, UTC. Goose records versions, not text: change the objects in
-- a new migration, not here.

-- +goose Up

-- The ids of the events taken through the inbox, pruned by age.
CREATE TABLE IF NOT EXISTS {{seen}} (
    event_id    TEXT    NOT NULL PRIMARY KEY CHECK (event_id <> '' AND length(CAST(event_id AS BLOB)) <= 255),
    received_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {{seen}}_received_idx ON {{seen}} (received_at);

-- The last sequence applied per aggregate. Rows are never deleted.
CREATE TABLE IF NOT EXISTS {{aggregates}} (
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    last_sequence  INTEGER NOT NULL CHECK (last_sequence >= 0),
    PRIMARY KEY (aggregate_type, aggregate_id)
) WITHOUT ROWID;

-- Events that arrived before a predecessor, waiting for it.
CREATE TABLE IF NOT EXISTS {{held}} (
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    sequence       INTEGER NOT NULL CHECK (sequence > 0),
    event_id       TEXT    NOT NULL,
    event          BLOB    NOT NULL, -- the CloudEvents JSON document
    held_at        INTEGER NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE {{held}};
DROP TABLE {{aggregates}};
DROP TABLE {{seen}};
