package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"flickrkillr/app/frontcache"
	"flickrkillr/app/obs"
	"flickrkillr/app/topology"
	"flickrkillr/models"
)

// Stage 8: front cache. Stage 7's topology plus a memcached that nginx reads
// whole public pages from (memcached_pass) for visitors without a session:
// a hit runs no application code at all. A miss, or memcached down, falls
// through to an instance, which renders the page and fills it (package
// frontcache, under the key nginx looks up); a write deletes, by URL, the
// pages it changes directly before it answers, and a TTL bounds the rest.
// --front-cache proxy puts nginx's own proxy_cache (a 1 s microcache) in
// memcached's place, to compare.
func init() {
	register(Stage{
		Number:     frontCacheStage,
		Name:       "front-cache",
		Summary:    "nginx answers anonymous visitors' pages from memcached; the instances fill it and delete what a write changes",
		Note:       "**Buys:** anonymous visitors' pages from memcached through nginx, no instance reached. **Shows:** with anonymous visitors (`--anonymous 0.9`), in the front cache's hit ratio per route and the p99 of the listings it answers; the aggregate is bound by what misses (photo pages spread over 1.5M photos) and by the CPU the load tool and nginx share with everything else on one machine. The logged-in mix goes through as at stage 7 (docs/stages/08-front-cache.md).",
		Serve:      serveFrontCache,
		Front:      behindNginx,
		FrontPages: memcachedPages,
		// An instance's gallery and a worker process's alike: a write, or
		// a photo that becomes ready, deletes the pages it changes, or they
		// would show the old page (or the placeholder) until their TTL.
		Gallery: func(d *Deps, inner models.Gallery) (models.Gallery, error) {
			p, err := frontPagesOf(d)
			if p == nil || err != nil {
				return inner, err
			}
			return withFrontPages(d.Log, inner, p), nil
		},
		Topology: true, // `serve --stage 8`: never the default
		Flags:    []Flag{frontCacheFlag},
		Parts:    []any{topologyPart(frontCacheTopology)},
		Panels:   frontCachePanels,
	})
}

// frontCacheSettings are the stage's own settings.
type frontCacheSettings struct {
	Mode string        // FRONT_CACHE, --front-cache: memcached (the default) or proxy
	TTL  time.Duration // FRONT_CACHE_TTL: a filled page's life (default frontcache.DefaultTTL)
	// MemcachedAddr (topology.MemcachedEnv) is set by the supervisor for
	// its instances and worker processes.
	MemcachedAddr string
}

var frontCacheConfig = &setting[frontCacheSettings]{"stage 8"}

// frontCacheFlag is --front-cache, with FRONT_CACHE_TTL and the
// MEMCACHED_ADDR that the supervisor gives its instances.
var frontCacheFlag = Flag{
	Name:     "front-cache",
	Commands: []string{"serve"},
	env: func(c *Config) error {
		frontCacheConfig.set(c, func(s *frontCacheSettings) {
			s.Mode, s.MemcachedAddr, s.TTL = os.Getenv("FRONT_CACHE"), os.Getenv(topology.MemcachedEnv), frontcache.DefaultTTL
		})
		return envValue("FRONT_CACHE_TTL", time.ParseDuration, "%q is not a duration (like 30s)", func(d time.Duration) {
			frontCacheConfig.set(c, func(s *frontCacheSettings) { s.TTL = d })
		})
	},
	flag: func(c *Config, fs *flag.FlagSet) {
		fs.Var(settingValue{
			get: func() string { return frontCacheConfig.of(*c).Mode },
			set: func(v string) error { frontCacheConfig.set(c, func(s *frontCacheSettings) { s.Mode = v }); return nil },
		}, "front-cache", "stage 8: memcached (default) or proxy (nginx's proxy_cache, a 1 s microcache) (env FRONT_CACHE)")
	},
	validate: func(c Config) error {
		s := frontCacheConfig.of(c)
		switch s.Mode {
		case "", topology.FrontMemcached, topology.FrontProxy:
		default:
			return &ConfigError{"FRONT_CACHE", fmt.Sprintf("%q is not a front cache (memcached or proxy)", s.Mode)}
		}
		if s.TTL < time.Second || s.TTL > time.Hour {
			return &ConfigError{"FRONT_CACHE_TTL", fmt.Sprintf("%s is out of range (1s to 1h)", s.TTL)}
		}
		return nil
	},
}

// frontCacheTopology is what the stage adds to stage 7's topology:
// memcached, and nginx looking up the pages of visitors without a session.
func frontCacheTopology(cfg Config, o *topology.Options) {
	o.FrontCache = cmpOrString(frontCacheConfig.of(cfg).Mode, topology.FrontMemcached)
	o.SessionCookie = sessionCookieName
	o.FrontMaxName, o.FrontMaxCursor = frontcache.MaxName, frontcache.MaxCursor // nginx looks up only keys Key gives
	o.Attrs = append(o.Attrs, "front_cache", o.FrontCache)
}

const frontCacheStage = 8

func cmpOrString(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// serveFrontCache is stage 7's supervisor with the front cache.
func serveFrontCache(ctx context.Context, cfg Config, log *slog.Logger) error {
	err := serveTopology(ctx, cfg, log)
	if errors.Is(err, topology.ErrNoMemcached) {
		return &ConfigError{"FRONT_CACHE", "memcached is not installed: stage 8's front cache runs Debian's (`sudo apt-get install memcached`), or use --front-cache proxy"}
	}
	return err
}

// memcachedPages is an instance's front cache: memcached at MEMCACHED_ADDR
// (the supervisor's), none without one (the proxy front cache, or the app
// run on its own), with its fills and deletes on the instance's /metrics.
func memcachedPages(a *App, d *Deps) (FrontPages, error) {
	s, err := frontStore(d)
	if s == nil || err != nil {
		return nil, err
	}
	if a.metrics != nil {
		a.metrics.Registry().MustRegister(frontCacheCollector{s})
	}
	return frontPagesOf(d)
}

// frontPagesOf is the front store as the pages and the writes use it: the
// memcached client, wrapped by what later stages add (their frontPart:
// stage 9 fences the fills), nil without a front cache.
func frontPagesOf(d *Deps) (FrontPages, error) {
	s, err := frontStore(d)
	if s == nil || err != nil {
		return nil, err
	}
	var p FrontPages = s
	st, err := resolveRun(d.Config)
	if err != nil {
		return nil, err
	}
	for _, wrap := range partsOf[frontPart](st) {
		if p, err = wrap(d, p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// frontPart is what a later stage wraps around the front store (a Stage
// part: stage 9's fence).
type frontPart func(d *Deps, p FrontPages) (FrontPages, error)

// frontStore is the process's one client of the memcached at MEMCACHED_ADDR
// (which the supervisor gives its instances and its worker processes), nil
// without one; the gallery's deletes and the pages' fills share it.
func frontStore(d *Deps) (*frontcache.Store, error) {
	fc := frontCacheConfig.of(d.Config)
	if fc.MemcachedAddr == "" {
		return nil, nil
	}
	return theFrontStore.get(d, func() (*frontcache.Store, error) {
		s := frontcache.New(frontcache.Options{Addr: fc.MemcachedAddr, TTL: fc.TTL})
		d.OnClose(s.Close)
		return s, nil
	})
}

var theFrontStore = &resource[*frontcache.Store]{"stage 8's front cache"}

// frontCacheCollector exports an instance's fills and deletes.
type frontCacheCollector struct{ s *frontcache.Store }

var frontOpsDesc = prometheus.NewDesc("flickrkillr_front_cache_ops_total",
	"Stage 8: the instance's front-cache writes: fills and deletes, by result.", []string{"op", "result"}, nil)

func (frontCacheCollector) Describe(ch chan<- *prometheus.Desc) { ch <- frontOpsDesc }

func (c frontCacheCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	for _, v := range []struct {
		op, result string
		n          int64
	}{{"fill", "ok", st.Fills}, {"fill", "error", st.FillErrors}, {"fill", "skipped", st.Skipped},
		{"delete", "ok", st.Deletes}, {"delete", "error", st.DeleteErrors}} {
		ch <- prometheus.MustNewConstMetric(frontOpsDesc, prometheus.CounterValue, float64(v.n), v.op, v.result)
	}
}

// frontCachePanels: memcached's own stats (the supervisor reads them) and the
// instances' fills and deletes.
func frontCachePanels(*obs.Metrics) []obs.Panel {
	const ops = "flickrkillr_front_cache_ops_total"
	mc := func(name string) func(s *obs.Sample) float64 {
		return func(s *obs.Sample) float64 { return s.Rate("flickrkillr_memcached_"+name, nil) }
	}
	return []obs.Panel{
		{ID: "frontcache", Title: "Front cache (memcached) gets", Unit: "gets/s, %", Note: "nginx's lookups; the ratio is hits over gets", Series: []obs.Series{
			{Label: "hits", Value: mc("get_hits")},
			{Label: "misses", Value: mc("get_misses")},
			{Label: "hit ratio %", Value: func(s *obs.Sample) float64 {
				h := mc("get_hits")(s)
				return 100 * obs.Per(h, h+mc("get_misses")(s))
			}},
		}},
		{ID: "frontcachemem", Title: "Front cache memory", Unit: "MB, evictions/s", Series: []obs.Series{
			{Label: "bytes (MB)", Value: func(s *obs.Sample) float64 { return s.Gauge("flickrkillr_memcached_bytes", nil) / (1 << 20) }},
			{Label: "evictions/s", Value: mc("evictions")},
		}},
		{ID: "frontcacheops", Title: "Front cache fills and deletes", Unit: "ops/s", Note: "by the instances", Series: []obs.Series{
			{Label: "fills", Value: func(s *obs.Sample) float64 {
				return s.Rate(ops, both(obs.Label("op", "fill"), obs.Label("result", "ok")))
			}},
			{Label: "deletes", Value: func(s *obs.Sample) float64 {
				return s.Rate(ops, both(obs.Label("op", "delete"), obs.Label("result", "ok")))
			}},
			{Label: "errors", Value: func(s *obs.Sample) float64 { return s.Rate(ops, obs.Label("result", "error")) }},
		}},
	}
}

// forgetPages wraps the gallery: each write deletes, by URL, the front pages
// it changes directly before it returns (so before the handler answers).
// Deeper ?before= pages and the owner's other photo pages ("more from")
// are left to the TTL.
type forgetPages struct {
	models.Gallery
	pages FrontPages
	log   *slog.Logger
}

func (g forgetPages) forget(ctx context.Context, paths ...string) {
	if err := g.pages.Delete(context.WithoutCancel(ctx), paths...); err != nil {
		g.log.Warn("front cache: delete failed; the pages live until their TTL", "paths", paths, "err", err)
	}
}

func listingPaths(owner string, tags []string) []string {
	paths := []string{"/", "/users/" + owner}
	for _, t := range tags {
		paths = append(paths, "/tags/"+t)
	}
	return paths
}

func (g forgetPages) CreatePhoto(ctx context.Context, p models.NewPhoto) (int64, error) {
	id, err := g.Gallery.CreatePhoto(ctx, p)
	if err == nil {
		g.forget(ctx, append(listingPaths(p.Owner.Name, p.Tags), photoPath(id))...)
	}
	return id, err
}

func (g forgetPages) DeletePhoto(ctx context.Context, photoID, userID int64) (models.DeletedPhoto, error) {
	d, err := g.Gallery.DeletePhoto(ctx, photoID, userID)
	if err == nil {
		g.forget(ctx, append(listingPaths(d.Owner, d.Tags), photoPath(photoID))...)
	}
	return d, err
}

func (g forgetPages) SetFavorite(ctx context.Context, userID, photoID int64, on bool) error {
	err := g.Gallery.SetFavorite(ctx, userID, photoID, on)
	if err == nil {
		g.forget(ctx, photoPath(photoID))
	}
	return err
}

func (g forgetPages) AddComment(ctx context.Context, photoID, userID int64, body string) error {
	err := g.Gallery.AddComment(ctx, photoID, userID, body)
	if err == nil {
		g.forget(ctx, photoPath(photoID))
	}
	return err
}

// forgetStates is forgetPages over a gallery with photo states (stage 6): a
// photo that becomes ready (or failed) changes its page and the listings
// that showed its placeholder.
type forgetStates struct {
	forgetPages
	models.PhotoStates
}

func (g forgetStates) FinishPhoto(ctx context.Context, id int64, state string, width, height int) (models.FinishedPhoto, error) {
	f, err := g.PhotoStates.FinishPhoto(ctx, id, state, width, height)
	if err == nil && f.Changed {
		g.forget(ctx, append(listingPaths(f.Owner, f.Tags), photoPath(id))...)
	}
	return f, err
}

// withFrontPages wraps gallery so that its writes delete front pages.
func withFrontPages(log *slog.Logger, gallery models.Gallery, pages FrontPages) models.Gallery {
	fp := forgetPages{Gallery: gallery, pages: pages, log: log}
	if states, ok := gallery.(models.PhotoStates); ok {
		return forgetStates{forgetPages: fp, PhotoStates: states}
	}
	return fp
}
