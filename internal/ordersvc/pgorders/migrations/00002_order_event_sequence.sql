-- The order row numbers its own events: the service takes the row lock
-- anyway, so the sequence is kept here and the outbox's counter row
-- (order_outbox_sequences, which the outbox's migrations create first) is no
-- longer written for orders.

-- +goose Up

-- In the order writers take them (the order row, then the counter row), so
-- that a writer still running the previous version neither deadlocks with
-- this migration nor bumps a counter after it was read.
LOCK TABLE orders, order_outbox_sequences IN ACCESS EXCLUSIVE MODE;

ALTER TABLE orders ADD COLUMN last_event_sequence bigint NOT NULL DEFAULT 0
    CHECK (last_event_sequence >= 0);

-- Orders written before were numbered by the outbox's counter: go on from it.
UPDATE orders o SET last_event_sequence = s.last_sequence
FROM order_outbox_sequences s
WHERE s.aggregate_type = 'order' AND s.aggregate_id = o.id::text;

-- A herald of the previous version still running during the upgrade would
-- number orders' events from the counter again and repeat numbers; with the
-- counter rows gone and this constraint its writes fail instead.
DELETE FROM order_outbox_sequences WHERE aggregate_type = 'order';
ALTER TABLE order_outbox_sequences ADD CONSTRAINT orders_number_their_own_events
    CHECK (aggregate_type <> 'order');

-- +goose Down

LOCK TABLE orders, order_outbox_sequences IN ACCESS EXCLUSIVE MODE;

-- Hand the numbering back to the outbox's counter.
ALTER TABLE order_outbox_sequences DROP CONSTRAINT orders_number_their_own_events;
INSERT INTO order_outbox_sequences (aggregate_type, aggregate_id, last_sequence)
SELECT 'order', o.id::text, o.last_event_sequence FROM orders o WHERE o.last_event_sequence > 0
ON CONFLICT (aggregate_type, aggregate_id)
    DO UPDATE SET last_sequence = greatest(order_outbox_sequences.last_sequence, excluded.last_sequence);

ALTER TABLE orders DROP COLUMN last_event_sequence;
