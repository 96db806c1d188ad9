// Package replicas sends reads to PostgreSQL streaming replicas and writes
// and transactions to the primary, and keeps read-your-writes: a request
// that says it needs WAL position X (WithMinLSN) reads from a replica only
// if that replica has replayed past X, else from the primary.
//
// Why a ConnPool of our own and not gorm.io/plugin/dbresolver (v1.6.2
// builds with our gorm): the choice of a server must see the request, and
// only the context carries the request (which user, which WAL position
// they need, "this must run on the primary"). dbresolver's Policy picks
// among pools with no context, so it cannot route by position; it has no
// fallback when a replica is down (go-gorm/dbresolver#47); it sends a Raw
// "SELECT nextval(…)" to a replica, where it fails; its RoundRobinPolicy
// races. gorm hands every statement's context to the ConnPool's
// ExecContext/QueryContext/QueryRowContext and asks the ConnPool for its
// transactions (ConnPoolBeginner), so the Router is that ConnPool: about
// one screen of routing, with the fallback and the counters where they
// belong. No store in models/ learns about replicas: the stores are built
// on Router.DB() instead of the primary's handle.
//
// The positions come from a poller (positions.go), never from a query per
// request: a replica that does not answer or lags more than MaxLag leaves
// the rotation, and rejoins when healthy.
package replicas

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
)

// Replica is one standby to read from.
type Replica struct {
	Name string   // for the counters and the dashboard
	URL  string   // the poller's own connection (not through the pool, which load may fill)
	DB   *gorm.DB // its pool, from models.Open
}

// Options are the Router's settings; zero values take the defaults.
type Options struct {
	// Poll is how often each replica's replay position is read (50 ms).
	Poll time.Duration
	// PollTimeout bounds one poll (250 ms).
	PollTimeout time.Duration
	// DownAfter is how long a replica whose polls time out stays in the
	// rotation (500 ms since its last answer): a server starved of CPU
	// answers late but answers, and taking it out at its first slow poll
	// sent its reads (and its reads in flight) to the primary. On the scale
	// model's standby hosts at their quota (7 Dec) that was 173 of 4,700
	// reads in 20 s, and the primary's host spent 0.85 ms per request
	// where it spends about 0.1. A server that refuses or drops the
	// connection (dead) leaves at once; a paused one after DownAfter.
	DownAfter time.Duration
	// MaxLag is the lag past which a replica leaves the rotation (5 s):
	// the most a visitor without a position may see a write late.
	MaxLag time.Duration
	// TrackedOnly sends the reads of a context no request tracked (Track,
	// ForUser) to the primary: a background job (an image worker reading a
	// photo it was just handed) knows no position to need, and a standby
	// that has not replayed the upload would say the photo is not there.
	TrackedOnly bool
	// ReadTimeout bounds a read on a replica (5 s) before it is retried on
	// the primary: a paused server answers nothing, and its in-flight reads
	// would wait forever. Reads on a replica that leaves the rotation are
	// abandoned (and retried) at once, so this is only the backstop.
	ReadTimeout time.Duration
}

func (o *Options) defaults() {
	if o.Poll <= 0 {
		o.Poll = 50 * time.Millisecond
	}
	if o.PollTimeout <= 0 {
		o.PollTimeout = 250 * time.Millisecond
	}
	if o.DownAfter <= 0 {
		o.DownAfter = 500 * time.Millisecond
	}
	if o.MaxLag <= 0 {
		o.MaxLag = 5 * time.Second
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 5 * time.Second
	}
}

// Router is the gorm.ConnPool that routes each statement.
type Router struct {
	o          Options
	primary    gorm.ConnPool
	primaryDB  *gorm.DB
	primaryURL string
	replicas   []*replica
	next       atomic.Uint64 // round robin among the eligible replicas

	primaryReads, primaryWrites atomic.Int64
	freshness                   atomic.Int64 // reads sent to the primary because no replica had the position
	noReplica                   atomic.Int64 // reads sent to the primary because no replica was in the rotation
	forced                      atomic.Int64 // reads marked OnPrimary
	fallbacks                   atomic.Int64 // reads that failed on a replica and were retried on the primary
	positionReads               atomic.Int64 // PrimaryLSN's queries

	pos positions
}

// New routes between the primary and the replicas. Call Start to run the
// poller: until its first round no replica is in the rotation.
func New(primary *gorm.DB, primaryURL string, replicas []Replica, o Options) *Router {
	o.defaults()
	r := &Router{o: o, primary: primary.ConnPool, primaryDB: primary, primaryURL: primaryURL}
	for _, rep := range replicas {
		r.replicas = append(r.replicas, newReplica(rep))
	}
	return r
}

// DB is the routed gorm handle to build the stores on.
func (r *Router) DB() (*gorm.DB, error) {
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: r}), &gorm.Config{
		Logger:                 r.primaryDB.Config.Logger,
		SkipDefaultTransaction: true, // as models.Open: a lone statement needs no transaction
	})
	if err != nil {
		return nil, fmt.Errorf("replicas: open gorm: %w", err)
	}
	return db, nil
}

// GetDBConn is the primary's *sql.DB, for db.DB() (pool settings, Close).
func (r *Router) GetDBConn() (*sql.DB, error) { return r.primaryDB.DB() }

// PrepareContext prepares on the primary: a prepared statement is bound
// to one connection, and gorm only prepares in PrepareStmt mode.
func (r *Router) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	markWrote(ctx)
	return r.primary.PrepareContext(ctx, query)
}

// ExecContext runs on the primary: Exec is how gorm writes.
func (r *Router) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	r.primaryWrites.Add(1)
	markWrote(ctx)
	return r.primary.ExecContext(ctx, query, args...)
}

// BeginTx begins the transaction on the primary: a transaction's reads
// must see its writes, and its statements then go to the *sql.Tx, not to
// the Router.
func (r *Router) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	r.primaryWrites.Add(1)
	markWrote(ctx)
	switch b := r.primary.(type) {
	case gorm.ConnPoolBeginner:
		return b.BeginTx(ctx, opts)
	case gorm.TxBeginner:
		tx, err := b.BeginTx(ctx, opts)
		if err != nil {
			return nil, err // not a typed nil *sql.Tx inside the interface
		}
		return tx, nil
	}
	return nil, errors.New("replicas: the primary's pool cannot begin transactions")
}

// QueryContext sends a read to a replica that is fresh enough for ctx, and
// anything else to the primary (INSERT … RETURNING comes through here).
func (r *Router) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rep := r.route(ctx, query)
	if rep == nil {
		return r.primary.QueryContext(ctx, query, args...)
	}
	qctx, cancel := rep.readContext(ctx, r.o.ReadTimeout)
	rows, err := rep.pool.QueryContext(qctx, query, args...)
	if err == nil {
		// cancel is not called here: the rows still read through qctx.
		// Its timer releases it after ReadTimeout at the latest. Rows still
		// being scanned when the replica leaves the rotation fail (not
		// retried: gorm has started filling the result).
		return rows, nil
	}
	cancel()
	if !r.retriable(ctx, err) {
		rep.errors.Add(1)
		return nil, err
	}
	r.fellBack(rep, err)
	return r.primary.QueryContext(ctx, query, args...)
}

// QueryRowContext is QueryContext for gorm's Row.
func (r *Router) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	rep := r.route(ctx, query)
	if rep == nil {
		return r.primary.QueryRowContext(ctx, query, args...)
	}
	qctx, cancel := rep.readContext(ctx, r.o.ReadTimeout)
	row := rep.pool.QueryRowContext(qctx, query, args...)
	err := row.Err()
	if err == nil || !r.retriable(ctx, err) {
		if err != nil {
			cancel()
			rep.errors.Add(1)
		}
		return row
	}
	cancel()
	r.fellBack(rep, err)
	return r.primary.QueryRowContext(ctx, query, args...)
}

func (r *Router) fellBack(rep *replica, err error) {
	r.fallbacks.Add(1)
	rep.errors.Add(1)
	r.primaryReads.Add(1)
	// A standby that is down: do not wait for the poller to notice, the
	// next reads skip it. A statement it refused (a recovery conflict, a
	// write that looked like a read) says nothing of the others' reads,
	// which leaving would cancel.
	if down(err) {
		rep.leave()
	}
}

// down says whether a failed read means the standby is down or unreachable
// (its connection failed, it timed out, it is shutting down), not that it
// refused one statement.
func down(err error) bool {
	var pgErr interface{ SQLState() string }
	if !errors.As(err, &pgErr) {
		return true // connection refused, EOF, timeout, bad connection
	}
	code := pgErr.SQLState()
	return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "57") || strings.HasPrefix(code, "58")
}

// route picks the replica for a statement, or nil for the primary.
func (r *Router) route(ctx context.Context, query string) *replica {
	st, _ := ctx.Value(stateKey{}).(*state)
	if !isRead(query) {
		r.primaryWrites.Add(1)
		markWrote(ctx)
		return nil
	}
	switch {
	case ctx.Value(primaryKey{}) != nil, st == nil && r.o.TrackedOnly:
		r.forced.Add(1)
		r.primaryReads.Add(1)
		return nil
	case st != nil && st.wrote.Load():
		// This request wrote: its own reads must see that, and only the
		// primary is sure to (we do not know the write's position yet).
		r.freshness.Add(1)
		r.primaryReads.Add(1)
		return nil
	}
	need := minLSN(ctx)
	n := uint64(len(r.replicas))
	start := r.next.Add(1)
	healthy := false
	for i := uint64(0); i < n; i++ {
		rep := r.replicas[(start+i)%n]
		pos, ok := rep.position()
		if !ok {
			continue
		}
		healthy = true
		// The replica chosen must itself be past the position: "any
		// replica caught up" is GitLab's bug 413203 (stale reads).
		if pos >= need {
			rep.reads.Add(1)
			if st != nil {
				st.readFrom(pos)
			}
			return rep
		}
	}
	r.primaryReads.Add(1)
	if healthy {
		r.freshness.Add(1)
	} else {
		r.noReplica.Add(1)
	}
	return nil
}

// isRead says whether a statement may run on a replica: a SELECT that
// does not write or lock. nextval/setval in a SELECT write (a replica
// refuses them: "cannot execute nextval() in a read-only transaction"),
// and FOR UPDATE/SHARE locks: they go to the primary even unmarked.
// Anything else (INSERT/UPDATE/DELETE … RETURNING, WITH, which may hold a
// data-modifying CTE) goes to the primary.
func isRead(query string) bool {
	q := strings.TrimLeft(query, " \t\r\n(")
	if len(q) < 6 || !strings.EqualFold(q[:6], "select") {
		return false
	}
	l := strings.ToLower(q)
	for _, w := range []string{"nextval(", "setval(", "for update", "for share", "for no key update", "pg_advisory"} {
		if strings.Contains(l, w) {
			return false
		}
	}
	return true
}

// retriable says whether a failed read on a replica may be run again on
// the primary: the replica's connection failed or it timed out (our
// ReadTimeout, or it left the rotation), or the replica refused the
// statement for a reason the primary does not have. Not when the
// request itself is over, and not a plain SQL error (the primary would
// fail it too, at double the cost).
func (r *Router) retriable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var pgErr interface{ SQLState() string }
	if !errors.As(err, &pgErr) {
		return true // connection refused, EOF, timeout, bad connection
	}
	code := pgErr.SQLState()
	switch {
	case code == "57014": // statement_timeout: the primary would time out too
		return false
	case strings.HasPrefix(code, "08"), // connection exception
		strings.HasPrefix(code, "57"),    // admin/crash shutdown, cannot connect now
		strings.HasPrefix(code, "53"),    // too many connections
		strings.HasPrefix(code, "58"),    // system error
		code == "40001", code == "40P01", // conflict with recovery
		code == "25006": // read-only transaction: a write that looked like a read
		return true
	}
	return false
}
