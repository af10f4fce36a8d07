package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/heraldhq/herald/httpapi"
)

// newHandler builds the HTTP API on a's database, broker and relay.
func newHandler(a *App) (http.Handler, error) {
	if a.DB.Orders == nil {
		return nil, errors.New("no orders service on this database")
	}
	return httpapi.New(httpapi.Config{
		Orders:        a.DB.Orders,
		Outbox:        a.DB.Store,
		RelayCounters: a.Relay.Counters,
		Ready:         a.ready,
		APIToken:      a.cfg.APIToken,
		AdminToken:    a.cfg.AdminToken,
		Logger:        a.cfg.Logger.With("component", "http"),
		Version:       a.cfg.Version,
	}), nil
}

// ready reports whether the database and the broker answer (GET /readyz).
func (a *App) ready(ctx context.Context) error {
	if err := a.DB.Ping(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if err := a.Broker.Ping(ctx); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	return nil
}
