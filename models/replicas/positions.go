package replicas

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
)

// replica is one standby: its pool for reads, and what the poller knows.
type replica struct {
	name, url string
	pool      gorm.ConnPool

	// The request path reads these two without a lock.
	in  atomic.Bool   // in the rotation
	pos atomic.Uint64 // its replay position at the last poll

	reads, errors, left atomic.Int64
	answered            atomic.Int64 // unix nanoseconds of its last good poll

	mu         sync.Mutex
	alive      context.Context // cancelled when it leaves the rotation
	kill       context.CancelFunc
	lagBytes   int64
	lagSeconds float64
	lastErr    string
	conn       pollConn // the poller's own
}

func newReplica(r Replica) *replica {
	rep := &replica{name: r.Name, url: r.URL, pool: r.DB.ConnPool}
	rep.alive, rep.kill = context.WithCancel(context.Background())
	rep.kill() // out of the rotation until its first good poll
	return rep
}

func (rep *replica) position() (LSN, bool) {
	if !rep.in.Load() {
		return 0, false
	}
	return LSN(rep.pos.Load()), true
}

// readContext bounds a read on the replica by timeout and by its stay in
// the rotation: when the poller takes it out (paused, dead, lagging), its
// in-flight reads end at once and are retried on the primary instead of
// waiting on a server that may never answer. Both registrations end when
// the read's context does, at the latest after timeout.
func (rep *replica) readContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	rep.mu.Lock()
	alive := rep.alive
	rep.mu.Unlock()
	qctx, cancel := context.WithTimeout(ctx, timeout)
	stop := context.AfterFunc(alive, cancel)
	context.AfterFunc(qctx, func() { stop() })
	return qctx, cancel
}

// leave takes a standby that is down out of the rotation and ends its
// reads in flight (they run again on the primary).
func (rep *replica) leave() {
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if rep.in.Swap(false) {
		rep.left.Add(1)
	}
	rep.kill()
}

// lagBehind takes a standby that answers but lags too far out of the
// rotation: no new reads, and the reads in flight finish there.
func (rep *replica) lagBehind() {
	if rep.in.Swap(false) {
		rep.left.Add(1)
	}
}

func (rep *replica) join(pos LSN) {
	rep.pos.Store(uint64(pos))
	rep.answered.Store(time.Now().UnixNano())
	if rep.in.Load() {
		return
	}
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if rep.alive.Err() != nil { // it left down: a new life for its reads
		rep.alive, rep.kill = context.WithCancel(context.Background())
	}
	rep.in.Store(true)
}

// positions is the primary's WAL position over the last moments: a
// replica's lag in seconds is how long ago the primary first went past
// the replica's replay position. Unlike now() -
// pg_last_xact_replay_timestamp() it does not count the time the primary
// was idle before a write (which took a 500 ms-delayed standby that had
// seen no write for a minute out of the rotation), and it needs no clock
// shared with the servers.
type positions struct {
	mu      sync.Mutex
	samples []sample // increasing LSNs
	conn    pollConn
}

type sample struct {
	at  time.Time
	lsn LSN
}

func (p *positions) add(now time.Time, lsn LSN, keep time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.samples); n == 0 || lsn > p.samples[n-1].lsn {
		p.samples = append(p.samples, sample{now, lsn})
	}
	drop := 0
	for drop < len(p.samples)-1 && now.Sub(p.samples[drop].at) > keep {
		drop++
	}
	p.samples = p.samples[drop:]
}

// lag is how far replay is behind: bytes behind the primary's newest
// known position, and since when the primary has been past it.
func (p *positions) lag(now time.Time, replay LSN) (int64, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.samples)
	if n == 0 || replay >= p.samples[n-1].lsn {
		return 0, 0
	}
	for _, s := range p.samples {
		if s.lsn > replay {
			return int64(p.samples[n-1].lsn - replay), now.Sub(s.at)
		}
	}
	return 0, 0
}

// Start polls the primary's position and each replica's until ctx ends.
// It returns after a first round, so the replicas that answer are in the
// rotation when it does.
func (r *Router) Start(ctx context.Context) {
	r.pollPrimary(ctx)
	var wg sync.WaitGroup
	for _, rep := range r.replicas {
		wg.Add(1)
		go func() { defer wg.Done(); r.pollReplica(ctx, rep) }()
	}
	wg.Wait()
	go r.every(ctx, r.pollPrimary, &r.pos.conn)
	for _, rep := range r.replicas {
		go r.every(ctx, func(ctx context.Context) { r.pollReplica(ctx, rep) }, &rep.conn)
	}
}

// every runs f each Poll until ctx ends, then closes f's connection: a
// poller left connected would keep its database from being dropped.
func (r *Router) every(ctx context.Context, f func(context.Context), conn *pollConn) {
	t := time.NewTicker(r.o.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			conn.close()
			return
		case <-t.C:
			f(ctx)
		}
	}
}

func (r *Router) pollPrimary(ctx context.Context) {
	var s string
	if err := pollRow(ctx, &r.pos.conn, r.primaryURL, r.o.PollTimeout, r.o.Poll, `SELECT pg_current_wal_lsn()::text`, &s); err != nil {
		return // the replicas' lag stays what it was; writes will fail anyway
	}
	if lsn, err := ParseLSN(s); err == nil {
		r.pos.add(time.Now(), lsn, 2*r.o.MaxLag)
	}
}

func (r *Router) pollReplica(ctx context.Context, rep *replica) {
	var recovering bool
	var s string
	err := pollRow(ctx, &rep.conn, rep.url, r.o.PollTimeout, r.o.Poll,
		`SELECT pg_is_in_recovery(), COALESCE(pg_last_wal_replay_lsn()::text, '0/0')`, &recovering, &s)
	if ctx.Err() != nil {
		return
	}
	var replay LSN
	if err == nil && !recovering {
		err = errors.New("not in recovery: promoted, it no longer follows the primary")
	}
	if err == nil {
		replay, err = ParseLSN(s)
	}
	var bytes int64
	var late time.Duration
	lagging := false
	if err == nil {
		bytes, late = r.pos.lag(time.Now(), replay)
		if late > r.o.MaxLag {
			err, lagging = fmt.Errorf("lags %s behind the primary (MaxLag %s)", late.Round(time.Millisecond), r.o.MaxLag), true
		}
	}
	rep.mu.Lock()
	rep.lagBytes, rep.lagSeconds = bytes, late.Seconds()
	if err != nil {
		rep.lastErr = err.Error()
	}
	rep.mu.Unlock()
	switch {
	case lagging:
		rep.lagBehind()
		return
	case err != nil && pollDown(rep.conn.timedOut, time.Since(time.Unix(0, rep.answered.Load())), r.o.DownAfter):
		rep.leave()
		return
	case err != nil:
		return // slow, not down: it keeps its reads at its last position
	}
	rep.join(replay)
}

// pollConn is a poller's own connection to one server, and when it may
// connect again after a failure. A poll that times out closes its
// connection (pgx cannot reuse one whose query was cancelled); connecting
// again at once, every poll, is what a server starved of CPU cannot
// afford: each attempt forks a backend that may outlive its client, until
// "too many clients" (seen on the scale model's 0.25-CPU database host).
// So a failure waits before the next attempt, doubling from one poll to
// a second.
type pollConn struct {
	c        *pgx.Conn
	next     time.Time     // no connection attempt before
	backoff  time.Duration // the wait after the next failure
	timedOut bool          // the last failure was a timeout (slow), not a refusal (down)
}

// pollDown says whether a replica whose poll failed leaves the rotation:
// at once when its server refused or dropped the connection, and after
// downAfter without an answer when its polls time out.
func pollDown(timedOut bool, sinceAnswer, downAfter time.Duration) bool {
	return !timedOut || sinceAnswer >= downAfter
}

// isTimeout says whether err is a poll that ran out of time, connecting or
// querying, rather than a server that refused or dropped the connection.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) || (errors.As(err, &ne) && ne.Timeout())
}

func (pc *pollConn) close() {
	if pc.c != nil {
		pc.c.Close(context.Background())
		pc.c = nil
	}
}

func (pc *pollConn) failed(poll time.Duration, err error) {
	pc.timedOut = isTimeout(err)
	pc.close()
	pc.backoff = min(max(2*pc.backoff, poll), time.Second)
	pc.next = time.Now().Add(pc.backoff)
}

var errBackingOff = errors.New("replicas: waiting before connecting again")

// pollRow runs q on the poller's own connection pc (connecting when there
// is none and the backoff allows), bounded by timeout; a failure closes
// the connection and backs off.
func pollRow(ctx context.Context, pc *pollConn, url string, timeout, poll time.Duration, q string, dest ...any) error {
	if pc.c == nil && time.Now().Before(pc.next) {
		return errBackingOff
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if pc.c == nil {
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			pc.failed(poll, err)
			return err
		}
		pc.c = c
	}
	if err := pc.c.QueryRow(ctx, q).Scan(dest...); err != nil {
		pc.failed(poll, err)
		return err
	}
	pc.backoff, pc.timedOut = 0, false
	return nil
}
