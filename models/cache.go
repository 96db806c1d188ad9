package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"flickrkillr/models/redissessions"
	"flickrkillr/models/timing"
)

// Cache is stage 3's cache-aside in Redis: one mechanism for every value it
// keeps, the gallery's query results (JSON) and the app's rendered HTML.
//
// Every value depends on one or more dependencies (DepPhoto(42),
// DepUser("alice"), DepTag("beach"), DepHome), each with a generation number
// in Redis ("gen:photo:42"), and is stored under a key that includes their
// current numbers. A write increments the generations of what it changed,
// after its transaction commits, so the next read misses and recomputes. A
// reader that raced the write read the old numbers before it loaded, so its
// stale value lands under the old key, where nobody looks again: no
// stale-after-write window.
//
// Because a key's value never changes, the last values read are also kept in
// this process (a small LRU in front of Redis, entries living as long as in
// Redis): a hit then costs one MGET of the generations and no transfer. Misses are computed once per key
// (singleflight), whatever the number of concurrent readers. Redis errors
// fail open: the value is computed as if there were no cache.
type Cache struct {
	rdb     redis.UniversalClient
	ttl     time.Duration
	log     *slog.Logger
	flight  singleflight.Group
	lastLog atomic.Int64
	near    *LRU  // the values last read; their keys carry their generations, so an entry is never stale
	beside  bool  // StoreBeside
	ride    bool  // RideWithSessions: Expect's reads go with the session's load
	fence   Fence // FenceWith: nil, reads are never older than the last commit
}

// NewCache keeps values in Redis for ttl, and up to nearBytes of them in
// this process too (0: none).
func NewCache(rdb redis.UniversalClient, ttl time.Duration, nearBytes int64, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cache{rdb: rdb, ttl: ttl, log: log}
	if nearBytes > 0 {
		c.near = NewLRU(nearBytes, nearBytes/16, ttl)
	}
	return c
}

// StoreBeside makes a miss hand its value back without waiting for Redis to
// store it: the SET runs beside the rest of the request (stage 5), not
// before it. This process has the value at once (the near cache); another
// process that misses in the meantime computes it again, as it would have
// a moment earlier. Call it before the first Load.
func (c *Cache) StoreBeside() { c.beside = true }

// RideWithSessions lets Expect's read of a page's generations ride in the
// session's round trip (redissessions.WithPiggyback), if the session store's
// Redis, sessions, is this cache's own. Generations are bumped in the
// cache's Redis only, so they may be read there only: read from another
// Redis (stage 7 keeps sessions in a durable Redis and the cache in one of
// its own) they are "0" for ever, and a logged-in page is served from its
// first copy long after a write (issue 36: a comment not on its writer's
// next read). Not called, or another Redis: the expected generations are
// read from the cache's Redis in one MGET as the page begins (Prefetch).
// Call it before the first Load.
func (c *Cache) RideWithSessions(sessions redis.UniversalClient) { c.ride = sessions == c.rdb }

// Load is cache-aside for one value named name that depends on deps: look it
// up under the current generations and, on a miss, compute it once with load
// and store it. load says whether its value may be stored (false: use it for
// this request only).
func (c *Cache) Load(ctx context.Context, name string, deps []string, load func(context.Context) (value []byte, store bool, err error)) ([]byte, error) {
	key, err := c.key(ctx, name, deps)
	if err != nil {
		timing.CountLookup(ctx, timing.Failed)
		c.failOpen(err)
		v, _, err := load(ctx)
		return v, err
	}
	if v, ok := c.near.Get(key); ok {
		timing.CountLookup(ctx, timing.Hit)
		return v, nil
	}
	v, err := c.rdb.Get(ctx, key).Bytes()
	switch {
	case err == nil:
		timing.CountLookup(ctx, timing.Hit)
		c.near.Put(key, v)
		return v, nil
	case !errors.Is(err, redis.Nil):
		timing.CountLookup(ctx, timing.Failed)
		c.failOpen(err)
		v, _, err := load(ctx)
		return v, err
	}
	timing.CountLookup(ctx, timing.Miss)
	flight := key
	if c.fence != nil {
		// A write bumped these generations: the value must be read at
		// least as late as that write (the key is the new generations').
		fenced, need, err := c.fence.Require(ctx, deps)
		if err != nil {
			c.failOpen(err)
			v, _, err := load(ctx) // and not stored: nobody knows how old it is
			return v, err
		}
		ctx, flight = fenced, key+" "+need
	}
	// A miss. Concurrent misses on one key share one computation; it runs
	// without the first caller's cancellation so that one impatient client
	// cannot fail the others.
	ch := c.flight.DoChan(flight, func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		v, store, err := load(lctx)
		if err != nil || !store {
			return v, err
		}
		c.near.Put(key, v)
		if c.beside {
			go c.store(context.WithoutCancel(lctx), key, v)
		} else {
			c.store(lctx, key, v)
		}
		return v, nil
	})
	// Each caller still waits only as long as its own request may: a hung
	// database answers this request at its deadline (a 503), not after 30 s.
	var r singleflight.Result
	select {
	case r = <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("models: cache %s: %w", name, ctx.Err())
	}
	if r.Err != nil {
		return nil, r.Err
	}
	return r.Val.([]byte), nil
}

// store keeps v under key in Redis for the cache's TTL.
func (c *Cache) store(ctx context.Context, key string, v []byte) {
	if err := c.rdb.Set(ctx, key, v, c.ttl).Err(); err != nil {
		c.failOpen(err)
	}
}

// Bump increments generations after a write has committed. If Redis is down
// the old entries stay visible until their TTL: logged, and bounded by ttl.
func (c *Cache) Bump(ctx context.Context, deps ...string) {
	if m := memoFrom(ctx); m != nil { // this request reads the new numbers after its write
		m.mu.Lock()
		for _, d := range deps {
			delete(m.gens, d)
		}
		m.mu.Unlock()
	}
	if c.fence != nil { // before the increments: a miss that sees them sees the fence too
		if err := c.fence.Invalidate(context.WithoutCancel(ctx), deps); err != nil {
			c.log.Error("cache fence failed; a fill may keep a value read before this write until its TTL", "deps", deps, "err", err)
		}
	}
	_, err := c.rdb.Pipelined(context.WithoutCancel(ctx), func(p redis.Pipeliner) error {
		for _, d := range deps {
			p.Incr(ctx, "gen:"+d)
		}
		return nil
	})
	if err != nil {
		c.log.Error("cache invalidation failed; entries may be stale until their TTL", "deps", deps, "err", err)
	}
}

// cachedJSON is Load for a value kept as JSON.
func cachedJSON[T any](ctx context.Context, c *Cache, name string, deps []string, load func(context.Context) (T, error)) (T, error) {
	var v T
	b, err := c.Load(ctx, name, deps, func(ctx context.Context) ([]byte, bool, error) {
		v, err := load(ctx)
		if err != nil {
			return nil, false, err
		}
		b, err := json.Marshal(v)
		return b, err == nil, err
	})
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return load(ctx)
	}
	return v, nil
}

// key is "c:<name>@<epoch>.<gen>.<gen>…" with the cache's epoch and the
// current generation numbers. In a request's context (Prefetch) each
// generation is read from Redis once per request, and those the page is
// known to need in one MGET up front.
func (c *Cache) key(ctx context.Context, name string, deps []string) (string, error) {
	deps = withEpoch(deps)
	gens := make([]string, len(deps))
	m := memoFrom(ctx)
	var missing []string
	if m != nil {
		m.mu.Lock()
		for i, d := range deps {
			g, ok := m.gens[d]
			if !ok {
				missing = append(missing, d)
			}
			gens[i] = g
		}
		m.mu.Unlock()
	} else {
		missing = deps
	}
	if len(missing) > 0 {
		vals, err := c.generations(ctx, missing)
		if err != nil {
			return "", err
		}
		if m == nil {
			gens = vals
		} else {
			m.put(missing, vals)
			m.mu.Lock()
			for i, d := range deps {
				gens[i] = m.gens[d]
			}
			m.mu.Unlock()
		}
	}
	if gens[0] == "" { // the first read after the cache Redis started empty
		epoch, err := c.newEpoch(ctx)
		if err != nil {
			return "", err
		}
		gens[0] = epoch
		if m != nil {
			m.put(deps[:1], gens[:1])
		}
	}
	n := 3 + len(name)
	for _, g := range gens {
		n += len(g) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, "c:"...)
	b = append(b, name...)
	b = append(b, '@')
	for i, g := range gens {
		if i > 0 {
			b = append(b, '.')
		}
		b = append(b, g...)
	}
	return string(b), nil
}

// generations reads the current generation numbers of deps in one MGET.
func (c *Cache) generations(ctx context.Context, deps []string) ([]string, error) {
	vals, err := c.rdb.MGet(ctx, genKeys(deps)...).Result()
	if err != nil {
		return nil, err
	}
	return gensFrom(deps, vals), nil
}

// epochDep is the cache's epoch: a random number kept in Redis with the
// generations (never expiring, so never evicted by volatile-lru) and part
// of every key. A cache Redis that restarts empty (it keeps nothing on disk:
// docs/stages/03-cache.md) starts every generation at 0 again, and without
// the epoch this process's near cache would serve what it kept under the
// old "@0" keys, however stale. A new epoch makes every old key unreachable.
const epochDep = "epoch"

// genKeys are the Redis keys of deps' generations.
func genKeys(deps []string) []string {
	keys := make([]string, len(deps))
	for i, d := range deps {
		keys[i] = "gen:" + d
	}
	return keys
}

// gensFrom is an MGET's answer for deps as generation numbers: "0" for one
// never bumped, "" for an epoch not yet made (key makes it).
func gensFrom(deps []string, vals []any) []string {
	gens := make([]string, len(deps))
	for i, v := range vals {
		switch s, ok := v.(string); {
		case ok:
			gens[i] = s
		case deps[i] == epochDep:
			gens[i] = ""
		default:
			gens[i] = "0"
		}
	}
	return gens
}

// newEpoch makes the epoch if no process has yet (SETNX) and reads the one
// that won.
func (c *Cache) newEpoch(ctx context.Context) (string, error) {
	if err := c.rdb.SetNX(ctx, "gen:"+epochDep, strconv.FormatUint(rand.Uint64(), 36), 0).Err(); err != nil {
		return "", err
	}
	return c.rdb.Get(ctx, "gen:"+epochDep).Result()
}

// Expect returns a context in which this request reads each generation at
// most once, and in which deps (what the page is expected to need) wait to
// be read: by the session's load, in its round trip (WithPiggyback), where
// the sessions share the cache's Redis (RideWithSessions), or else by the
// page's Prefetch.
func (c *Cache) Expect(ctx context.Context, deps []string) context.Context {
	if len(deps) == 0 {
		return ctx
	}
	m := memoFrom(ctx)
	if m == nil {
		m = &genMemo{gens: make(map[string]string, len(deps)+2)}
		ctx = context.WithValue(ctx, genMemoKey{}, m)
	}
	m.mu.Lock()
	m.pending = append(m.pending, withEpoch(deps)...)
	m.mu.Unlock()
	if !c.ride {
		return ctx
	}
	pctx := ctx
	return redissessions.WithPiggyback(ctx, func(p redis.Pipeliner) func() { return m.piggyback(pctx, p) })
}

// piggyback adds to p an MGET of the generations the request expects
// (Expect) and has not read yet, and returns what puts its answer into the
// memo (nil: nothing to read).
func (m *genMemo) piggyback(ctx context.Context, p redis.Pipeliner) func() {
	m.mu.Lock()
	deps := m.pending
	m.pending = nil
	m.mu.Unlock()
	if len(deps) == 0 {
		return nil
	}
	cmd := p.MGet(ctx, genKeys(deps)...)
	return func() {
		vals, err := cmd.Result()
		if err != nil || len(vals) != len(deps) {
			return // the lookups read them themselves
		}
		m.put(deps, gensFrom(deps, vals))
	}
}

// withEpoch is deps with the epoch first (every key depends on it).
func withEpoch(deps []string) []string {
	if len(deps) > 0 && deps[0] == epochDep {
		return deps
	}
	return append([]string{epochDep}, deps...)
}

// genMemo is one request's generation numbers, read once: a page's views
// and data share their dependencies (a photo page's view, its favorite star
// and its anonymous whole page all depend on the photo), and a cached page
// should cost one round trip to Redis, not one per value.
type genMemo struct {
	mu      sync.Mutex
	gens    map[string]string
	pending []string // expected, not read yet (Expect)
}

type genMemoKey struct{}

func memoFrom(ctx context.Context) *genMemo {
	m, _ := ctx.Value(genMemoKey{}).(*genMemo)
	return m
}

func (m *genMemo) put(deps, gens []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, d := range deps {
		m.gens[d] = gens[i]
	}
}

// Prefetch returns a context in which this request reads each generation at
// most once, having read those of deps (what the page is expected to need)
// and those it expected (Expect) that are not read yet in one MGET now. A request that raced a write read the old numbers, as a
// single lookup would have: its values land under the old keys. On a Redis
// error it reads nothing now; the lookups then fail open one by one.
func (c *Cache) Prefetch(ctx context.Context, deps []string) context.Context {
	m := memoFrom(ctx)
	if m == nil {
		m = &genMemo{gens: make(map[string]string, len(deps)+2)}
		ctx = context.WithValue(ctx, genMemoKey{}, m)
	}
	m.mu.Lock()
	var missing []string
	for _, d := range append(m.pending, withEpoch(deps)...) {
		if _, ok := m.gens[d]; !ok && !slices.Contains(missing, d) {
			missing = append(missing, d)
		}
	}
	m.pending = nil
	m.mu.Unlock()
	if len(missing) == 0 {
		return ctx
	}
	if gens, err := c.generations(ctx, missing); err == nil {
		m.put(missing, gens)
	}
	return ctx
}

// failOpen logs a Redis error at most every ten seconds (under load every
// request would log it) and lets the caller compute the value.
func (c *Cache) failOpen(err error) {
	now := time.Now().Unix()
	if last := c.lastLog.Load(); now-last >= 10 && c.lastLog.CompareAndSwap(last, now) {
		c.log.Warn("cache unavailable, computing without it", "err", err)
	}
}
