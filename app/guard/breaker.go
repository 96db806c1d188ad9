package guard

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrOpen is what a call gets, at once, while its breaker is open: the
// dependency has just failed several times in a row.
var ErrOpen = errors.New("circuit breaker is open")

// Breaker is a circuit breaker in front of one dependency (Redis today;
// PostgreSQL and memcached next). After Failures consecutive failures (as
// IsFailure judges them) it opens: every call fails at once with ErrOpen,
// so a dead or hung dependency costs a request nothing instead of a timeout
// per call. While it is open a background probe calls Probe every Cooldown,
// and the first success closes it: no user's request ever waits on the
// probe. The adapter of a client (RedisHook) asks Allow before a call and
// tells Record its outcome.
type Breaker struct {
	failures  int           // consecutive failures that open it
	cooldown  time.Duration // between probes while open
	isFailure func(error) bool
	probe     func(ctx context.Context) error
	done      <-chan struct{} // closed when the client closes

	mu      sync.Mutex
	failed  int
	probing bool      // the probe goroutine runs
	cause   error     // why it opened (Trip's reason, or the last failure)
	heard   time.Time // when a call was last answered
	// opened ends (open) when the breaker opens, and is replaced by a new
	// one when it closes again: the calls in flight (Bind) end with it.
	opened context.Context
	open   context.CancelFunc
}

// BreakerOptions configure a Breaker; zero values take the defaults.
type BreakerOptions struct {
	Failures int           // consecutive failures that open it (3)
	Cooldown time.Duration // between probes while open (1 s)
	// IsFailure says whether an outcome means the dependency is unwell (an
	// answer, even an error answer, means it is there); default: err != nil.
	IsFailure func(error) bool
	// Probe calls the dependency with a context that passes the open
	// breaker (Probing); nil: the breaker never probes, and closes only on
	// a call that an adapter lets through.
	Probe func(ctx context.Context) error
	// Done stops the probing (the client closed).
	Done <-chan struct{}
}

// Defaults of BreakerOptions.
const (
	DefaultFailures = 3
	DefaultCooldown = time.Second
)

// NewBreaker returns a closed breaker.
func NewBreaker(o BreakerOptions) *Breaker {
	b := &Breaker{failures: o.Failures, cooldown: o.Cooldown, isFailure: o.IsFailure, probe: o.Probe, done: o.Done}
	b.opened, b.open = context.WithCancel(context.Background())
	if b.failures <= 0 {
		b.failures = DefaultFailures
	}
	if b.cooldown <= 0 {
		b.cooldown = DefaultCooldown
	}
	if b.isFailure == nil {
		b.isFailure = func(err error) bool { return err != nil }
	}
	return b
}

// probeKey marks the probe's context: its calls (and those a client makes
// on its behalf, such as a new connection's handshake) pass the open breaker.
type probeKey struct{}

// Probing reports whether ctx is the probe's.
func Probing(ctx context.Context) bool { return ctx.Value(probeKey{}) != nil }

// Allow says whether a call may go to the dependency.
func (b *Breaker) Allow(ctx context.Context) bool {
	if Probing(ctx) {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failed < b.failures
}

// Record counts a call's outcome, and starts the probe when the breaker
// opens. A call whose caller had already given up (its request's deadline
// passed while the request waited on a table scan, or the client went away)
// says nothing about the dependency, either way: counting it opened the
// breaker under load and failed every session page of a healthy Redis.
func (b *Breaker) Record(ctx context.Context, err error) {
	b.RecordSince(ctx, err, time.Time{})
}

// RecordSince is Record for a call sent at start. A failure of a call
// during which the dependency answered another one is not counted: it
// makes progress, slowly (a timeout under CPU contention), and is not
// down. A hung dependency answers nothing, so its timeouts still count.
func (b *Breaker) RecordSince(ctx context.Context, err error, start time.Time) {
	if ctx.Err() != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.isFailure(err) {
		b.failed = 0
		b.heard = time.Now()
		b.markClosed()
		return
	}
	if !start.IsZero() && b.heard.After(start) {
		return
	}
	b.failed++
	b.cause = err
	if b.failed >= b.failures {
		b.markOpen()
	}
	if b.failed >= b.failures && !b.probing && b.probe != nil {
		b.probing = true
		go b.probeUntilClosed()
	}
}

// probeUntilClosed calls the probe every cooldown until it succeeds (Record
// then closes the breaker) or the client closes.
func (b *Breaker) probeUntilClosed() {
	t := time.NewTicker(b.cooldown)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), probeKey{}, true), time.Second)
		err := b.probe(ctx)
		cancel()
		if err == nil {
			b.Reset() // an adapter that records its own calls has already closed it
		}
		b.mu.Lock()
		closed := b.failed < b.failures
		if closed {
			b.probing = false
		}
		b.mu.Unlock()
		if closed {
			return
		}
	}
}

// Trip opens the breaker now, for reason: a watchdog that sees the
// dependency make no progress (Watchdog) need not wait for failures that
// would each take a timeout. It probes, if it has a probe, like a breaker
// opened by failures.
func (b *Breaker) Trip(reason error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failed = max(b.failed, b.failures)
	b.cause = reason
	b.markOpen()
	if !b.probing && b.probe != nil {
		b.probing = true
		go b.probeUntilClosed()
	}
}

// Reset closes the breaker: the dependency answered.
func (b *Breaker) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failed = 0
	b.cause = nil
	b.markClosed()
}

// Cause says why the breaker is open (nil while it is closed).
func (b *Breaker) Cause() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failed < b.failures {
		return nil
	}
	return b.cause
}

// Open reports whether the breaker is refusing calls now.
func (b *Breaker) Open() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failed >= b.failures
}

// markOpen ends the calls bound to the breaker (Bind); b.mu is held.
func (b *Breaker) markOpen() { b.open() }

// markClosed gives the calls from now on a fresh context; b.mu is held.
func (b *Breaker) markClosed() {
	if b.opened.Err() != nil {
		b.opened, b.open = context.WithCancel(context.Background())
	}
}

// Bind returns ctx joined to the breaker: it ends when ctx does, or when
// the breaker opens (at once if it is open now), and release frees it (the
// call is over). A call waiting on a dependency that has hung then fails
// when the watchdog trips, instead of waiting out its own deadline; the
// breaker refuses the calls after it. The joined context's Err is then
// context.DeadlineExceeded, as if its deadline had come: the trip brings
// every waiting call's deadline forward to now, and the clients (pgx, whose
// timeout error tests for DeadlineExceeded by equality; database/sql) and
// the app already treat a deadline as "the dependency did not answer".
// A probe's context (Probing) is not bound: it must reach the dependency.
func (b *Breaker) Bind(ctx context.Context) (bound context.Context, release func()) {
	if Probing(ctx) {
		return ctx, func() {}
	}
	b.mu.Lock()
	opened := b.opened
	b.mu.Unlock()
	c := &tripCtx{Context: ctx, done: make(chan struct{})}
	if opened.Err() != nil {
		c.end(context.DeadlineExceeded)
		return c, func() {}
	}
	// Two registrations, no goroutine: released when the call ends.
	stopParent := context.AfterFunc(ctx, func() { c.end(ctx.Err()) })
	stopTrip := context.AfterFunc(opened, func() { c.end(context.DeadlineExceeded) })
	return c, func() { stopParent(); stopTrip() }
}

// tripCtx is a context that ends with its parent or at a breaker's trip.
type tripCtx struct {
	context.Context
	done chan struct{}
	once sync.Once
	mu   sync.Mutex
	err  error
}

func (c *tripCtx) end(err error) {
	c.once.Do(func() {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		close(c.done)
	})
}

func (c *tripCtx) Done() <-chan struct{} { return c.done }

func (c *tripCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
