-- Herald inbox schema (PostgreSQL): the template of one named inbox. The
-- driver fills in the placeholders (seen, aggregates, held and admit in double
-- braces) with the inbox's objects: NAME_seen, NAME_aggregates, NAME_held and
-- the function NAME_admit. Goose records versions, not text: change the
-- objects in a new migration, not here.

-- +goose Up

-- The ids of the events taken through the inbox. Pruned by age; a BRIN index
-- finds the old rows and costs next to nothing to keep, as rows arrive in
-- time order.
CREATE TABLE {{seen}} (
    event_id    text        PRIMARY KEY CHECK (event_id <> '' AND octet_length(event_id) <= 255),
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX {{seen}}_received_idx ON {{seen}} USING brin (received_at);

-- The last sequence applied per aggregate. Its row lock admits the events of
-- one aggregate one at a time. Rows are never deleted: the sequence must
-- outlive the id records.
CREATE TABLE {{aggregates}} (
    aggregate_type text   NOT NULL CHECK (aggregate_type <> '' AND octet_length(aggregate_type) <= 255),
    aggregate_id   text   NOT NULL CHECK (aggregate_id <> '' AND octet_length(aggregate_id) <= 255),
    last_sequence  bigint NOT NULL CHECK (last_sequence >= 0),
    PRIMARY KEY (aggregate_type, aggregate_id)
) WITH (fillfactor = 70); -- room for HOT updates: advancing a sequence touches no index

-- Events that arrived before a predecessor, waiting for it.
CREATE TABLE {{held}} (
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    sequence       bigint      NOT NULL CHECK (sequence > 0),
    event_id       text        NOT NULL,
    event          bytea       NOT NULL, -- the CloudEvents JSON document
    held_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- The admission of one event in one round trip: record its id, lock its
-- aggregate, and for the aggregate's next event advance its last sequence.
-- verdict: 1 next, 2 duplicate, 3 early (to be held), 4 stale.
-- +goose StatementBegin
CREATE FUNCTION {{admit}}(p_event_id text, p_type text, p_id text, p_sequence bigint,
    OUT verdict smallint, OUT last_applied bigint, OUT successor boolean)
LANGUAGE plpgsql AS $$
BEGIN
    successor := false;
    last_applied := 0;
    INSERT INTO {{seen}} AS s (event_id) VALUES (p_event_id) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        verdict := 2;
        RETURN;
    END IF;
    -- The common case first: the aggregate's next event. The UPDATE locks the
    -- row (waiting for a concurrent admission, then looking again).
    UPDATE {{aggregates}} AS a SET last_sequence = p_sequence
        WHERE a.aggregate_type = p_type AND a.aggregate_id = p_id AND a.last_sequence = p_sequence - 1;
    IF FOUND THEN
        verdict := 1;
        last_applied := p_sequence - 1;
        successor := EXISTS (SELECT 1 FROM {{held}} AS h
            WHERE h.aggregate_type = p_type AND h.aggregate_id = p_id AND h.sequence = p_sequence + 1);
        RETURN;
    END IF;
    SELECT a.last_sequence INTO last_applied FROM {{aggregates}} AS a
        WHERE a.aggregate_type = p_type AND a.aggregate_id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        -- A new aggregate. Its first event creates the row applied; another
        -- creates it empty. A concurrent creator makes this wait, then do nothing.
        INSERT INTO {{aggregates}} AS a (aggregate_type, aggregate_id, last_sequence)
            VALUES (p_type, p_id, CASE WHEN p_sequence = 1 THEN 1 ELSE 0 END)
            ON CONFLICT DO NOTHING;
        IF FOUND THEN
            last_applied := 0;
            -- No event of it can be held yet: holding one creates the row.
            verdict := CASE WHEN p_sequence = 1 THEN 1 ELSE 3 END;
            RETURN;
        END IF;
        SELECT a.last_sequence INTO last_applied FROM {{aggregates}} AS a
            WHERE a.aggregate_type = p_type AND a.aggregate_id = p_id FOR UPDATE;
    END IF;
    IF p_sequence <= last_applied THEN
        verdict := 4;
    ELSIF p_sequence > last_applied + 1 THEN
        verdict := 3;
    ELSE
        UPDATE {{aggregates}} AS a SET last_sequence = p_sequence
            WHERE a.aggregate_type = p_type AND a.aggregate_id = p_id;
        verdict := 1;
        successor := EXISTS (SELECT 1 FROM {{held}} AS h
            WHERE h.aggregate_type = p_type AND h.aggregate_id = p_id AND h.sequence = p_sequence + 1);
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION {{admit}}(text, text, text, bigint);
DROP TABLE {{held}};
DROP TABLE {{aggregates}};
DROP TABLE {{seen}};
