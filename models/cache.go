package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
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
	near    *LRU // the values last read; their keys carry their generations, so an entry is never stale
	beside  bool // StoreBeside
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

// Load is cache-aside for one value named name that depends on deps: look it
// up under the current generations and, on a miss, compute it once with load
// and store it. load says whether its value may be stored (false: use it for
// this request only).
func (c *Cache) Load(ctx context.Context, name string, deps []string, load func(context.Context) (value []byte, store bool, err error)) ([]byte, error) {
	key, err := c.key(ctx, name, deps)
	if err != nil {
		countLookup(ctx, lookupError)
		c.failOpen(err)
		v, _, err := load(ctx)
		return v, err
	}
	if v, ok := c.near.Get(key); ok {
		countLookup(ctx, lookupHit)
		return v, nil
	}
	v, err := c.rdb.Get(ctx, key).Bytes()
	switch {
	case err == nil:
		countLookup(ctx, lookupHit)
		c.near.Put(key, v)
		return v, nil
	case !errors.Is(err, redis.Nil):
		countLookup(ctx, lookupError)
		c.failOpen(err)
		v, _, err := load(ctx)
		return v, err
	}
	countLookup(ctx, lookupMiss)
	// A miss. Concurrent misses on one key share one computation; it runs
	// without the first caller's cancellation so that one impatient client
	// cannot fail the others.
	ch := c.flight.DoChan(key, func() (any, error) {
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

// key is "c:<name>@<gen>.<gen>…" with the current generation numbers. In a
// request's context (Prefetch) each generation is read from Redis once per
// request, and those the page is known to need in one MGET up front.
func (c *Cache) key(ctx context.Context, name string, deps []string) (string, error) {
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

// generations reads the current generation numbers of deps in one MGET ("0"
// for one never bumped).
func (c *Cache) generations(ctx context.Context, deps []string) ([]string, error) {
	keys := make([]string, len(deps))
	for i, d := range deps {
		keys[i] = "gen:" + d
	}
	vals, err := c.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	gens := make([]string, len(deps))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			gens[i] = s
		} else {
			gens[i] = "0"
		}
	}
	return gens, nil
}

// Expect returns a context in which this request reads each generation at
// most once, and in which deps (what the page is expected to need) wait to
// be read: by the session's load, in its round trip (WithPiggyback), or
// else by the page's Prefetch.
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
	m.pending = append(m.pending, deps...)
	m.mu.Unlock()
	pctx := ctx
	return WithPiggyback(ctx, func(p redis.Pipeliner) func() { return m.piggyback(pctx, p) })
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
	keys := make([]string, len(deps))
	for i, d := range deps {
		keys[i] = "gen:" + d
	}
	cmd := p.MGet(ctx, keys...)
	return func() {
		vals, err := cmd.Result()
		if err != nil || len(vals) != len(deps) {
			return // the lookups read them themselves
		}
		gens := make([]string, len(deps))
		for i, v := range vals {
			if s, ok := v.(string); ok {
				gens[i] = s
			} else {
				gens[i] = "0"
			}
		}
		m.put(deps, gens)
	}
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
	for _, d := range append(m.pending, deps...) {
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

// CachedGallery is stage 3's gallery: the PostgreSQL one behind a Cache, with
// the same interface, so that handlers cannot tell. It keeps the results
// that several pages share (a user's grid is also "more from" on each of
// their photos), the image keys and the favorite stars. The home, photo and
// tag pages are read only to render their views, which the app keeps as
// HTML in the same Cache: keeping their data too would store each twice.
type CachedGallery struct {
	inner Gallery
	cache *Cache
}

// NewCachedGallery wraps inner with cache.
func NewCachedGallery(inner Gallery, cache *Cache) *CachedGallery {
	return &CachedGallery{inner: inner, cache: cache}
}

var _ Gallery = (*CachedGallery)(nil)

// Home is read through: the home view is what is kept.
func (g *CachedGallery) Home(ctx context.Context) (HomePage, error) { return g.inner.Home(ctx) }

// Photo is read through: the photo's view is what is kept.
func (g *CachedGallery) Photo(ctx context.Context, id int64) (PhotoPage, error) {
	return g.inner.Photo(ctx, id)
}

// ImageKey is cached until the photo is deleted.
func (g *CachedGallery) ImageKey(ctx context.Context, id int64) (string, error) {
	return cachedJSON(ctx, g.cache, "imagekey:"+strconv.FormatInt(id, 10), []string{DepPhoto(id)},
		func(ctx context.Context) (string, error) { return g.inner.ImageKey(ctx, id) })
}

// UserPhotos is cached until the user uploads or deletes a photo.
func (g *CachedGallery) UserPhotos(ctx context.Context, name string, before int64) (UserPage, error) {
	return cachedJSON(ctx, g.cache, "user:"+name+":"+strconv.FormatInt(before, 10), []string{DepUser(name)},
		func(ctx context.Context) (UserPage, error) { return g.inner.UserPhotos(ctx, name, before) })
}

// TagPhotos is read through: the tag's view is what is kept.
func (g *CachedGallery) TagPhotos(ctx context.Context, tag string, before int64) (TagPage, error) {
	return g.inner.TagPhotos(ctx, tag, before)
}

// IsFavorite is cached per user and photo until the photo's next change.
func (g *CachedGallery) IsFavorite(ctx context.Context, userID, photoID int64) (bool, error) {
	return cachedJSON(ctx, g.cache, "fav:"+strconv.FormatInt(photoID, 10)+":"+strconv.FormatInt(userID, 10), []string{DepPhoto(photoID)},
		func(ctx context.Context) (bool, error) { return g.inner.IsFavorite(ctx, userID, photoID) })
}

// CreatePhoto invalidates the home page, the owner's pages and the tags' pages.
func (g *CachedGallery) CreatePhoto(ctx context.Context, p NewPhoto) (int64, error) {
	id, err := g.inner.CreatePhoto(ctx, p)
	if err != nil {
		return id, err
	}
	g.cache.Bump(ctx, ListingDeps(p.Owner.Name, p.Tags)...)
	return id, nil
}

// DeletePhoto invalidates the photo, the home page, the owner's and the tags' pages.
func (g *CachedGallery) DeletePhoto(ctx context.Context, photoID, userID int64) (DeletedPhoto, error) {
	d, err := g.inner.DeletePhoto(ctx, photoID, userID)
	if err != nil {
		return d, err
	}
	g.cache.Bump(ctx, append(ListingDeps(d.Owner, d.Tags), DepPhoto(photoID))...)
	return d, nil
}

// SetFavorite invalidates the photo (its count and the viewer's star).
func (g *CachedGallery) SetFavorite(ctx context.Context, userID, photoID int64, on bool) error {
	if err := g.inner.SetFavorite(ctx, userID, photoID, on); err != nil {
		return err
	}
	g.cache.Bump(ctx, DepPhoto(photoID))
	return nil
}

// AddComment invalidates the photo.
func (g *CachedGallery) AddComment(ctx context.Context, photoID, userID int64, body string) error {
	if err := g.inner.AddComment(ctx, photoID, userID, body); err != nil {
		return err
	}
	g.cache.Bump(ctx, DepPhoto(photoID))
	return nil
}
