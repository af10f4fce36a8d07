-- The tables of one outbox for the embedded SQLite driver; columns follow the
-- PostgreSQL driver, times are INTEGER unix microseconds, UTC.
--
-- This file is a template: the driver replaces {{outbox}}, {{dlq}} and
-- {{sequences}} with the names outbox.NamesOf derives from the outbox's name
-- (plain identifiers, so they need no quoting). Rendered for the orders
-- service's outbox it is, statement for statement, the file that created
-- that outbox before outboxes were named (testdata/legacy; see
-- TestLegacyTemplate and TestLegacySchema), so those databases migrate with
-- no change. Every statement is repeatable (IF NOT EXISTS).

-- +goose Up
CREATE TABLE IF NOT EXISTS {{outbox}} (
    -- pos is the rowid: the order events were written in, which is commit
    -- order because every write transaction holds the database's write lock
    -- from BEGIN. It breaks ties in the claim order.
    pos             INTEGER PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE CHECK (length(id) = 36),
    aggregate_type  TEXT    NOT NULL CHECK (aggregate_type <> '' AND length(aggregate_type) <= 255),
    aggregate_id    TEXT    NOT NULL CHECK (aggregate_id <> '' AND length(aggregate_id) <= 255),
    event_type      TEXT    NOT NULL CHECK (event_type <> '' AND length(event_type) <= 255),
    payload         TEXT    NOT NULL CHECK (json_valid(payload)),
    headers         TEXT    NOT NULL DEFAULT '{}' CHECK (json_type(headers) = 'object'),
    sequence        INTEGER NOT NULL CHECK (sequence > 0),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      TEXT,
    next_attempt_at INTEGER NOT NULL,
    first_failed_at INTEGER,
    created_at      INTEGER NOT NULL,
    idempotency_key TEXT    UNIQUE CHECK (idempotency_key <> '' AND length(idempotency_key) <= 255),
    -- head is 1 on the pending event with the lowest sequence of its
    -- aggregate, the only one a claim may take (SPEC G3). The writer sets it
    -- (a new event is the head when its aggregate has no pending event);
    -- the trigger below passes it on when the head leaves the outbox.
    head            INTEGER NOT NULL DEFAULT 0 CHECK (head IN (0, 1)),
    UNIQUE (aggregate_type, aggregate_id, sequence)
);

-- The claim reads due heads in this order and stops after its limit, so its
-- cost does not grow with the backlog behind the heads.
CREATE INDEX IF NOT EXISTS {{outbox}}_due_heads
    ON {{outbox}} (next_attempt_at, pos) WHERE head = 1;

-- +goose StatementBegin
CREATE TRIGGER IF NOT EXISTS {{outbox}}_next_head AFTER DELETE ON {{outbox}}
WHEN OLD.head = 1
BEGIN
    UPDATE {{outbox}} SET head = 1
    WHERE pos = (SELECT pos FROM {{outbox}}
                 WHERE aggregate_type = OLD.aggregate_type AND aggregate_id = OLD.aggregate_id
                 ORDER BY sequence LIMIT 1);
END;
-- +goose StatementEnd

CREATE TABLE IF NOT EXISTS {{sequences}} (
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    last_sequence  INTEGER NOT NULL CHECK (last_sequence > 0),
    PRIMARY KEY (aggregate_type, aggregate_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS {{dlq}} (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT    NOT NULL CHECK (length(event_id) = 36),
    aggregate_type  TEXT    NOT NULL,
    aggregate_id    TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    headers         TEXT    NOT NULL DEFAULT '{}',
    sequence        INTEGER NOT NULL CHECK (sequence > 0),
    idempotency_key TEXT,
    error_message   TEXT    NOT NULL DEFAULT '',
    retry_count     INTEGER NOT NULL CHECK (retry_count >= 0),
    created_at      INTEGER NOT NULL,
    first_failed_at INTEGER NOT NULL,
    moved_to_dlq_at INTEGER NOT NULL,
    reprocessed     INTEGER NOT NULL DEFAULT 0 CHECK (reprocessed IN (0, 1)),
    reprocessed_at  INTEGER,
    discarded_at    INTEGER,
    discard_reason  TEXT,
    CHECK (NOT (reprocessed = 1 AND discarded_at IS NOT NULL)),
    CHECK ((reprocessed = 1) = (reprocessed_at IS NOT NULL)),
    CHECK ((discarded_at IS NULL) = (discard_reason IS NULL))
);

-- Open dead letters by aggregate: the claim's parking check and the
-- operator's filters. An event is open in the DLQ at most once.
CREATE INDEX IF NOT EXISTS {{dlq}}_open
    ON {{dlq}} (aggregate_type, aggregate_id, sequence)
    WHERE reprocessed = 0 AND discarded_at IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS {{dlq}}_open_event
    ON {{dlq}} (event_id)
    WHERE reprocessed = 0 AND discarded_at IS NULL;

-- +goose Down
DROP TABLE IF EXISTS {{dlq}};
DROP TABLE IF EXISTS {{sequences}};
DROP TABLE IF EXISTS {{outbox}};
