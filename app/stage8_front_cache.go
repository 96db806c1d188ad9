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
		Serve:      serveFrontCache,
		Front:      behindNginx,
		FrontPages: memcachedPages,
		Topology:   true, // `serve --stage 8`: never the default
	})
	registerFlag("front-cache", stageFlag{
		commands: []string{"serve"},
		env: func(c *Config) error {
			c.FrontCache = os.Getenv("FRONT_CACHE")
			c.MemcachedAddr = os.Getenv(topology.MemcachedEnv)
			c.FrontCacheTTL = frontcache.DefaultTTL
			return envValue("FRONT_CACHE_TTL", time.ParseDuration, "%q is not a duration (like 30s)", func(d time.Duration) { c.FrontCacheTTL = d })
		},
		flag: func(c *Config, fs *flag.FlagSet) {
			fs.StringVar(&c.FrontCache, "front-cache", c.FrontCache, "stage 8: memcached (default) or proxy (nginx's proxy_cache, a 1 s microcache) (env FRONT_CACHE)")
		},
		validate: func(c Config) error {
			switch c.FrontCache {
			case "", topology.FrontMemcached, topology.FrontProxy:
			default:
				return &ConfigError{"FRONT_CACHE", fmt.Sprintf("%q is not a front cache (memcached or proxy)", c.FrontCache)}
			}
			if c.FrontCacheTTL < time.Second || c.FrontCacheTTL > time.Hour {
				return &ConfigError{"FRONT_CACHE_TTL", fmt.Sprintf("%s is out of range (1s to 1h)", c.FrontCacheTTL)}
			}
			return nil
		},
	})
	topologyOptions = append(topologyOptions, func(cfg Config, o *topology.Options) {
		if cfg.Stage < frontCacheStage {
			return
		}
		o.FrontCache = cmpOrString(cfg.FrontCache, topology.FrontMemcached)
		o.SessionCookie = sessionCookieName
		o.Attrs = append(o.Attrs, "front_cache", o.FrontCache)
	})
	registerPanels(frontCacheStage, frontCachePanels)
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
// run on its own).
func memcachedPages(a *App, d *Deps) (FrontPages, error) {
	cfg := d.Config
	if cfg.MemcachedAddr == "" {
		return nil, nil
	}
	s := frontcache.New(frontcache.Options{Addr: cfg.MemcachedAddr, TTL: cfg.FrontCacheTTL})
	d.OnClose(s.Close)
	if a.metrics != nil {
		a.metrics.Registry().MustRegister(frontCacheCollector{s})
	}
	return s, nil
}

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
