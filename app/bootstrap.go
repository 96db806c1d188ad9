package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"gorm.io/gorm"

	"flickrkillr/app/netdelay"
	"flickrkillr/migrations"
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

// bootApp builds the App of a process on what boot opened (Bootstrap, or
// openDeps for stage 0's child); done closes it all.
func bootApp(ctx context.Context, cfg Config, log *slog.Logger, opts models.Options,
	boot func(context.Context, Config, *slog.Logger, models.Options) (*Deps, func(), error)) (*App, func(), error) {
	d, done, err := boot(ctx, cfg, log, opts)
	if err != nil {
		return nil, nil, err
	}
	a, err := New(cfg, d)
	if err != nil {
		done()
		return nil, nil, err
	}
	return a, done, nil
}

// openDeps is Bootstrap without the schema check: stage 0's CGI child,
// whose parent checked the schema once at start, opens a pool per request.
func openDeps(ctx context.Context, cfg Config, log *slog.Logger, opts models.Options) (*Deps, func(), error) {
	opts.Pooler = opts.Pooler || cfg.DBPooler
	db, err := models.Open(ctx, cfg.DatabaseURL, opts)
	if err != nil {
		return nil, nil, err
	}
	d := &Deps{Config: cfg, DB: db, Log: log}
	return d, func() { d.Close(); models.Close(db) }, nil
}

// SchemaError says the database is not at the schema the run needs, and
// how to fix it.
type SchemaError struct {
	Stage   int
	Indexes bool // the run asked for the index schema (--indexes)
	Have    int64
	Need    int64
	// HaveIndexes: the database is at the index schema that a stage below 4
	// refuses unless asked; the message names --indexes as the other fix.
	HaveIndexes bool
}

func (e *SchemaError) Error() string {
	with, flag, env := "", "", ""
	if e.Indexes {
		with, flag, env = " with --indexes", " --indexes", " INDEXES=1"
	}
	msg := fmt.Sprintf("the database schema is at version %d but stage %d%s needs version %d: run `go run . migrate --stage %d%s` (or `make migrate STAGE=%d%s`)",
		e.Have, e.Stage, with, e.Need, e.Stage, flag, e.Stage, env)
	if e.HaveIndexes {
		msg += fmt.Sprintf(", or run stage %d on this schema on purpose with --indexes (INDEXES=1)", e.Stage)
	}
	return msg
}

// CheckSchema refuses a database whose schema is not the one the run needs:
// the stage's own schema (at stage 4 the indexes must exist, below it they
// must not, or the measurements would lie), or with indexes exactly the
// index schema. Anything else is a SchemaError that names the fix.
func CheckSchema(ctx context.Context, db *gorm.DB, stage int, indexes bool) error {
	need, err := SchemaForRun(stage, indexes)
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
		se := &SchemaError{Stage: stage, Indexes: indexes, Have: have, Need: need}
		if idx, err := IndexSchema(); err == nil && !indexes && have == idx && !SchemaHasIndexes(stage) {
			se.HaveIndexes = true
		}
		return se
	}
	return nil
}

// A database across the network, on purpose (--db-latency, DB_LATENCY): a
// simulation that package netdelay runs; here the app puts it in front of
// PostgreSQL and Redis.

// acrossNetwork starts the delay proxy in front of PostgreSQL when
// cfg.DBLatency is set and returns the configuration that dials it; stop
// closes it. Redis gets its own proxy where its client is made (Deps.Redis),
// so that the embedded miniredis is as far away as a real Redis.
func acrossNetwork(cfg Config, log *slog.Logger) (Config, func(), error) {
	if cfg.DBLatency <= 0 {
		return cfg, func() {}, nil
	}
	network, target, rewrite, err := netdelay.PGTarget(cfg.DatabaseURL)
	if err != nil {
		return cfg, nil, &ConfigError{"DB_LATENCY", err.Error()}
	}
	addr, stop, err := netdelay.Spawn(network, target, cfg.DBLatency)
	if err != nil {
		return cfg, nil, err
	}
	cfg.DatabaseURL = rewrite(addr)
	log.Info("simulation: PostgreSQL and Redis are reached through a delay proxy",
		"db_latency", cfg.DBLatency.String(), "round_trip_adds", (2 * cfg.DBLatency).String(), "postgres_proxy", addr)
	return cfg, func() { stop() }, nil
}

// overNetwork puts the delay proxy in front of a Redis address when the
// configuration asks for it. The caller makes its client once (Deps.Shared),
// so there is one proxy per process; Close stops it.
func (d *Deps) overNetwork(addr string) (string, error) {
	if d.Config.DBLatency <= 0 {
		return addr, nil
	}
	proxy, stop, err := netdelay.Spawn("tcp", addr, d.Config.DBLatency)
	if err != nil {
		return "", err
	}
	d.OnClose(stop)
	return proxy, nil
}

// newServer is our own http.Server: timeouts on every phase, so that a slow
// or stuck client cannot hold a connection (or a CGI process) forever.
func newServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second, // uploads of up to maxUploadBody
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
	log.Info("FlickrKillr is serving", "url", "http://"+ln.Addr().String(), "stage", fmt.Sprintf("%d (%s)", stage.Number, stage.Name), "indexes", stage.Indexes)
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

// ServeInstance runs one app instance of a topology that cfg.Stage's Serve
// supervises (stage 7 runs N behind nginx, as `flickrkillr instance`): the
// server of the highest stage below it (stage 1's long-running server, or a
// later one's), with every part of cfg.Stage.
func ServeInstance(ctx context.Context, cfg Config, log *slog.Logger) error {
	if name := os.Getenv("INSTANCE"); name != "" {
		log = log.With("instance", name)
	}
	var serve func(context.Context, Config, *slog.Logger) error
	for _, s := range Stages() {
		if s.Number < cfg.Stage && s.Serve != nil && !s.Topology { // stage 8's instance is no supervisor either
			serve = s.Serve
		}
	}
	if serve == nil {
		return &ConfigError{"STAGE", fmt.Sprintf("stage %d has no server below it to run as an instance", cfg.Stage)}
	}
	return serve(ctx, cfg, log)
}
