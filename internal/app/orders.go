package app

import (
	"database/sql"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/internal/ordersvc/pgorders"
	"github.com/heraldhq/herald/internal/ordersvc/sqliteorders"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

// wirePostgresOrders adds the orders service and its migrations on pool.
func wirePostgresOrders(db *Database, pool *pgxpool.Pool, driver *pgstore.Driver) error {
	store := pgorders.New(pool, outbox.NewClient[pgx.Tx](driver))
	db.Orders = ordersvc.New(store, ordersvc.Config{})
	db.ordersStore = store
	db.Audit = store
	db.sets = append(db.sets, migrationSet{name: "orders", m: store})
	return nil
}

// wireSQLiteOrders adds the orders service and its migrations on the
// outbox driver's *sql.DB, so that orders and events share transactions.
func wireSQLiteOrders(db *Database, driver *sqlitestore.Driver) error {
	store := sqliteorders.New(driver.DB(), outbox.NewClient[*sql.Tx](driver))
	db.Orders = ordersvc.New(store, ordersvc.Config{})
	db.ordersStore = store
	db.Audit = store
	db.sets = append(db.sets, migrationSet{name: "orders", m: store})
	// Closed before the driver, which owns the handle.
	db.closers = append(db.closers, store.Close)
	return nil
}
