package guard

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrRedisOpen is what a Redis command returns while its breaker is open.
var ErrRedisOpen = fmt.Errorf("app: Redis %w", ErrOpen)

// NewRedisBreaker is a Breaker for a Redis client: it counts connection
// failures and timeouts (IsRedisFailure) and probes with ping. Add it to the
// client with RedisHook.
func NewRedisBreaker(ping func(ctx context.Context) error, done <-chan struct{}) *Breaker {
	return NewBreaker(BreakerOptions{IsFailure: IsRedisFailure, Probe: ping, Done: done})
}

// RedisHook is b as a go-redis hook: a command passes only while b allows
// it, and its outcome is recorded. The probe's commands (and those go-redis
// runs on a new connection, HELLO and CLIENT SETINFO) pass the open breaker.
func RedisHook(b *Breaker) redis.Hook { return redisHook{b} }

type redisHook struct{ b *Breaker }

// DialHook passes dials through: a dial happens inside a command, whose
// outcome (ProcessHook) already counts a failed dial.
func (h redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !h.b.Allow(ctx) {
			cmd.SetErr(ErrRedisOpen)
			return ErrRedisOpen
		}
		start := time.Now()
		err := next(ctx, cmd)
		h.b.RecordSince(ctx, err, start)
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !h.b.Allow(ctx) {
			for _, cmd := range cmds {
				cmd.SetErr(ErrRedisOpen)
			}
			return ErrRedisOpen
		}
		start := time.Now()
		err := next(ctx, cmds)
		h.b.RecordSince(ctx, err, start)
		return err
	}
}

// IsRedisFailure is a failure to reach Redis or to hear back in time, as
// opposed to an answer (redis.Nil, a server error), our own caller giving up,
// or a wait for a free connection of our own pool (our load, not Redis's
// health: a hung Redis shows as read timeouts on the connections it holds).
func IsRedisFailure(err error) bool {
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

// FailFast sets the client options that keep a dead or hung Redis from
// holding requests: bounded timeouts, no retries of commands or dials. The
// read timeout is a second, not less: under overload (512 load-tool users
// on one stage-6 server, the embedded miniredis sharing its two cores)
// session reads took over 200 ms, the earlier timeout, and failed pages of
// a Redis that was only slow (docs/reliability.md). A hung Redis is told
// apart by the breaker (no answer to any call meanwhile), not by this.
func FailFast(opt *redis.Options) {
	opt.DialTimeout = 250 * time.Millisecond
	opt.ReadTimeout = time.Second
	opt.WriteTimeout = time.Second
	opt.PoolTimeout = 500 * time.Millisecond
	opt.MaxRetries = -1   // a retry against a dead server only doubles the wait
	opt.DialerRetries = 1 // one attempt per dial (0 would mean the default, 5)
}
