package app

import (
	"context"

	"golang.org/x/sync/errgroup"

	"flickrkillr/models"
)

// Stage 5: fan-out. A page's independent lookups (models.Lookups: the
// photo's row, tags, favorite count and comments; the viewer's favorite star
// beside the page's views; the home page's two queries; a user's photo count
// and grid) run at once with errgroup instead of one after another, so a page
// waits for its longest chain of round trips rather than their sum. Cache
// lookups are lookups too: the viewer's star (a Redis lookup, and a query
// behind a miss) runs beside the photo's views. And a cache miss no longer
// waits for Redis to store what it computed: the SET runs beside the rest of
// the page (models.Cache.StoreBeside). Nothing else changes: the same
// queries, the same cache entries, the same bytes (stage 4's schema).
//
// errgroup answers the caveats of the write-up this stage retells: the first
// error cancels the others' context and is the one returned (errors do not
// propagate by themselves), each lookup gets the request's ctx explicitly,
// and it helps waiting, not computing.
func init() {
	register(Stage{
		Number:  5,
		Name:    "fanout",
		Summary: "a page's independent lookups run concurrently (errgroup)",
		Note:    "**Buys:** a page's independent lookups at once (errgroup), so a page waits for its longest chain of round trips, not their sum. **Shows:** with `--db-latency 1ms`, on the `photo` p50 (in `sweep.json`) and p99; at loopback (a round trip of microseconds) it buys no latency and, on a CPU-bound machine, costs throughput.",
		Pool:    fanOutPool,
		Lookups: func(d *Deps) (models.Lookups, error) { return fanOut{limit: fanOutLimit}, nil },
		// A miss hands its value back without waiting for Redis to store
		// it: the SET runs beside the rest of the page.
		Parts: []any{cacheOption(func(_ *Deps, c *models.Cache) error { c.StoreBeside(); return nil })},
	})
}

// fanOutLimit bounds the lookups one Run has in flight: the photo page's
// widest step has four (the photo and its owner, tags, favorite count,
// comments), so no page is slowed by it; a caller with more waits for a
// slot rather than taking the whole pool.
const fanOutLimit = 4

// fanOutPool is the database pool at stage 5. Before it, a request holds at
// most one connection at a time, and the pool of 20 (models.Open) serves 20
// requests in their queries at once. A photo page now holds up to five at
// once (its four lookups, plus the viewer's favorite star beside them), so
// 20 connections would serve four such pages and queue the fifth: the pool
// would undo the fan-out. 16 pages × 5 = 80 connections, well under the
// PostgreSQL's max_connections (100 by default, 200 in scripts/pg.sh's
// clusters). Redis's pool (64, Deps.Redis) is already wider than 16 pages
// × 3 cache lookups in flight.
const fanOutPool = 80

// fanOut runs lookups at once, at most limit at a time, and cancels the
// others' context at the first error.
type fanOut struct{ limit int }

func (f fanOut) Run(ctx context.Context, fns ...func(context.Context) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(f.limit)
	for _, fn := range fns {
		g.Go(func() error { return fn(ctx) })
	}
	return g.Wait()
}
