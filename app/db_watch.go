package app

import (
	"context"
	"fmt"
	"log/slog"

	"flickrkillr/app/guard"
	"flickrkillr/models"
)

// errPostgresOpen is what a statement gets, at once, while PostgreSQL's
// breaker is open: the database has made no progress (docs/reliability.md).
var errPostgresOpen = fmt.Errorf("app: PostgreSQL %w", guard.ErrOpen)

// postgresWatch is the circuit breaker in front of PostgreSQL and the
// watchdog that opens it when the database hangs (not when it is slow):
// a SELECT 1 on a connection of its own, every 250 ms, unanswered for 1 s
// while the pool's statements wait and none is answered, or refused. While
// it is open every statement fails at once with errPostgresOpen, so a page
// answers its 503 in milliseconds instead of at the 5 s deadline; the
// probe's first answer closes it.
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
// instances) boot this way.
func bootWatched(ctx context.Context, cfg Config, log *slog.Logger, opts models.Options) (*Deps, func(), error) {
	w, err := newPostgresWatch(cfg.DatabaseURL, log)
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
