package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/labstack/echo/v4"

	"flickrkillr/app/guard"
	"flickrkillr/app/obs"
	"flickrkillr/models"
)

type health struct {
	Status    string `json:"status"`
	Stage     int    `json:"stage"`
	StageName string `json:"stage_name"`
	// Indexes says whether the schema has the hot queries' indexes: stage 4
	// and later on their own, stages 0-3 only with --indexes.
	Indexes  bool   `json:"indexes"`
	PID      int    `json:"pid"`
	Database string `json:"database"`
	// Rows are estimated table sizes (pg_class.reltuples), with ?data=1:
	// the load tool records them next to its figures.
	Rows map[string]int64 `json:"rows,omitempty"`
	// Process is the server's memory, file descriptors and goroutines, with
	// ?data=1: the connections scenario compares them (obs/process.go).
	Process *obs.ProcessStats `json:"process,omitempty"`
}

// healthz answers whether this process can reach its database. Its pid is
// how a test (and a workshop attendee) sees stage 0 start a process per request.
func (a *App) healthz(c echo.Context) error {
	h := health{Status: "ok", Stage: a.stage.Number, StageName: a.stage.Name, Indexes: a.stage.Indexes, PID: os.Getpid(), Database: "ok"}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if why := a.postgresOpen(); why != "" {
		h.Status, h.Database = "degraded", "unreachable ("+why+")"
		return c.JSON(http.StatusServiceUnavailable, h)
	}
	if err := models.Ping(ctx, a.db); err != nil {
		a.log.Error("healthz: database", "err", err)
		h.Status, h.Database = "degraded", "unreachable"
		return c.JSON(http.StatusServiceUnavailable, h)
	}
	if c.QueryParam("data") == "1" {
		rows, err := models.EstimateRows(ctx, a.db)
		if err != nil {
			return err
		}
		h.Rows = rows
		h.Process = obs.ReadProcessStats()
	}
	return c.JSON(http.StatusOK, h)
}

// Drain marks the server as shutting down: /readyz answers 503 from now on
// (runServer calls it before it stops accepting connections).
func (a *App) Drain() { a.lim.draining.Store(true) }

// readyz answers whether this instance should get traffic: 503 while it is
// draining or while its database does not answer within a second. /healthz
// says whether the process is alive and what it runs; /readyz is what a load
// balancer asks.
func (a *App) readyz(c echo.Context) error {
	type ready struct {
		Status   string `json:"status"`
		Database string `json:"database"`
		// Reason says why the database counts as unreachable: the
		// breaker's cause (no progress, refused), or a ping's timeout.
		Reason string `json:"reason,omitempty"`
	}
	if a.lim.draining.Load() {
		c.Response().Header().Set("Retry-After", "5")
		return c.JSON(http.StatusServiceUnavailable, ready{Status: "draining", Database: "unknown"})
	}
	if why := a.postgresOpen(); why != "" { // at once: the breaker already knows
		c.Response().Header().Set("Retry-After", "5")
		return c.JSON(http.StatusServiceUnavailable, ready{Status: "unavailable", Database: "unreachable", Reason: why})
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), time.Second)
	defer cancel()
	if err := models.Ping(ctx, a.db); err != nil {
		c.Response().Header().Set("Retry-After", "5")
		return c.JSON(http.StatusServiceUnavailable, ready{Status: "unavailable", Database: "unreachable", Reason: "no answer to a ping within 1 s"})
	}
	return c.JSON(http.StatusOK, ready{Status: "ready", Database: "ok"})
}

// postgresOpen says why PostgreSQL's breaker is open, or "" while it is
// closed (or there is none).
func (a *App) postgresOpen() string {
	if a.pg == nil {
		return ""
	}
	if err := a.pg.breaker.Cause(); err != nil {
		return "circuit breaker open: " + err.Error()
	}
	if a.pg.breaker.Open() {
		return "circuit breaker open"
	}
	return ""
}

// errPostgresOpen is what a statement gets, at once, while PostgreSQL's
// breaker is open: the database has made no progress (docs/reliability.md).
var errPostgresOpen = fmt.Errorf("app: PostgreSQL %w", guard.ErrOpen)

// postgresWatch is the circuit breaker in front of PostgreSQL and the
// watchdog that opens it when the database hangs (not when it is slow):
// a SELECT 1 on a connection of its own, every 250 ms, unanswered for 1 s
// while the pool's statements wait and none is answered, or refused. While
// it is open every statement fails at once with errPostgresOpen, so a page
// answers its 503 in milliseconds instead of at the 5 s deadline, and the
// statements, dials and pings waiting when it opened end then (the pool's
// tracer binds them to it, models.Binder); the probe's first answer closes it.
type postgresWatch struct {
	breaker *guard.Breaker
	dog     *guard.Watchdog
	probe   *models.Probe
}

func newPostgresWatch(dsn string, log *slog.Logger) (*postgresWatch, error) {
	probe, err := models.NewProbe(dsn)
	if err != nil {
		return nil, err
	}
	b := guard.NewBreaker(guard.BreakerOptions{}) // only the watchdog opens and closes it
	dog := guard.NewWatchdog(guard.WatchdogOptions{
		Probe:     probe.Ping,
		Breaker:   b,
		IsRefused: models.IsRefused,
		Log:       log.With("dependency", "PostgreSQL"),
	})
	return &postgresWatch{breaker: b, dog: dog, probe: probe}, nil
}

// options are opts with the breaker asked before every statement and the
// watchdog told of each one.
func (w *postgresWatch) options(opts models.Options) models.Options {
	opts.Admit = w.admit
	opts.Progress = w.dog
	return opts
}

func (w *postgresWatch) admit(ctx context.Context) error {
	if w.breaker.Allow(ctx) {
		return nil
	}
	return errPostgresOpen
}

// start runs the watchdog until the returned stop is called.
func (w *postgresWatch) start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.dog.Run(ctx) }()
	return func() { cancel(); <-done; w.probe.Close() }
}

// bootWatched is Bootstrap with PostgreSQL behind its breaker and watchdog:
// the long-running servers (stage 1 and every later one, stage 7's
// instances) boot this way. The watchdog probes cfg.WatchdogURL when set:
// behind PgBouncer (stage 7) DATABASE_URL would queue the probe behind the
// instances' own statements (no reserve pool), and a slow database would
// look hung.
func bootWatched(ctx context.Context, cfg Config, log *slog.Logger, opts models.Options) (*Deps, func(), error) {
	probeURL := cfg.DatabaseURL
	if cfg.WatchdogURL != "" {
		probeURL = cfg.WatchdogURL
	}
	w, err := newPostgresWatch(probeURL, log)
	if err != nil {
		return nil, nil, err
	}
	d, done, err := Bootstrap(ctx, cfg, log, w.options(opts))
	if err != nil {
		return nil, nil, err
	}
	d.pg = w
	stop := w.start()
	return d, func() { stop(); done() }, nil
}
