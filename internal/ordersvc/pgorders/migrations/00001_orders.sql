-- Herald orders schema (PostgreSQL). Table names are part of Herald's contract. The
-- outbox tables are the outbox driver's (pgstore), with their own migrations.
-- Amounts are bigint minor units; times are microseconds (timestamptz).
-- The status lists mirror the machines in order/machine.go; the store tests
-- check every status of every machine against them.

-- +goose Up

CREATE TABLE orders (
    id           uuid        PRIMARY KEY,
    customer_id  text        NOT NULL CHECK (customer_id <> '' AND char_length(customer_id) <= 128),
    currency     text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status       text        NOT NULL CHECK (status IN
                     ('pending', 'payment_confirmed', 'processing', 'completed', 'cancelled')),
    -- At most 100 items × 10^4 × 10^12 = 10^18 minor units.
    total_amount bigint      NOT NULL CHECK (total_amount BETWEEN 0 AND 1000000000000000000),
    version      bigint      NOT NULL CHECK (version >= 1),
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

-- ListOrders: newest first, optionally by status or customer, keyset-paginated
-- on (created_at, id).
CREATE INDEX orders_created_at_idx ON orders (created_at DESC, id DESC);
CREATE INDEX orders_status_created_at_idx ON orders (status, created_at DESC, id DESC);
CREATE INDEX orders_customer_created_at_idx ON orders (customer_id, created_at DESC, id DESC);

CREATE TABLE order_line_items (
    id           uuid     PRIMARY KEY,
    order_id     uuid     NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    -- Position in the order as it was created: line items are listed in it.
    line_no      smallint NOT NULL CHECK (line_no BETWEEN 0 AND 99),
    product_id   text     NOT NULL CHECK (product_id <> '' AND char_length(product_id) <= 128),
    product_type text     NOT NULL CHECK (product_type IN ('physical', 'digital', 'service')),
    quantity     bigint   NOT NULL CHECK (quantity BETWEEN 1 AND 10000),
    unit_price   bigint   NOT NULL CHECK (unit_price BETWEEN 0 AND 1000000000000),
    status       text     NOT NULL,
    CONSTRAINT order_line_items_status_check CHECK (
        (product_type = 'physical' AND status IN ('pending', 'payment_confirmed', 'preparing',
            'ready_to_ship', 'shipped', 'delivered', 'cancelled'))
     OR (product_type = 'digital' AND status IN ('pending', 'payment_confirmed', 'access_granted',
            'downloaded', 'cancelled', 'refund_requested', 'refunded'))
     OR (product_type = 'service' AND status IN ('pending', 'payment_confirmed', 'booking_confirmed',
            'reminder_sent', 'in_progress', 'completed', 'cancelled', 'no_show'))),
    -- Also the index that loads an order's line items in order.
    CONSTRAINT order_line_items_order_line_key UNIQUE (order_id, line_no)
);

-- The audit trail: one row per status change, each linked to the event it
-- emitted. The first row of an order records its creation (from NULL to
-- pending, linked to order.created).
CREATE TABLE order_status_transitions (
    id           bigint      PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
    order_id     uuid        NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_item_id uuid        REFERENCES order_line_items (id) ON DELETE CASCADE,
    from_status  text,
    to_status    text        NOT NULL,
    reason       text        NOT NULL DEFAULT '' CHECK (char_length(reason) <= 500),
    actor        text        NOT NULL CHECK (actor <> '' AND char_length(actor) <= 128),
    automatic    boolean     NOT NULL DEFAULT false,
    event_id     uuid        NOT NULL,
    created_at   timestamptz NOT NULL,
    CONSTRAINT order_status_transitions_event_key UNIQUE (event_id),
    CONSTRAINT order_status_transitions_change_check CHECK (from_status IS DISTINCT FROM to_status),
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
);

-- ListTransitions: one order's rows in the order they were written.
CREATE INDEX order_status_transitions_order_idx ON order_status_transitions (order_id, id);

-- Idempotency keys of CreateOrder and ConfirmPayment, written in the
-- transaction of the change they made. The key is claimed first (the primary
-- key makes a concurrent request with the same key wait for this one) and the
-- response is filled in before commit.
CREATE TABLE order_idempotency_keys (
    key          text        PRIMARY KEY CHECK (key <> '' AND octet_length(key) <= 255),
    operation    text        NOT NULL CHECK (operation IN ('create_order', 'confirm_payment')),
    request_hash bytea       NOT NULL CHECK (octet_length(request_hash) = 32),
    -- Deferred: a creation claims its key before it inserts the order.
    order_id     uuid        NOT NULL REFERENCES orders (id) ON DELETE CASCADE
                             DEFERRABLE INITIALLY DEFERRED,
    -- NULL only inside the claiming transaction.
    response     jsonb,
    created_at   timestamptz NOT NULL
);

-- +goose Down
DROP TABLE order_idempotency_keys;
DROP TABLE order_status_transitions;
DROP TABLE order_line_items;
DROP TABLE orders;
