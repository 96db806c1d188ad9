// Package models is FlickrKillr's data layer: the gorm stores for users,
// photos, tags, favorites, comments and sessions, the photo files on disk,
// and (stage 3) the Redis cache in front of the photo reads. gorm is used
// nowhere else in the project.
package models

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

var (
	// ErrNotFound is returned when a row (or photo file) does not exist.
	ErrNotFound = errors.New("models: not found")
	// ErrForbidden is returned when a user changes something that is not theirs.
	ErrForbidden = errors.New("models: forbidden")
	// ErrDuplicate is returned when a unique value (a user name) is taken.
	ErrDuplicate = errors.New("models: duplicate")
)

// Options tune the connection pool. The zero value is a sensible pool.
type Options struct {
	// MaxOpenConns caps the pool; stage 0 opens exactly one per process.
	MaxOpenConns int
	// Tracer sees every query (the tests count them to prove the cache works).
	Tracer pgx.QueryTracer
	// StatementTimeout, when set, is the server's statement_timeout for every
	// connection: a query that runs longer is cancelled by PostgreSQL itself
	// (the app's request deadline covers a server that does not answer at all).
	// Zero leaves it off, as migrate and seed need: sent as 0, so that a
	// role's default (SetRoleStatementTimeout) does not apply to them.
	// Behind a pooler it is not sent at all (see Pooler).
	StatementTimeout time.Duration
	// Admit, when set, is asked before every statement and transaction
	// the pool sends (admit.go): an error (an open circuit breaker) fails
	// the call at once instead of sending it to a database that does not
	// answer.
	Admit func(ctx context.Context) error
	// Progress, when set, is told of every statement's start and end (a
	// watchdog that tells a hung database from a slow one).
	Progress Progress
	// Pooler: the URL names a transaction-pooling PgBouncer (stage 7), where
	// a connection is a different server session at every transaction.
	// pgx then runs every query in exec mode (the unnamed statement, parsed
	// and bound in one round trip: its default caches named prepared
	// statements per connection, which under PgBouncer 1.18 fail with
	// "prepared statement already exists"; 1.18 has no
	// max_prepared_statements), and no statement_timeout goes as a startup
	// parameter, which 1.18 refuses (or drops under
	// ignore_startup_parameters): it is the role's default in the database
	// instead, set once by SetRoleStatementTimeout.
	Pooler bool
}

// Open connects to PostgreSQL through pgx and returns a gorm handle on it.
func Open(ctx context.Context, dsn string, opt Options) (*gorm.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("models: parse database URL: %w", err)
	}
	// Every statement is timed into its request's Server-Timing (trace.go).
	tt := timingTracer{next: opt.Tracer, progress: opt.Progress}
	cfg.Tracer = tt
	if opt.Pooler {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	} else {
		cfg.RuntimeParams["statement_timeout"] = strconv.FormatInt(opt.StatementTimeout.Milliseconds(), 10)
	}
	sqlDB := stdlib.OpenDB(*cfg, stdlib.OptionShouldPing(tt.shouldPing)) // the watchdog sees the ping (probe.go)
	maxOpen := opt.MaxOpenConns
	if maxOpen == 0 {
		maxOpen = 20
	}
	sqlDB.SetMaxOpenConns(maxOpen)
	sqlDB.SetMaxIdleConns(maxOpen)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)

	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pingCtx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("models: connect to %s: %w", redactDSN(cfg), err)
	}
	var pool gorm.ConnPool = sqlDB
	if opt.Admit != nil {
		pool = admitPool{DB: sqlDB, admit: opt.Admit}
	}
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: pool}), &gorm.Config{
		// Queries are logged by the app where they fail; gorm's own slow-query
		// warnings would drown the console in the index-less stages.
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
	})
	if err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("models: open gorm: %w", err)
	}
	return db, nil
}

// SetRoleStatementTimeout makes d the statement_timeout of the URL's role
// in its database (ALTER ROLE CURRENT_USER IN DATABASE … SET): PostgreSQL
// applies it at every backend start, whatever a pooler in front does with
// its connections, and RESET falls back to it. It is how the timeout
// reaches connections through PgBouncer (Options.Pooler); a connection
// opened directly with Open sends its own value, which wins (0 for migrate
// and seed). psql sessions of that role in that database get it too.
// Backends started before the change keep the old value.
func SetRoleStatementTimeout(ctx context.Context, dsn string, d time.Duration) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("models: parse database URL: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("models: connect to %s: %w", redactDSN(cfg), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	q := fmt.Sprintf("ALTER ROLE CURRENT_USER IN DATABASE %s SET statement_timeout = '%dms'",
		pgx.Identifier{cfg.Database}.Sanitize(), d.Milliseconds())
	if _, err := conn.Exec(ctx, q); err != nil {
		return fmt.Errorf("models: set the role's statement_timeout: %w", err)
	}
	return nil
}

// Close closes the pool under db.
func Close(db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

func redactDSN(cfg *pgx.ConnConfig) string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

// pgCode is the SQLSTATE of a PostgreSQL error, or "".
func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

// SetPoolSize caps the pool under db at n open (and as many idle)
// connections; Open sets 20 unless told otherwise.
func SetPoolSize(db *gorm.DB, n int) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	sqlDB.SetMaxOpenConns(n)
	sqlDB.SetMaxIdleConns(n)
	return nil
}

// Warm opens n connections of the pool under db now, all at once, and
// leaves them idle in it (Open keeps as many idle as open), so that the
// first burst of requests does not pay for n handshakes. Through PgBouncer
// each is a SCRAM exchange that costs both ends milliseconds of CPU: on the
// scale model's small hosts, stage 9's standby pools opened under load
// failed ("failed to connect … timeout") while the hosts were throttled. It
// returns the first error; the connections that did open stay.
func Warm(ctx context.Context, db *gorm.DB, n int) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	var (
		mu    sync.Mutex
		conns []*sql.Conn
		first error
		wg    sync.WaitGroup
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := sqlDB.Conn(ctx)
			if err == nil {
				if err = c.PingContext(ctx); err != nil {
					c.Close()
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				first = cmp.Or(first, err)
				return
			}
			conns = append(conns, c)
		}()
	}
	wg.Wait() // every connection is held until all are open: n distinct ones
	for _, c := range conns {
		c.Close() // back to the pool, idle
	}
	if first != nil {
		return fmt.Errorf("models: warm the pool (%d of %d open): %w", len(conns), n, first)
	}
	return nil
}

// PoolSize is the cap on the pool's open connections.
func PoolSize(db *gorm.DB) int {
	sqlDB, err := db.DB()
	if err != nil {
		return 0
	}
	return sqlDB.Stats().MaxOpenConnections
}

// Ping checks that the database answers.
func Ping(ctx context.Context, db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}

// EstimateRows returns the planner's row estimates of the main tables: free
// to read, exact enough to describe a data set (ANALYZE keeps them current).
func EstimateRows(ctx context.Context, db *gorm.DB) (map[string]int64, error) {
	var rows []struct {
		Relname   string
		Reltuples float64
	}
	err := db.WithContext(ctx).Raw(`SELECT relname, reltuples FROM pg_class
		WHERE relkind = 'r' AND relname IN ('users', 'photos', 'tags', 'photo_tags', 'favorites', 'comments')
		AND relnamespace = 'public'::regnamespace`).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("models: estimate rows: %w", err)
	}
	out := map[string]int64{}
	for _, r := range rows {
		out[r.Relname] = max(int64(r.Reltuples), 0)
	}
	return out, nil
}
