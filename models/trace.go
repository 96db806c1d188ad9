package models

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// Part is where a request's time goes, as its Server-Timing header names it.
type Part int

// The parts of a request. Each moment of a request is counted in at most one
// of them; what none of them holds is "other" (handler code, encoding, the
// network write).
const (
	PartDB      Part = iota // SQL statements of the page (not the session's)
	PartCache               // Redis commands of the cache (stage 3)
	PartSession             // session store operations, whatever the store
	PartRender              // template execution (minus any lookup done inside it)
	numParts
)

// String is the part's Server-Timing name.
func (p Part) String() string {
	return [...]string{"db", "cache", "session", "render"}[p]
}

// Timings is one request's record of where its time went. It is safe for
// concurrent use (a page may run lookups concurrently). The pgx tracer and the
// Redis hook of this file write into the Timings of their context; a request
// without one costs them a context lookup.
type Timings struct {
	dur         [numParts]atomic.Int64 // nanoseconds
	queries     [numParts]atomic.Int64 // SQL statements, per part (db and session)
	cacheHits   atomic.Int64
	cacheMisses atomic.Int64
	cacheErrors atomic.Int64
	redisTrips  atomic.Int64 // Redis round trips: a command or a pipeline
}

// Dur is the time spent in part p.
func (t *Timings) Dur(p Part) time.Duration { return time.Duration(t.dur[p].Load()) }

// Queries is the number of SQL statements sent on behalf of part p.
func (t *Timings) Queries(p Part) int64 { return t.queries[p].Load() }

// SQL is the number of SQL statements of the whole request.
func (t *Timings) SQL() int64 {
	var n int64
	for p := range numParts {
		n += t.queries[p].Load()
	}
	return n
}

// Cache is the number of cache lookups that hit, missed and failed.
func (t *Timings) Cache() (hits, misses, errs int64) {
	return t.cacheHits.Load(), t.cacheMisses.Load(), t.cacheErrors.Load()
}

// RedisRoundTrips is the number of round trips to Redis (a command, or a
// pipeline as a whole), the session's and the cache's together. A near-cache
// hit is a cache hit without one.
func (t *Timings) RedisRoundTrips() int64 { return t.redisTrips.Load() }

// Add counts d in part p.
func (t *Timings) Add(p Part, d time.Duration) { t.dur[p].Add(int64(d)) }

// frame is the innermost timed part a context is in. A frame that absorbs
// (the session store) counts the lookups made inside it as its own time; one
// that does not (render) leaves them to their own parts and keeps only the rest.
type frame struct {
	t      *Timings
	part   Part
	absorb bool
	nested atomic.Int64 // time of the lookups counted in their own parts
}

type timingsKey struct{}

// WithTimings returns a context that records into a new Timings.
func WithTimings(ctx context.Context) (context.Context, *Timings) {
	t := &Timings{}
	return context.WithValue(ctx, timingsKey{}, &frame{t: t, part: -1}), t
}

// TimingsFrom returns the Timings ctx records into, or nil.
func TimingsFrom(ctx context.Context) *Timings {
	if f := frameFrom(ctx); f != nil {
		return f.t
	}
	return nil
}

func frameFrom(ctx context.Context) *frame {
	f, _ := ctx.Value(timingsKey{}).(*frame)
	return f
}

// Time starts timing part p (render, session) in the Timings of ctx; call the
// returned function when it ends. The context it returns is the one to pass
// to the work: lookups made with it are attributed as described on frame.
// Without Timings in ctx it does nothing.
func Time(ctx context.Context, p Part) (context.Context, func()) {
	outer := frameFrom(ctx)
	if outer == nil {
		return ctx, func() {}
	}
	f := &frame{t: outer.t, part: p, absorb: p == PartSession}
	start := time.Now()
	return context.WithValue(ctx, timingsKey{}, f), func() {
		elapsed := time.Since(start)
		own := elapsed
		if !f.absorb {
			own -= time.Duration(f.nested.Load())
		}
		f.t.Add(p, max(own, 0))
		outer.nested.Add(int64(elapsed)) // the enclosing frame does not count it again
	}
}

// record counts a lookup of d in part p, unless an absorbing frame (the
// session store) holds it, and says so to the enclosing frame.
func (f *frame) record(p Part, d time.Duration, query bool) {
	if f.absorb {
		p = f.part
		d = 0 // the frame times itself
	} else {
		f.nested.Add(int64(d))
	}
	f.t.Add(p, d)
	if query {
		f.t.queries[p].Add(1)
	}
}

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
	if frameFrom(ctx) != nil {
		ctx = context.WithValue(ctx, queryStartKey{}, time.Now())
	}
	return ctx
}

func (tt timingTracer) TraceQueryEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	if f := frameFrom(ctx); f != nil {
		if start, ok := ctx.Value(queryStartKey{}).(time.Time); ok {
			f.record(PartDB, time.Since(start), true)
		}
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
// RedisSessionStore) as session time, the others as cache time. A GET
// outside the session store is a cache lookup, counted as a hit, a miss or
// an error.
type RedisTimingHook struct{}

var _ redis.Hook = RedisTimingHook{}

// DialHook is not timed: a dial is part of the command that needed it.
func (RedisTimingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook times one command.
func (RedisTimingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		f := frameFrom(ctx)
		if f == nil {
			return next(ctx, cmd)
		}
		start := time.Now()
		err := next(ctx, cmd)
		f.record(redisPart(cmd), time.Since(start), false)
		if !connSetup(cmd) {
			f.t.redisTrips.Add(1)
		}
		return err
	}
}

// ProcessPipelineHook times a pipeline as a whole, in the part of its first command.
func (RedisTimingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		f := frameFrom(ctx)
		if f == nil || len(cmds) == 0 {
			return next(ctx, cmds)
		}
		start := time.Now()
		err := next(ctx, cmds)
		f.record(redisPart(cmds[0]), time.Since(start), false)
		if !connSetup(cmds[0]) {
			f.t.redisTrips.Add(1)
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

func redisPart(cmd redis.Cmder) Part {
	if key, ok := redisKey(cmd); ok && strings.HasPrefix(key, "session:") {
		return PartSession
	}
	return PartCache
}

func redisKey(cmd redis.Cmder) (string, bool) {
	args := cmd.Args()
	if len(args) < 2 {
		return "", false
	}
	key, ok := args[1].(string)
	return key, ok
}

// Lookup outcomes of the cache (cache.go), counted per request.
type lookup int

const (
	lookupHit lookup = iota
	lookupMiss
	lookupError
)

// countLookup counts one cache lookup in the Timings of ctx, if any. The
// cache counts its own lookups (not a Redis hook): a hit may come from its
// in-process copy without a Redis command, and one lookup is several commands.
func countLookup(ctx context.Context, l lookup) {
	f := frameFrom(ctx)
	if f == nil {
		return
	}
	switch l {
	case lookupHit:
		f.t.cacheHits.Add(1)
	case lookupMiss:
		f.t.cacheMisses.Add(1)
	default:
		f.t.cacheErrors.Add(1)
	}
}
