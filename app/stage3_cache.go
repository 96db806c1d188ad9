package app

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"flickrkillr/app/obs"
	"flickrkillr/models"
)

// Stage 3: caching. What costs is kept in Redis (models.Cache: cache-aside
// under generations that every write bumps): the pages' shared views as
// rendered HTML, whole pages for anonymous viewers, and the query results
// behind them (a gallery wrapper with the Gallery's interface). Images are
// kept in memory and sent with an ETag and a long Cache-Control, so a
// browser asks again only with If-None-Match (answered 304) and the disk is
// read once per image.
func init() {
	register(Stage{
		Number:  3,
		Name:    "cache",
		Summary: "cache-aside in Redis for the hot reads; images from memory with ETag/Cache-Control",
		Note:    "**Buys:** the hot reads (and images) without the database. **Shows:** each step alone, on the aggregate; as the tags build it, on `home` (its p99 becomes a cache hit's) and the PostgreSQL CPU per request, while the total p99 is still a miss that scans a table.",
		Panels:  cachePanels,
		// Stage 3: a session is written only when it changes; an unchanged
		// one's expiry moves forward at most once an hour (stages 1-2 rewrite
		// it on every request, the cost they measure). It comes with the
		// cache because a cached page must not cost a session write.
		SessionRefresh: time.Hour,
		Gallery: func(d *Deps, inner models.Gallery) (models.Gallery, error) {
			if sessionRuleOnly() {
				return inner, nil
			}
			cache, err := sharedCache(d)
			if err != nil {
				return nil, err
			}
			return models.NewCachedGallery(inner, cache), nil
		},
		Images: func(d *Deps, inner ImageSource) (ImageSource, error) {
			if sessionRuleOnly() {
				return inner, nil
			}
			return newMemoryImages(inner, 256<<20), nil
		},
		Views: func(d *Deps) (ViewCache, error) {
			if sessionRuleOnly() {
				return renderViews{}, nil
			}
			cache, err := sharedCache(d)
			if err != nil {
				return nil, err
			}
			return newCachedViews(cache), nil
		},
	})
}

// cachePanels are the stage's dashboard panels. Cache lookups are counted
// by the cache itself (models/cache.go, into the request's Timings) and
// summed into flickrkillr_cache_lookups_total, image reads by source into
// flickrkillr_image_reads_total; these panels show what share the cache
// answers.
func cachePanels(m *obs.Metrics) []obs.Panel {
	const lookups, images = "flickrkillr_cache_lookups_total", "flickrkillr_image_reads_total"
	hitRatio := func(s *obs.Sample) float64 {
		hits := s.Rate(lookups, obs.Label("result", "hit"))
		return 100 * obs.Per(hits, hits+s.Rate(lookups, obs.Label("result", "miss", "error")))
	}
	memoryRatio := func(s *obs.Sample) float64 {
		return 100 * obs.Per(s.Rate(images, obs.Label("source", "memory")), s.Rate(images, nil))
	}
	return []obs.Panel{
		{ID: "cache", Title: "Cache hit ratio", Unit: "%", Note: "cache lookups; images from memory", Series: []obs.Series{
			{Label: "cache hits", Value: hitRatio},
			{Label: "images from memory", Value: memoryRatio},
		}},
		{ID: "cacheops", Title: "Cache lookups per second", Unit: "lookups/s", Series: []obs.Series{
			{Label: "hits", Value: func(s *obs.Sample) float64 { return s.Rate(lookups, obs.Label("result", "hit")) }},
			{Label: "misses", Value: func(s *obs.Sample) float64 { return s.Rate(lookups, obs.Label("result", "miss")) }},
			{Label: "errors", Value: func(s *obs.Sample) float64 { return s.Rate(lookups, obs.Label("result", "error")) }},
		}},
	}
}

// sessionRuleOnly is a measuring switch, not a setting: with
// STAGE3_CACHE=off in the server's environment, stage 3 brings its session
// rule (written only when changed) and nothing else, so that the step's
// measurement can give the session rule's share apart from the cache's
// (docs/stages/03-cache.md).
func sessionRuleOnly() bool { return os.Getenv("STAGE3_CACHE") == "off" }

// sharedCache is the one Cache that the gallery and the views (and stage
// 5) share.
func sharedCache(d *Deps) (*models.Cache, error) {
	return theCache.get(d, func() (*models.Cache, error) {
		rdb, err := d.CacheRedis() // the cache Redis, where one is named: it evicts
		if err != nil {
			return nil, err
		}
		// Entries live 10 minutes; the last 64 MB read are also kept in this process.
		c := models.NewCache(rdb, 10*time.Minute, 64<<20, d.Log)
		// A page's generations ride with the session's load only where the
		// sessions are in the cache's Redis (one Redis for all, not stage 7's
		// two roles): they must be read where they are bumped.
		// Without a cache Redis of its own, the cache's is the sessions'.
		if d.Config.RedisCacheURL == "" {
			c.RideWithSessions(rdb)
		}
		if s, err := resolveRun(d.Config); err == nil {
			for _, opt := range partsOf[cacheOption](s) {
				if err := opt(d, c); err != nil {
					return nil, err
				}
			}
		}
		return c, nil
	})
}

// cacheOption is what a later stage changes in how the cache works (a
// Stage part: stage 5 stores a miss beside the rest of the page, stage 9
// fences the fills from replicas).
type cacheOption func(d *Deps, c *models.Cache) error

var theCache = &resource[*models.Cache]{"stage 3's cache"}

// cachedViews keeps views, encoded, in the Cache.
type cachedViews struct {
	cache *models.Cache

	// hints remembers what each view's page depends on (a photo page: the
	// photo and its owner), learnt from the view itself, so that the next
	// request for the page reads all their generations in one round trip
	// before it knows the owner. A dependency that is not in the hint costs
	// one more round trip, never a wrong page. pages remembers which view a
	// page starts with, so that the page's generations can ride with the
	// session's load, before the handler runs (Expect).
	//
	// Both grow with what clients ask for (a listing's every ?before=), so
	// both are bounded in bytes (models.Memo), and pages learns only from a page
	// whose first view rendered (no 404 is remembered), under the page's
	// path and cursor (pageOf), not the whole request URI: a query string
	// of 32 KB that the page ignores costs no memory.
	mu    sync.Mutex
	hints *models.Memo[[]string] // view key → its page's dependencies
	pages *models.Memo[string]   // pageOf(request URI) → its page's first view
}

// maxHintBytes and maxPageBytes bound the two memos (about 100 bytes an
// entry: some 80,000 pages each); a full memo starts over.
const (
	maxHintBytes = 8 << 20
	maxPageBytes = 8 << 20
)

func newCachedViews(cache *models.Cache) *cachedViews {
	return &cachedViews{cache: cache,
		hints: models.NewMemo(maxHintBytes, func(deps []string) int {
			n := 24 // the slice's header
			for _, d := range deps {
				n += 16 + len(d)
			}
			return n
		}),
		pages: models.NewMemo(maxPageBytes, func(key string) int { return len(key) }),
	}
}

func (cv *cachedViews) Expect(ctx context.Context, uri string) context.Context {
	page := pageOf(uri)
	cv.mu.Lock()
	key, _ := cv.pages.Get(page)
	deps, _ := cv.hints.Get(key)
	cv.mu.Unlock()
	return cv.cache.Expect(ctx, deps)
}

// begun marks the page a request began (Begin): when the view named key
// renders, the page is remembered (View).
type begun struct{ page, key string }

type begunKey struct{}

func (cv *cachedViews) Begin(ctx context.Context, uri, key string) context.Context {
	cv.mu.Lock()
	deps, _ := cv.hints.Get(key)
	cv.mu.Unlock()
	ctx = context.WithValue(ctx, begunKey{}, begun{page: pageOf(uri), key: key})
	return cv.cache.Prefetch(ctx, deps)
}

// rendered remembers, once the view named key has rendered (or come from
// the cache), which view the request's page starts with.
func (cv *cachedViews) rendered(ctx context.Context, key string) {
	b, ok := ctx.Value(begunKey{}).(begun)
	if !ok || b.key != key {
		return
	}
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if old, ok := cv.pages.Get(b.page); !ok || old != key {
		cv.pages.Put(strings.Clone(b.page), key) // not a slice of the request URI: that would keep all of it
	}
}

// pageOf is the part of a request URI that names its page: the path
// (decoded, so that /tags/%62each is /tags/beach) and the listing's cursor
// (before=<digits>), the only query parameter any page reads.
func pageOf(uri string) string {
	p, q, _ := strings.Cut(uri, "?")
	if strings.IndexByte(p, '%') >= 0 {
		if u, err := url.PathUnescape(p); err == nil {
			p = u
		}
	}
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		if n, ok := strings.CutPrefix(kv, "before="); ok {
			if n == "" || len(n) > 19 || strings.Trim(n, "0123456789") != "" {
				return p // no page: a 400
			}
			return p + "?before=" + n
		}
	}
	return p
}

// hint keeps the dependencies of key's page: deps and the view's own Deps.
func (cv *cachedViews) hint(key string, deps []string, v View) {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if _, ok := cv.hints.Get(key); ok {
		return
	}
	all := append([]string(nil), deps...)
	for _, d := range v.Deps {
		if !slices.Contains(all, d) {
			all = append(all, d)
		}
	}
	cv.hints.Put(key, all)
}

func (cv *cachedViews) View(ctx context.Context, key string, deps []string, render func(context.Context) (View, error)) (View, error) {
	var rendered *View
	b, err := cv.cache.Load(ctx, "view:"+key, deps, func(ctx context.Context) ([]byte, bool, error) {
		v, err := render(ctx)
		if err != nil {
			return nil, false, err
		}
		rendered = &v
		return encodeView(v), true, nil
	})
	if err != nil {
		return View{}, err
	}
	if rendered != nil {
		cv.hint(key, deps, *rendered)
		cv.rendered(ctx, key)
		return *rendered, nil
	}
	v, err := decodeView(b)
	if err != nil {
		// Not a view (a foreign or truncated value): render it afresh.
		return render(ctx)
	}
	cv.hint(key, deps, v)
	cv.rendered(ctx, key)
	return v, nil
}

// encodeView is a view as bytes: its fields as length-prefixed strings (no
// JSON: HTML would be escaped on the way in and out).
func encodeView(v View) []byte {
	n := len(v.Owner) + len(v.Title) + 32
	for _, d := range v.Deps {
		n += len(d) + 4
	}
	for _, h := range v.HTML {
		n += len(h) + 4
	}
	b := make([]byte, 0, n)
	b = append(b, viewFormat)
	b = binary.AppendUvarint(b, uint64(v.OwnerID))
	b = appendString(b, v.Owner)
	b = appendString(b, v.Title)
	b = binary.AppendUvarint(b, uint64(len(v.Deps)))
	for _, d := range v.Deps {
		b = appendString(b, d)
	}
	b = binary.AppendUvarint(b, uint64(len(v.HTML)))
	for _, h := range v.HTML {
		b = appendString(b, string(h))
	}
	return b
}

// viewFormat is the first byte of an encoded view, changed with the format.
const viewFormat = 1

var errBadView = errors.New("app: not an encoded view")

func decodeView(b []byte) (View, error) {
	var v View
	if len(b) == 0 || b[0] != viewFormat {
		return v, errBadView
	}
	r := byteReader{b: b[1:]}
	v.OwnerID = int64(r.uvarint())
	v.Owner = r.borrowedString()
	v.Title = r.borrowedString()
	if n := r.uvarint(); n > 0 && n < 64 {
		v.Deps = make([]string, n)
		for i := range v.Deps {
			v.Deps[i] = r.borrowedString()
		}
	}
	if n := r.uvarint(); n > 0 && n < 64 {
		v.HTML = make([]template.HTML, n)
		for i := range v.HTML {
			v.HTML[i] = template.HTML(r.borrowedString())
		}
	}
	if r.bad || len(r.b) != 0 || len(v.HTML) == 0 {
		return View{}, errBadView
	}
	return v, nil
}

// memoryImages keeps image bytes in memory (a models.LRU of max bytes).
// Image files never change (a new image gets a new key), so the key is a
// perfect ETag and entries never need invalidating.
type memoryImages struct {
	inner ImageSource
	kept  *models.LRU
}

func newMemoryImages(inner ImageSource, max int64) *memoryImages {
	return &memoryImages{inner: inner, kept: models.NewLRU(max, max, 0)}
}

func (m *memoryImages) Image(ctx context.Context, key string, v models.Variant) (*ImageBlob, error) {
	id := key + "-" + string(v)
	data, ok := m.kept.Get(id)
	if !ok {
		blob, err := m.inner.Image(ctx, key, v)
		if err != nil {
			return nil, err
		}
		data, err = io.ReadAll(blob.Content)
		blob.Close()
		if err != nil {
			return nil, fmt.Errorf("app: read image %s: %w", key, err)
		}
		m.kept.Put(id, data)
	}
	return &ImageBlob{
		Content:      bytes.NewReader(data),
		Size:         int64(len(data)),
		ETag:         `"` + id + `"`,
		CacheControl: "public, max-age=31536000, immutable",
	}, nil
}
