-- The order row numbers its own events: the service holds the write lock
-- anyway, so the sequence is kept here and the outbox's counter row
-- (order_outbox_sequences) is no longer written for orders.

-- +goose Up

ALTER TABLE orders ADD COLUMN last_event_sequence INTEGER NOT NULL DEFAULT 0
    CHECK (last_event_sequence >= 0);

-- Orders written before were numbered by the outbox's counter: go on from it.
UPDATE orders SET last_event_sequence = coalesce((
    SELECT s.last_sequence FROM order_outbox_sequences s
    WHERE s.aggregate_type = 'order' AND s.aggregate_id = orders.id), 0);

-- +goose Down

-- Hand the numbering back to the outbox's counter.
INSERT INTO order_outbox_sequences (aggregate_type, aggregate_id, last_sequence)
SELECT 'order', id, last_event_sequence FROM orders WHERE last_event_sequence > 0
ON CONFLICT (aggregate_type, aggregate_id)
    DO UPDATE SET last_sequence = max(last_sequence, excluded.last_sequence);

ALTER TABLE orders DROP COLUMN last_event_sequence;
