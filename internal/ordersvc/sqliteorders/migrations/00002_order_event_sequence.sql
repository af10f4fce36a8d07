-- The order row numbers its own events: the service holds the write lock
-- anyway, so the sequence is kept here and the outbox's counter row
-- (order_outbox_sequences, which the outbox's migrations create first) is no
-- longer written for orders.

-- +goose Up

ALTER TABLE orders ADD COLUMN last_event_sequence INTEGER NOT NULL DEFAULT 0
    CHECK (last_event_sequence >= 0);

-- Orders written before were numbered by the outbox's counter: go on from it.
UPDATE orders SET last_event_sequence = coalesce((
    SELECT s.last_sequence FROM order_outbox_sequences s
    WHERE s.aggregate_type = 'order' AND s.aggregate_id = orders.id), 0);

-- A herald of the previous version still writing to this database would
-- number orders' events from the counter again and repeat numbers; with the
-- counter rows gone and this trigger its writes fail instead.
DELETE FROM order_outbox_sequences WHERE aggregate_type = 'order';

-- +goose StatementBegin
CREATE TRIGGER orders_number_their_own_events BEFORE INSERT ON order_outbox_sequences
WHEN NEW.aggregate_type = 'order'
BEGIN
    SELECT RAISE(ABORT, 'orders number their own events since orders migration 00002: a herald of an earlier version is writing');
END;
-- +goose StatementEnd

-- +goose Down

-- Hand the numbering back to the outbox's counter.
DROP TRIGGER orders_number_their_own_events;
INSERT INTO order_outbox_sequences (aggregate_type, aggregate_id, last_sequence)
SELECT 'order', id, last_event_sequence FROM orders WHERE last_event_sequence > 0
ON CONFLICT (aggregate_type, aggregate_id)
    DO UPDATE SET last_sequence = max(last_sequence, excluded.last_sequence);

ALTER TABLE orders DROP COLUMN last_event_sequence;
