package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// CachedGallery is stage 3: cache-aside in Redis in front of another Gallery.
//
// Every cached value depends on one or more generations ("gen:photo:42",
// "gen:user:alice", "gen:tag:beach", "gen:home") and is stored under a key
// that includes their current numbers. A write increments the generations of
// what it changed, after its transaction commits, so the next read misses and
// recomputes. A reader that raced the write stored its stale value under the
// old generation, where nobody looks again: no stale-after-write window.
//
// Misses are computed once per key (singleflight), whatever the number of
// concurrent readers. Redis errors fail open: the read goes to the database.
type CachedGallery struct {
	inner   Gallery
	rdb     redis.UniversalClient
	ttl     time.Duration
	log     *slog.Logger
	flight  singleflight.Group
	lastLog atomic.Int64
}

// NewCachedGallery wraps inner with a Redis cache whose entries live for ttl.
func NewCachedGallery(inner Gallery, rdb redis.UniversalClient, ttl time.Duration, log *slog.Logger) *CachedGallery {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &CachedGallery{inner: inner, rdb: rdb, ttl: ttl, log: log}
}

var _ Gallery = (*CachedGallery)(nil)

func genPhoto(id int64) string   { return "photo:" + strconv.FormatInt(id, 10) }
func genUser(name string) string { return "user:" + name }
func genTag(name string) string  { return "tag:" + name }

const genHome = "home"

// Home is cached until an upload or a delete.
func (g *CachedGallery) Home(ctx context.Context) (HomePage, error) {
	return cached(ctx, g, "home", []string{genHome}, g.inner.Home)
}

// Photo is cached until the photo is favorited, commented or deleted.
func (g *CachedGallery) Photo(ctx context.Context, id int64) (PhotoPage, error) {
	return cached(ctx, g, fmt.Sprintf("photo:%d", id), []string{genPhoto(id)},
		func(ctx context.Context) (PhotoPage, error) { return g.inner.Photo(ctx, id) })
}

// ImageKey is cached until the photo is deleted.
func (g *CachedGallery) ImageKey(ctx context.Context, id int64) (string, error) {
	return cached(ctx, g, fmt.Sprintf("imagekey:%d", id), []string{genPhoto(id)},
		func(ctx context.Context) (string, error) { return g.inner.ImageKey(ctx, id) })
}

// UserPhotos is cached until the user uploads or deletes a photo.
func (g *CachedGallery) UserPhotos(ctx context.Context, name string, before int64) (UserPage, error) {
	return cached(ctx, g, fmt.Sprintf("user:%s:%d", name, before), []string{genUser(name)},
		func(ctx context.Context) (UserPage, error) { return g.inner.UserPhotos(ctx, name, before) })
}

// TagPhotos is cached until a photo with the tag is uploaded or deleted.
func (g *CachedGallery) TagPhotos(ctx context.Context, tag string, before int64) (TagPage, error) {
	return cached(ctx, g, fmt.Sprintf("tag:%s:%d", tag, before), []string{genTag(tag)},
		func(ctx context.Context) (TagPage, error) { return g.inner.TagPhotos(ctx, tag, before) })
}

// IsFavorite is cached per user and photo until the photo's next change.
func (g *CachedGallery) IsFavorite(ctx context.Context, userID, photoID int64) (bool, error) {
	return cached(ctx, g, fmt.Sprintf("fav:%d:%d", photoID, userID), []string{genPhoto(photoID)},
		func(ctx context.Context) (bool, error) { return g.inner.IsFavorite(ctx, userID, photoID) })
}

// CreatePhoto invalidates the home page, the owner's pages and the tags' pages.
func (g *CachedGallery) CreatePhoto(ctx context.Context, p NewPhoto) (int64, error) {
	id, err := g.inner.CreatePhoto(ctx, p)
	if err != nil {
		return id, err
	}
	gens := []string{genHome, genUser(p.Owner.Name)}
	for _, t := range p.Tags {
		gens = append(gens, genTag(t))
	}
	g.bump(ctx, gens...)
	return id, nil
}

// DeletePhoto invalidates the photo, the home page, the owner's and the tags' pages.
func (g *CachedGallery) DeletePhoto(ctx context.Context, photoID, userID int64) (DeletedPhoto, error) {
	d, err := g.inner.DeletePhoto(ctx, photoID, userID)
	if err != nil {
		return d, err
	}
	gens := []string{genPhoto(photoID), genHome, genUser(d.Owner)}
	for _, t := range d.Tags {
		gens = append(gens, genTag(t))
	}
	g.bump(ctx, gens...)
	return d, nil
}

// SetFavorite invalidates the photo (its count and the viewer's star).
func (g *CachedGallery) SetFavorite(ctx context.Context, userID, photoID int64, on bool) error {
	if err := g.inner.SetFavorite(ctx, userID, photoID, on); err != nil {
		return err
	}
	g.bump(ctx, genPhoto(photoID))
	return nil
}

// AddComment invalidates the photo.
func (g *CachedGallery) AddComment(ctx context.Context, photoID, userID int64, body string) error {
	if err := g.inner.AddComment(ctx, photoID, userID, body); err != nil {
		return err
	}
	g.bump(ctx, genPhoto(photoID))
	return nil
}

// cached is cache-aside for one value: read the generations, look up the
// value under them, and on a miss compute it once and store it.
func cached[T any](ctx context.Context, g *CachedGallery, name string, gens []string, load func(context.Context) (T, error)) (T, error) {
	key, err := g.key(ctx, name, gens)
	if err != nil {
		g.failOpen(err)
		return load(ctx)
	}
	b, err := g.rdb.Get(ctx, key).Bytes()
	switch {
	case err == nil:
		var v T
		if jerr := json.Unmarshal(b, &v); jerr == nil {
			return v, nil
		}
	case !errors.Is(err, redis.Nil):
		g.failOpen(err)
		return load(ctx)
	}
	// A miss. Concurrent misses on one key share one computation; it runs
	// without the first caller's cancellation so that one impatient client
	// cannot fail the others.
	ch := g.flight.DoChan(key, func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		v, err := load(lctx)
		if err != nil {
			return v, err
		}
		if b, err := json.Marshal(v); err == nil {
			if err := g.rdb.Set(lctx, key, b, g.ttl).Err(); err != nil {
				g.failOpen(err)
			}
		}
		return v, nil
	})
	// Each caller still waits only as long as its own request may: a hung
	// database answers this request at its deadline (a 503), not after 30 s.
	var r singleflight.Result
	select {
	case r = <-ch:
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("models: cache %s: %w", name, ctx.Err())
	}
	if r.Err != nil {
		var zero T
		return zero, r.Err
	}
	return r.Val.(T), nil
}

// key is "c:<name>@<gen>.<gen>…" with the current generation numbers.
func (g *CachedGallery) key(ctx context.Context, name string, gens []string) (string, error) {
	keys := make([]string, len(gens))
	for i, gen := range gens {
		keys[i] = "gen:" + gen
	}
	vals, err := g.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	sb.WriteString("c:")
	sb.WriteString(name)
	sb.WriteByte('@')
	for i, v := range vals {
		if i > 0 {
			sb.WriteByte('.')
		}
		if s, ok := v.(string); ok {
			sb.WriteString(s)
		} else {
			sb.WriteByte('0')
		}
	}
	return sb.String(), nil
}

// bump increments generations after a write has committed. If Redis is down
// the old entries stay visible until their TTL: logged, and bounded by ttl.
func (g *CachedGallery) bump(ctx context.Context, gens ...string) {
	_, err := g.rdb.Pipelined(context.WithoutCancel(ctx), func(p redis.Pipeliner) error {
		for _, gen := range gens {
			p.Incr(ctx, "gen:"+gen)
		}
		return nil
	})
	if err != nil {
		g.log.Error("cache invalidation failed; entries may be stale until their TTL", "gens", gens, "err", err)
	}
}

// failOpen logs a Redis error at most every ten seconds (under load every
// request would log it) and lets the caller go to the database.
func (g *CachedGallery) failOpen(err error) {
	now := time.Now().Unix()
	if last := g.lastLog.Load(); now-last >= 10 && g.lastLog.CompareAndSwap(last, now) {
		g.log.Warn("cache unavailable, reading from the database", "err", err)
	}
}
