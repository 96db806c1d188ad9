package app

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// errBreakerOpen is what a Redis command returns, at once, while the
// breaker is open: Redis has just failed several times in a row.
var errBreakerOpen = errors.New("app: Redis circuit breaker is open")

// breaker is a circuit breaker as a go-redis hook. After breakerFailures
// consecutive connection failures or timeouts it opens: every command fails
// at once with errBreakerOpen, so a dead or hung Redis costs a request
// nothing (the cache reads the database, the session pages answer 503)
// instead of a timeout per command. While it is open a background probe
// pings Redis every breakerCooldown, and the first answer closes it: no
// user's request ever waits on the probe. Redis's own replies (redis.Nil,
// a WRONGTYPE error) count as answers: the server is there.
type breaker struct {
	failures int           // consecutive failures that open it
	cooldown time.Duration // between probes while open
	ping     func(ctx context.Context) error
	done     <-chan struct{} // closed when the client closes

	mu      sync.Mutex
	failed  int
	probing bool // the probe goroutine runs
}

const (
	breakerFailures = 3
	breakerCooldown = time.Second
)

// newBreaker returns a breaker whose probe is ping; it stops probing when
// done is closed.
func newBreaker(ping func(ctx context.Context) error, done <-chan struct{}) *breaker {
	return &breaker{failures: breakerFailures, cooldown: breakerCooldown, ping: ping, done: done}
}

var _ redis.Hook = (*breaker)(nil)

// probeKey marks the probe's context: its commands (and those go-redis
// runs on a new connection, HELLO and CLIENT SETINFO) pass the open breaker.
type probeKey struct{}

// allow says whether a command may go to Redis.
func (b *breaker) allow(ctx context.Context) bool {
	if ctx.Value(probeKey{}) != nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failed < b.failures
}

// record counts a command's outcome, and starts the probe when the breaker
// opens. A command whose caller had already given up (its request's deadline
// passed while the request waited on a table scan, or the client went away)
// says nothing about Redis, either way: counting it opened the breaker under
// load and failed every session page of a healthy Redis.
func (b *breaker) record(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !isConnFailure(err) {
		b.failed = 0
		return
	}
	b.failed++
	if b.failed >= b.failures && !b.probing && b.ping != nil {
		b.probing = true
		go b.probe()
	}
}

// probe pings Redis every cooldown until it answers (record then closes
// the breaker) or the client closes.
func (b *breaker) probe() {
	t := time.NewTicker(b.cooldown)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), probeKey{}, true), time.Second)
		b.ping(ctx)
		cancel()
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

// open reports whether the breaker is refusing commands now.
func (b *breaker) open() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failed >= b.failures
}

// isConnFailure is a failure to reach Redis or to hear back in time, as
// opposed to an answer (redis.Nil, a server error), our own caller giving up,
// or a wait for a free connection of our own pool (our load, not Redis's
// health: a hung Redis shows as read timeouts on the connections it holds).
func isConnFailure(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrPoolTimeout) {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return false // the server replied
	}
	return true
}

// DialHook passes dials through: a dial happens inside a command, whose
// outcome (ProcessHook) already counts a failed dial.
func (b *breaker) DialHook(next redis.DialHook) redis.DialHook { return next }

func (b *breaker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !b.allow(ctx) {
			cmd.SetErr(errBreakerOpen)
			return errBreakerOpen
		}
		err := next(ctx, cmd)
		b.record(ctx, err)
		return err
	}
}

func (b *breaker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !b.allow(ctx) {
			for _, cmd := range cmds {
				cmd.SetErr(errBreakerOpen)
			}
			return errBreakerOpen
		}
		err := next(ctx, cmds)
		b.record(ctx, err)
		return err
	}
}

// failFast sets the client options that keep a dead or hung Redis from
// holding requests: short timeouts, no retries of commands or dials.
func failFast(opt *redis.Options) {
	opt.DialTimeout = 250 * time.Millisecond
	opt.ReadTimeout = 200 * time.Millisecond
	opt.WriteTimeout = 200 * time.Millisecond
	opt.PoolTimeout = 500 * time.Millisecond
	opt.MaxRetries = -1   // a retry against a dead server only doubles the wait
	opt.DialerRetries = 1 // one attempt per dial (0 would mean the default, 5)
}
