package models

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"flickrkillr/models/timing"
)

// timingTracer is the pgx QueryTracer that records every statement's time
// into the Timings of its context; next (the tests' counter) sees it too,
// and progress (the watchdog) counts its start and end.
type timingTracer struct {
	next     pgx.QueryTracer
	progress Progress
}

type queryStartKey struct{}

func (tt timingTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if tt.progress != nil {
		tt.progress.Begin()
		ctx = tt.bind(ctx) // the watchdog's trip ends it (probe.go)
	}
	if tt.next != nil {
		ctx = tt.next.TraceQueryStart(ctx, conn, data)
	}
	if timing.From(ctx) != nil {
		ctx = context.WithValue(ctx, queryStartKey{}, time.Now())
	}
	return ctx
}

func (tt timingTracer) TraceQueryEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	if start, ok := ctx.Value(queryStartKey{}).(time.Time); ok { // set only when ctx records
		timing.Record(ctx, timing.DB, time.Since(start), true)
	}
	if tt.progress != nil {
		unbind(ctx)
		tt.progress.End(Answered(data.Err))
	}
	if tt.next != nil {
		tt.next.TraceQueryEnd(ctx, conn, data)
	}
}

// RedisTimingHook records the time of Redis commands into the Timings of
// their context, and counts their round trips: commands on session keys ("session:", see
// redissessions.Store) as session time, the others as cache time. A GET
// outside the session store is a cache lookup, counted as a hit, a miss or
// an error.
type RedisTimingHook struct{}

var _ redis.Hook = RedisTimingHook{}

// DialHook is not timed: a dial is part of the command that needed it.
func (RedisTimingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook times one command.
func (RedisTimingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if timing.From(ctx) == nil {
			return next(ctx, cmd)
		}
		start := time.Now()
		err := next(ctx, cmd)
		timing.Record(ctx, redisPart(cmd), time.Since(start), false)
		if !connSetup(cmd) {
			timing.RoundTrip(ctx)
		}
		return err
	}
}

// ProcessPipelineHook times a pipeline as a whole, in the part of its first command.
func (RedisTimingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if timing.From(ctx) == nil || len(cmds) == 0 {
			return next(ctx, cmds)
		}
		start := time.Now()
		err := next(ctx, cmds)
		timing.Record(ctx, redisPart(cmds[0]), time.Since(start), false)
		if !connSetup(cmds[0]) {
			timing.RoundTrip(ctx)
		}
		return err
	}
}

// connSetup reports whether cmd is one the client sends to set up a new
// connection (HELLO, CLIENT SETINFO, AUTH, SELECT): a dial's cost, which the
// pool pays once per connection, not a round trip the page asked for.
func connSetup(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "client", "auth", "select":
		return true
	}
	return false
}

func redisPart(cmd redis.Cmder) timing.Part {
	if key, ok := redisKey(cmd); ok && strings.HasPrefix(key, "session:") {
		return timing.Session
	}
	return timing.Cache
}

func redisKey(cmd redis.Cmder) (string, bool) {
	args := cmd.Args()
	if len(args) < 2 {
		return "", false
	}
	key, ok := args[1].(string)
	return key, ok
}
