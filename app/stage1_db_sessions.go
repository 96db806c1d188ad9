package app

import (
	"context"
	"log/slog"

	"flickrkillr/models"
)

// Stage 1: one long-running server. The process, the connection pool and the
// parsed templates outlive the request; sessions are still a row in
// PostgreSQL, read and rewritten on every request that carries one.
func init() {
	register(Stage{
		Number:  1,
		Name:    "db-sessions",
		Summary: "one long-running server with a connection pool; sessions still in PostgreSQL",
		Note:    "**Buys:** no process, connection and template parse per request. **Shows:** each step alone, on the aggregate; as the tags build it, on the server CPU per request and the routes with the least SQL (`thumb`, `upload-form`), since table scans bound the rest.",
		Serve:   serveLongRunning,
	})
}

// serveLongRunning opens the pool once (behind PostgreSQL's breaker:
// health.go), builds the App once and serves until ctx ends.
func serveLongRunning(ctx context.Context, cfg Config, log *slog.Logger) error {
	a, done, err := bootApp(ctx, cfg, log, models.Options{StatementTimeout: requestTimeout}, bootWatched)
	if err != nil {
		return err
	}
	defer done()
	defer a.startAdmin(ctx)() // the operator listener: dashboard, metrics, pprof
	return runServer(ctx, newServer(cfg.Addr, a, log), log, a.Stage(), cfg.DrainDelay)
}
