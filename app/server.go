package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"gorm.io/gorm"

	"flickrkillr/migrations"
)

// newServer is our own http.Server: timeouts on every phase, so that a slow
// or stuck client cannot hold a connection (or a CGI process) forever.
func newServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second, // uploads of up to 10 MB
		WriteTimeout:      60 * time.Second, // the index-less stages can be slow
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes, // 431 above it
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// runServer listens, prints where, and on ctx's end shuts down gracefully:
// /readyz turns 503 for drainDelay while requests are still served, then
// in-flight requests get up to 10 seconds to finish.
func runServer(ctx context.Context, srv *http.Server, log *slog.Logger, stage Stage, drainDelay time.Duration) error {
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return fmt.Errorf("app: listen on %s: %w", srv.Addr, err)
	}
	log.Info("FlickrKillr is serving", "url", "http://"+ln.Addr().String(), "stage", fmt.Sprintf("%d (%s)", stage.Number, stage.Name))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	if d, ok := srv.Handler.(interface{ Drain() }); ok {
		d.Drain()
		if drainDelay > 0 {
			log.Info("draining: /readyz answers 503", "for", drainDelay)
			time.Sleep(drainDelay)
		}
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("app: shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// SchemaError says the database is not at the schema the stage needs, and
// how to fix it.
type SchemaError struct {
	Stage    int
	Have     int64
	Need     int64
	FixStage int
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("the database schema is at version %d but stage %d needs version %d: run `go run . migrate --stage %d` (or `make migrate STAGE=%d`)",
		e.Have, e.Stage, e.Need, e.FixStage, e.FixStage)
}

// CheckSchema refuses a database whose schema does not match the stage: at
// stage 4 the indexes must exist, below it they must not (or the
// measurements would lie).
func CheckSchema(ctx context.Context, db *gorm.DB, stage int) error {
	need, err := SchemaFor(stage)
	if err != nil {
		return err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	have, err := migrations.Version(ctx, sqlDB)
	if err != nil {
		return err
	}
	if have != need {
		return &SchemaError{Stage: stage, Have: have, Need: need, FixStage: stage}
	}
	return nil
}
