package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/cgi"
	"os"
	"path/filepath"
	"time"

	"github.com/alexedwards/scs/v2"

	"flickrkillr/app/obs"
	"flickrkillr/models"
)

// Stage 0: CGI. Every request starts a new OS process (this binary, as
// `flickrkillr cgi`), which opens its own database connection and parses the
// templates before it can answer, like a 2007 CGI script. Sessions live in
// the database.
func init() {
	register(Stage{
		Number:   0,
		Name:     "cgi",
		Summary:  "a new process per request: connect, parse templates, answer, exit",
		Schema:   1,
		Serve:    serveCGI,
		Sessions: dbSessions,
	})
}

// serveCGI is the parent: an HTTP server whose only handler execs the child.
func serveCGI(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := checkSchemaOnce(ctx, cfg, log); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("app: find own binary: %w", err)
	}
	h, err := cgiHandler(cfg, log, exe, "cgi")
	if err != nil {
		return err
	}
	s, _ := resolve(cfg.Stage)
	handler, operator := cgiParent(cfg, log, s, h) // the operator listener sees the parent only
	defer obs.StartOperator(ctx, operator)()
	return runServer(ctx, newServer(cfg.Addr, handler, log), log, s, cfg.DrainDelay)
}

// cgiHandler runs `exe args…` once per request with the configuration in
// its environment, as a web server ran a CGI script.
func cgiHandler(cfg Config, log *slog.Logger, exe string, args ...string) (*cgi.Handler, error) {
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	return &cgi.Handler{
		Path: exe,
		Args: args,
		Dir:  filepath.Dir(exe),
		Env: []string{
			"DATABASE_URL=" + cfg.DatabaseURL,
			"REDIS_URL=" + cfg.RedisURL,
			"DATA_DIR=" + dataDir,
			fmt.Sprintf("STAGE=%d", cfg.Stage),
			fmt.Sprintf("INDEXES=%t", cfg.Indexes),
			fmt.Sprintf("METRICS=%t", !cfg.NoMetrics), // the child's Server-Timing
		},
		Logger: slog.NewLogLogger(log.Handler(), slog.LevelError),
		Stderr: os.Stderr,
	}, nil
}

// checkSchemaOnce checks the schema at the parent's start; the children trust it.
func checkSchemaOnce(ctx context.Context, cfg Config, log *slog.Logger) error {
	_, done, err := Bootstrap(ctx, cfg, log, models.Options{MaxOpenConns: 1})
	if err == nil {
		done()
	}
	return err
}

// ServeCGIChild answers the one request of a CGI process: open the database,
// build the App (parsing every template), serve, exit.
func ServeCGIChild(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg.cgiChild = true // no registry of its own: the parent counts
	d, done, err := openDeps(ctx, cfg, log, models.Options{MaxOpenConns: 1, StatementTimeout: requestTimeout})
	if err != nil {
		return err
	}
	defer done()
	a, err := New(cfg, d)
	if err != nil {
		return err
	}
	return cgi.Serve(a)
}

// dbSessions keeps sessions in the sessions table and deletes expired rows
// now and then (Redis expires its own keys; a table does not).
func dbSessions(d *Deps) (scs.Store, error) {
	store := models.NewSessionStore(d.DB)
	ctx, cancel := context.WithCancel(context.Background())
	d.OnClose(func() error { cancel(); return nil })
	go func() {
		t := time.NewTicker(10 * time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := store.DeleteExpired(ctx); err != nil && ctx.Err() == nil {
					d.Log.Warn("sweep expired sessions", "err", err)
				}
			}
		}
	}()
	return store, nil
}
