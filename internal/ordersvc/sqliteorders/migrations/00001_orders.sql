-- Herald orders schema (SQLite). Table names are part of Herald's contract and
-- columns follow the PostgreSQL store; the outbox tables are the outbox
-- driver's (sqlitestore), with their own migrations. Ids are UUID text,
-- amounts INTEGER minor units, times INTEGER unix microseconds (UTC).
-- The status lists mirror the machines in order/machine.go; the store tests
-- check every status of every machine against them.

-- +goose Up

CREATE TABLE orders (
    id           TEXT    PRIMARY KEY CHECK (length(id) = 36),
    customer_id  TEXT    NOT NULL CHECK (customer_id <> '' AND length(customer_id) <= 128),
    currency     TEXT    NOT NULL CHECK (currency GLOB '[A-Z][A-Z][A-Z]'),
    status       TEXT    NOT NULL CHECK (status IN
                     ('pending', 'payment_confirmed', 'processing', 'completed', 'cancelled')),
    -- At most 100 items × 10^4 × 10^12 = 10^18 minor units.
    total_amount INTEGER NOT NULL CHECK (total_amount BETWEEN 0 AND 1000000000000000000),
    version      INTEGER NOT NULL CHECK (version >= 1),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;

-- ListOrders: newest first, optionally by status or customer, keyset-paginated
-- on (created_at, id).
CREATE INDEX orders_created_at_idx ON orders (created_at DESC, id DESC);
CREATE INDEX orders_status_created_at_idx ON orders (status, created_at DESC, id DESC);
CREATE INDEX orders_customer_created_at_idx ON orders (customer_id, created_at DESC, id DESC);

CREATE TABLE order_line_items (
    id           TEXT    PRIMARY KEY CHECK (length(id) = 36),
    order_id     TEXT    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    -- Position in the order as it was created: line items are listed in it.
    line_no      INTEGER NOT NULL CHECK (line_no BETWEEN 0 AND 99),
    product_id   TEXT    NOT NULL CHECK (product_id <> '' AND length(product_id) <= 128),
    product_type TEXT    NOT NULL CHECK (product_type IN ('physical', 'digital', 'service')),
    quantity     INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 10000),
    unit_price   INTEGER NOT NULL CHECK (unit_price BETWEEN 0 AND 1000000000000),
    status       TEXT    NOT NULL,
    CONSTRAINT order_line_items_status_check CHECK (
        (product_type = 'physical' AND status IN ('pending', 'payment_confirmed', 'preparing',
            'ready_to_ship', 'shipped', 'delivered', 'cancelled'))
     OR (product_type = 'digital' AND status IN ('pending', 'payment_confirmed', 'access_granted',
            'downloaded', 'cancelled', 'refund_requested', 'refunded'))
     OR (product_type = 'service' AND status IN ('pending', 'payment_confirmed', 'booking_confirmed',
            'reminder_sent', 'in_progress', 'completed', 'cancelled', 'no_show'))),
    -- Also the index that loads an order's line items in order.
    CONSTRAINT order_line_items_order_line_key UNIQUE (order_id, line_no)
) STRICT;

-- The audit trail: one row per status change, each linked to the event it
-- emitted. The first row of an order records its creation (from NULL to
-- pending, linked to order.created).
CREATE TABLE order_status_transitions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id     TEXT    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_item_id TEXT    REFERENCES order_line_items (id) ON DELETE CASCADE,
    from_status  TEXT,
    to_status    TEXT    NOT NULL,
    reason       TEXT    NOT NULL DEFAULT '' CHECK (length(reason) <= 500),
    actor        TEXT    NOT NULL CHECK (actor <> '' AND length(actor) <= 128),
    automatic    INTEGER NOT NULL DEFAULT 0 CHECK (automatic IN (0, 1)),
    event_id     TEXT    NOT NULL UNIQUE CHECK (length(event_id) = 36),
    created_at   INTEGER NOT NULL,
    CONSTRAINT order_status_transitions_change_check CHECK (from_status IS NOT to_status),
    CONSTRAINT order_status_transitions_status_check CHECK (
        (line_item_id IS NULL
            AND to_status IN ('pending', 'payment_confirmed', 'processing', 'completed', 'cancelled')
            AND (from_status IS NULL
                 OR from_status IN ('pending', 'payment_confirmed', 'processing', 'completed', 'cancelled')))
     OR (line_item_id IS NOT NULL
            AND to_status IN ('payment_confirmed', 'preparing', 'ready_to_ship', 'shipped', 'delivered',
                'cancelled', 'access_granted', 'downloaded', 'refund_requested', 'refunded',
                'booking_confirmed', 'reminder_sent', 'in_progress', 'completed', 'no_show')
            AND from_status IS NOT NULL
            AND from_status IN ('pending', 'payment_confirmed', 'preparing', 'ready_to_ship', 'shipped',
                'access_granted', 'refund_requested', 'booking_confirmed', 'reminder_sent', 'in_progress')))
) STRICT;

-- ListTransitions: one order's rows in the order they were written.
CREATE INDEX order_status_transitions_order_idx ON order_status_transitions (order_id, id);

-- Idempotency keys of CreateOrder and ConfirmPayment, written in the
-- transaction of the change they made: the key is claimed first and the
-- response filled in before commit.
CREATE TABLE order_idempotency_keys (
    key          TEXT    PRIMARY KEY CHECK (key <> '' AND length(CAST(key AS BLOB)) <= 255),
    operation    TEXT    NOT NULL CHECK (operation IN ('create_order', 'confirm_payment')),
    request_hash BLOB    NOT NULL CHECK (length(request_hash) = 32),
    -- Deferred: a creation claims its key before it inserts the order.
    order_id     TEXT    NOT NULL REFERENCES orders (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    -- NULL only inside the claiming transaction.
    response     TEXT    CHECK (response IS NULL OR json_valid(response)),
    created_at   INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE order_idempotency_keys;
DROP TABLE order_status_transitions;
DROP TABLE order_line_items;
DROP TABLE orders;
