package app

import (
	"context"
	"log/slog"

	"flickrkillr/models"
)

// Bootstrap opens what a process of the app is built from, the one way
// serve, worker and the instances of stage 7 start: the database pool
// (opts), checked to be at the schema cfg's stage needs, and the Deps
// around it. done closes the Deps, then the pool.
func Bootstrap(ctx context.Context, cfg Config, log *slog.Logger, opts models.Options) (d *Deps, done func(), err error) {
	d, done, err = openDeps(ctx, cfg, log, opts)
	if err != nil {
		return nil, nil, err
	}
	if err := CheckSchema(ctx, d.DB, cfg.Stage, cfg.Indexes); err != nil {
		done()
		return nil, nil, err
	}
	return d, done, nil
}

// openDeps is Bootstrap without the schema check: stage 0's CGI child,
// whose parent checked the schema once at start, opens a pool per request.
func openDeps(ctx context.Context, cfg Config, log *slog.Logger, opts models.Options) (*Deps, func(), error) {
	db, err := models.Open(ctx, cfg.DatabaseURL, opts)
	if err != nil {
		return nil, nil, err
	}
	d := &Deps{Config: cfg, DB: db, Log: log}
	return d, func() { d.Close(); models.Close(db) }, nil
}
