// Package timing is one request's record of where its time went: the parts
// of its Server-Timing header (database, cache, session, render), its SQL
// statements, cache lookups and Redis round trips. It is a leaf: package obs
// reads a request's Timings (the header, the metrics), package models writes
// into it (the pgx tracer, the Redis hook, the cache's lookups), and neither
// has to import the other for it.
package timing

import (
	"context"
	"sync/atomic"
	"time"
)

// Part is where a request's time goes, as its Server-Timing header names it.
type Part int

// The parts of a request. Each moment of a request is counted in at most one
// of them; what none of them holds is "other" (handler code, encoding, the
// network write).
const (
	DB      Part = iota // SQL statements of the page (not the session's)
	Cache               // Redis commands of the cache (stage 3)
	Session             // session store operations, whatever the store
	Render              // template execution (minus any lookup done inside it)
	numParts
)

// String is the part's Server-Timing name.
func (p Part) String() string {
	return [...]string{"db", "cache", "session", "render"}[p]
}

// Timings is one request's record of where its time went. It is safe for
// concurrent use (a page may run lookups concurrently). The recorders (models'
// pgx tracer and Redis hook) write into the Timings of their context; a
// request without one costs them a context lookup.
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

// With returns a context that records into a new Timings.
func With(ctx context.Context) (context.Context, *Timings) {
	t := &Timings{}
	return context.WithValue(ctx, timingsKey{}, &frame{t: t, part: -1}), t
}

// From returns the Timings ctx records into, or nil.
func From(ctx context.Context) *Timings {
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
	f := &frame{t: outer.t, part: p, absorb: p == Session}
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

// Record counts a lookup of d (an SQL statement when query, a Redis command
// otherwise) in part p of the Timings of ctx, if any: unless an absorbing
// frame (the session store) holds it, and then the enclosing frame is told.
func Record(ctx context.Context, p Part, d time.Duration, query bool) {
	f := frameFrom(ctx)
	if f == nil {
		return
	}
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

// RoundTrip counts one round trip to Redis in the Timings of ctx, if any.
func RoundTrip(ctx context.Context) {
	if f := frameFrom(ctx); f != nil {
		f.t.redisTrips.Add(1)
	}
}

// Lookup is the outcome of one cache lookup.
type Lookup int

// The outcomes of a cache lookup.
const (
	Hit Lookup = iota
	Miss
	Failed
)

// CountLookup counts one cache lookup in the Timings of ctx, if any. The
// cache counts its own lookups (not a Redis hook): a hit may come from its
// in-process copy without a Redis command, and one lookup is several commands.
func CountLookup(ctx context.Context, l Lookup) {
	f := frameFrom(ctx)
	if f == nil {
		return
	}
	switch l {
	case Hit:
		f.t.cacheHits.Add(1)
	case Miss:
		f.t.cacheMisses.Add(1)
	default:
		f.t.cacheErrors.Add(1)
	}
}
