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
// at once with errBreakerOpen for breakerCooldown, so a dead or hung Redis
// costs a request nothing (the cache reads the database, the session pages
// answer 503) instead of a timeout per command. Then one command goes
// through as a probe: success closes the breaker, failure opens it again.
// Redis's own replies (redis.Nil, a WRONGTYPE error) are successes here:
// the server answered.
type breaker struct {
	failures int           // consecutive failures that open it
	cooldown time.Duration // how long it stays open
	now      func() time.Time

	mu        sync.Mutex
	failed    int
	openUntil time.Time
	probing   bool
}

const (
	breakerFailures = 3
	breakerCooldown = time.Second
)

func newBreaker() *breaker {
	return &breaker{failures: breakerFailures, cooldown: breakerCooldown, now: time.Now}
}

var _ redis.Hook = (*breaker)(nil)

// probeKey marks the context of the probe: the commands go-redis runs on
// a new connection (HELLO, CLIENT SETINFO) go through the hooks with it and
// must pass too, or the probe could never connect.
type probeKey struct{}

// allow says whether a command may go to Redis; probe is true for the one
// command let through when the cool-down has passed.
func (b *breaker) allow(ctx context.Context) (ok, probe bool) {
	if ctx.Value(probeKey{}) != nil {
		return true, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failed < b.failures {
		return true, false
	}
	if b.now().Before(b.openUntil) || b.probing {
		return false, false
	}
	b.probing = true
	return true, true
}

// done records a command's outcome.
func (b *breaker) done(err error, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	if !isConnFailure(err) {
		b.failed = 0
		return
	}
	b.failed++
	if b.failed >= b.failures {
		b.openUntil = b.now().Add(b.cooldown)
	}
}

// open reports whether the breaker is refusing commands now.
func (b *breaker) open() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failed >= b.failures && b.now().Before(b.openUntil)
}

// isConnFailure is a failure to reach Redis or to hear back in time, as
// opposed to an answer (redis.Nil, a server error) or our own caller giving up.
func isConnFailure(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
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
		ok, probe := b.allow(ctx)
		if !ok {
			cmd.SetErr(errBreakerOpen)
			return errBreakerOpen
		}
		if probe {
			ctx = context.WithValue(ctx, probeKey{}, true)
		}
		err := next(ctx, cmd)
		b.done(err, probe)
		return err
	}
}

func (b *breaker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		ok, probe := b.allow(ctx)
		if !ok {
			for _, cmd := range cmds {
				cmd.SetErr(errBreakerOpen)
			}
			return errBreakerOpen
		}
		if probe {
			ctx = context.WithValue(ctx, probeKey{}, true)
		}
		err := next(ctx, cmds)
		b.done(err, probe)
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
