package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"flickrkillr/app/obs"
	"flickrkillr/app/standby"
	"flickrkillr/app/topology"
	"flickrkillr/models"
	"flickrkillr/models/replicas"
)

// Stage 9: read replicas. Stage 8's topology plus R PostgreSQL streaming
// standbys of the primary (package standby: a base backup, a replication
// slot, supervised like every other process), each pooled by PgBouncer.
// The stores' reads go to a standby, their writes and transactions to the
// primary (package replicas: the Database hook, under every store). A user
// who wrote reads their write on the next page: the primary's WAL position
// after their write is kept for them in the shared Redis, and their reads
// go only to a standby that has replayed past it. A cache fill (stage 3's,
// stage 8's pages) is never older than the write that invalidated it.
func init() {
	register(Stage{
		Number:   replicasStage,
		Name:     "replicas",
		Summary:  "PostgreSQL streaming standbys take the reads; a user who wrote reads their write at once",
		Note:     "**Buys:** reads spread over R standbys while the primary keeps the writes, each user still seeing their own writes on the next page. **Shows:** where the primary's host bounds stage 8 (the scale model, `--model` with a replica host each): the primary's CPU per request falls and the logged-in mix rises; on one shared machine the standbys' replay and the extra hop cost what they save (docs/stages/09-replicas.md).",
		Serve:    serveReplicas,
		Database: routeReads,
		Requests: readYourWrites,
		Topology: true, // `serve --stage 9`: never the default
		Flags:    replicaFlags(),
		Parts: []any{
			topologyPart(replicasTopology),
			cacheOption(fenceCache),
			frontPart(fencePages),
		},
		Panels: replicasPanels,
	})
}

const replicasStage = 9

// replicaPool is an instance's most connections to one standby, opened at
// start within replicaWarmWait (models.Warm): each costs a SCRAM handshake
// with its PgBouncer, and three pools of 80 per instance, opened under load,
// made a storm of them on the scale model's hosts.
const replicaPool, replicaWarmWait = 16, 10 * time.Second

// replicaSettings are the stage's own settings.
type replicaSettings struct {
	Count    int           // REPLICAS, --replicas: the standbys the supervisor makes (default 2; 0: none)
	Delay    time.Duration // REPLICA_DELAY, --replica-delay: recovery_min_apply_delay of the made standbys (a fixed lag, to test with)
	MaxLag   time.Duration // REPLICA_MAX_LAG, --replica-max-lag: a standby further behind leaves the rotation (default 5 s)
	URLs     []string      // REPLICA_URLS: standbys given (a deployment's), or made by the supervisor for its instances
	PoolURLs []string      // topology.ReplicaPoolEnv: the same through PgBouncer, set by the supervisor
}

var replicaConfig = &setting[replicaSettings]{"stage 9"}

const defaultMaxLag = 5 * time.Second

func replicaFlags() []Flag {
	set := func(c *Config, change func(*replicaSettings)) { replicaConfig.set(c, change) }
	return []Flag{
		intFlag(replicaConfig, func(s *replicaSettings) *int { return &s.Count }, "replicas", "REPLICAS",
			func() int { return 2 }, 0, 8, "replicas", "stage 9: streaming standbys of the primary that take the reads (env REPLICAS; 0: none, stage 8's reads)", "serve"),
		durationFlag(replicaConfig, func(s *replicaSettings) *time.Duration { return &s.Delay }, "replica-delay", "REPLICA_DELAY",
			time.Millisecond, time.Minute, "stage 9: hold each made standby this far behind the primary (recovery_min_apply_delay; a test of read-your-writes)", "serve"),
		durationFlag(replicaConfig, func(s *replicaSettings) *time.Duration { return &s.MaxLag }, "replica-max-lag", "REPLICA_MAX_LAG",
			100*time.Millisecond, 10*time.Minute, "stage 9: a standby further behind leaves the rotation: the most a visitor sees another's write late (default 5s)", "serve"),
		{
			// REPLICA_URLS only: a deployment's standbys, or the supervisor's
			// to its instances and workers; no command takes it as a flag.
			Name: "replica-urls",
			env: func(c *Config) error {
				split := func(v string) []string {
					if v == "" {
						return nil
					}
					return strings.Split(v, ",")
				}
				set(c, func(s *replicaSettings) {
					s.URLs, s.PoolURLs = split(os.Getenv("REPLICA_URLS")), split(os.Getenv(topology.ReplicaPoolEnv))
				})
				return nil
			},
			validate: func(c Config) error {
				s := replicaConfig.of(c)
				for _, u := range s.URLs {
					if !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
						return &ConfigError{"REPLICA_URLS", "is not a comma-separated list of postgres:// URLs"}
					}
				}
				if len(s.PoolURLs) > 0 && len(s.PoolURLs) != len(s.URLs) {
					return &ConfigError{topology.ReplicaPoolEnv, "must name as many pooled URLs as REPLICA_URLS names replicas"}
				}
				return nil
			},
		},
	}
}

func maxLagOf(cfg Config) time.Duration { return cmp.Or(replicaConfig.of(cfg).MaxLag, defaultMaxLag) }

// serveReplicas is stage 8's supervisor with the standbys; a primary that
// cannot feed them is a configuration error with its fix.
func serveReplicas(ctx context.Context, cfg Config, log *slog.Logger) error {
	err := serveFrontCache(ctx, cfg, log)
	if errors.Is(err, standby.ErrPrimaryNotReady) {
		return &ConfigError{"DATABASE_URL", "stage 9 streams the primary's WAL to its standbys, and this PostgreSQL runs wal_level=minimal (the project-local clusters do, for the seed's speed): " +
			"`scripts/pg.sh replication dev` turns replication on (one restart), or give standbys you run in REPLICA_URLS"}
	}
	if errors.Is(err, standby.ErrNoBinaries) {
		return &ConfigError{"REPLICAS", "stage 9 makes its standbys with PostgreSQL's server tools (pg_basebackup, postgres), which are not installed here: `sudo apt-get install postgresql`, or give standbys in REPLICA_URLS"}
	}
	return err
}

// replicasTopology is what the stage adds to the topology: R standbys made
// from the primary (unless REPLICA_URLS names some), supervised as services
// and pooled by PgBouncer, and their URLs in every instance's and worker's
// environment.
func replicasTopology(cfg Config, o *topology.Options) {
	rs := replicaConfig.of(cfg)
	urls := rs.URLs
	if len(urls) == 0 && rs.Count > 0 {
		ports := topology.FreePorts(rs.Count) // held by the topology until each standby starts
		for i, port := range ports {
			svc, url := standbyService(cfg, o.Addr, i+1, port, rs.Delay)
			o.Services = append(o.Services, svc)
			urls = append(urls, url)
		}
	}
	if o.PgBouncer != nil {
		for i, u := range urls { // each in its standby's host (a given one's: a host of that name)
			o.PgBouncer.Replicas = append(o.PgBouncer.Replicas, topology.PooledServer{URL: u, Host: replicaHost(i + 1)})
		}
	}
	env := []string{"REPLICA_URLS=" + strings.Join(urls, ","), "REPLICA_MAX_LAG=" + maxLagOf(cfg).String()}
	if instanceEnv := o.Env; instanceEnv != nil {
		o.Env = func(name, addr, admin, redisURL string) []string {
			return append(instanceEnv(name, addr, admin, redisURL), env...)
		}
	}
	if workerEnv := o.WorkerEnv; workerEnv != nil { // PostgreSQL itself for the primary's position, as an instance has
		o.WorkerEnv = func(name, admin, redisURL string) []string {
			return append(workerEnv(name, admin, redisURL), append(env, "WATCHDOG_DATABASE_URL="+cfg.DatabaseURL)...)
		}
	}
	o.Attrs = append(o.Attrs, "replicas", len(urls), "replica_max_lag", maxLagOf(cfg))
}

// standbyService is the i-th standby of the topology at nginx's addr, made
// when the topology starts (slot flickrkillr_<port>_replica<i>), restarted
// when it dies (it catches up from its slot), removed with its slot.
func standbyService(cfg Config, addr string, i, port int, delay time.Duration) (topology.Service, string) {
	_, nginxPort, _ := net.SplitHostPort(addr)
	dir, _ := filepath.Abs(filepath.Join(".run", "replicas-"+nginxPort, fmt.Sprintf("replica-%d", i)))
	o := standby.Options{PrimaryURL: primaryURL(cfg), Dir: dir, Port: port,
		Slot: fmt.Sprintf("flickrkillr_%s_replica%d", nginxPort, i), ApplyDelay: delay}
	name := fmt.Sprintf("replica-%d", i)
	u, _ := url.Parse(cfg.DatabaseURL) // validated by Config
	u.Host = fmt.Sprintf("127.0.0.1:%d", port)
	s := standby.Supervise(o)
	return topology.Service{
		Name: name, Role: "PostgreSQL standby (reads)", Addr: u.Host, Host: replicaHost(i), HostRole: "db",
		Prepare: s.Prepare, Command: s.Command, Cred: s.Cred, StopSignal: standby.StopSignal, Ready: s.Ready, Remove: s.Remove,
		Status: func(ctx context.Context) string {
			lag, err := standby.ReadLag(ctx, u.String(), o.PrimaryURL)
			if err != nil {
				return "lag unknown (" + err.Error() + ")"
			}
			return fmt.Sprintf("lag %d bytes, %.1f s", lag.Bytes, lag.Seconds)
		},
	}, u.String()
}

// primaryURL is PostgreSQL itself, not PgBouncer: where the standbys are
// copied from and the poller reads the primary's position.
func primaryURL(cfg Config) string { return cmpOrString(cfg.WatchdogURL, cfg.DatabaseURL) }

// replicaHost is standby i's scale-model host, a database ("db-…") host.
func replicaHost(i int) string { return fmt.Sprintf("db-replica%d", i) }

// routeReads is the stage's Database hook: with replicas (REPLICA_URLS),
// the stores are built on a handle whose reads go to them.
func routeReads(d *Deps, db *gorm.DB) (*gorm.DB, error) {
	r, err := replicaRouter(d, db)
	if r == nil || err != nil {
		return db, err
	}
	return r.DB()
}

var theRouter = &resource[*replicas.Router]{"stage 9's router"}

// replicaRouter is the process's one Router over primary and the replicas
// of REPLICA_URLS (through REPLICA_POOL_URLS, PgBouncer's, when set), its
// poller running until the Deps close; nil without replicas.
func replicaRouter(d *Deps, primary *gorm.DB) (*replicas.Router, error) {
	rs := replicaConfig.of(d.Config)
	if len(rs.URLs) == 0 || primary == nil {
		return nil, nil
	}
	return theRouter.get(d, func() (*replicas.Router, error) {
		pooled := rs.PoolURLs
		// A small pool per standby (replicaPool): its PgBouncer queues the rest.
		opts := models.Options{MaxOpenConns: min(models.PoolSize(primary), replicaPool), Pooler: len(pooled) > 0, StatementTimeout: requestTimeout}
		if len(pooled) == 0 {
			pooled = rs.URLs
		}
		ctx, stop := context.WithCancel(context.Background())
		var list []replicas.Replica
		for i, u := range rs.URLs {
			db, err := models.Open(ctx, pooled[i], opts)
			if err != nil {
				stop()
				return nil, fmt.Errorf("app: replica %d: %w", i+1, err)
			}
			d.OnClose(func() error { models.Close(db); return nil })
			wctx, cancel := context.WithTimeout(ctx, replicaWarmWait)
			if err := models.Warm(wctx, db, opts.MaxOpenConns); err != nil {
				d.Log.Warn("replica pool not warm; the rest open as requests need them", "replica", i+1, "err", err)
			}
			cancel()
			list = append(list, replicas.Replica{Name: fmt.Sprintf("replica-%d", i+1), URL: u, DB: db})
		}
		// Only the requests the Requests hook tracks read the standbys: a
		// worker's job (a photo it was just handed) reads the primary.
		r := replicas.New(primary, primaryURL(d.Config), list, replicas.Options{MaxLag: maxLagOf(d.Config), TrackedOnly: true})
		r.Start(ctx) // returns after a first round of positions
		d.OnClose(func() error { stop(); return nil })
		return r, nil
	})
}

// stickyFor is how long a user's reads need the position of their last
// write: until every standby in the rotation has it, which a standby
// lagging more than the max lag has not (it leaves the rotation), plus a
// second for the poller's view.
func stickyFor(cfg Config) time.Duration { return maxLagOf(cfg) + time.Second }

// readYourWrites is the stage's Requests hook: a logged-in user's reads
// need the position kept after their last write (in the durable Redis,
// with the sessions, so every instance sees it), and a request that wrote
// keeps the primary's position for its user (the new one after a sign-up
// or a log-in) before its response leaves.
func readYourWrites(a *App, d *Deps) (echo.MiddlewareFunc, error) {
	r, err := replicaRouter(d, d.DB)
	if r == nil || err != nil {
		return nil, err
	}
	rdb, err := d.Redis()
	if err != nil {
		return nil, err
	}
	sticky := replicas.NewRedisSticky(rdb, "rw:")
	if a.metrics != nil {
		a.metrics.Registry().MustRegister(replicaCollector{r})
	}
	ttl := stickyFor(d.Config)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			var user string
			if u, ok := currentUser(c); ok {
				user = strconv.FormatInt(u.ID, 10)
			}
			ctx, err := replicas.ForUser(c.Request().Context(), sticky, user)
			if err != nil {
				a.log.Warn("app: the user's last write position is unreadable; their reads go to the primary", "err", err)
			}
			c.SetRequest(c.Request().WithContext(ctx))
			c.Response().Before(func() {
				id := a.sessions.GetInt64(ctx, sessUserID) // after a sign-up or log-in: the new user
				if id == 0 {
					return
				}
				// Not cancelled with the request: a client gone after its write
				// still has the write to see when it comes back.
				if err := r.Keep(context.WithoutCancel(ctx), sticky, strconv.FormatInt(id, 10), ttl); err != nil {
					a.log.Error("app: could not keep the user's write position; their next page may miss it for up to the max lag", "err", err)
				}
			})
			return next(c)
		}
	}, nil
}

// theFence is the process's fence, nil without replicas. Its marks live in
// the durable Redis: in the cache Redis, which evicts, a mark evicted
// before its time would let a fill from a lagging standby be stored. A
// mark lives until every standby in the rotation has the write, plus the
// longest a request may take between its reads and its fill.
func theFence(d *Deps) (*replicas.Fence, error) {
	r, err := replicaRouter(d, d.DB)
	if r == nil || err != nil {
		return nil, err
	}
	return fenceOf.get(d, func() (*replicas.Fence, error) {
		rdb, err := d.Redis()
		if err != nil {
			return nil, err
		}
		return replicas.NewFence(r, rdb, "fence:", stickyFor(d.Config)+requestTimeout), nil
	})
}

var fenceOf = &resource[*replicas.Fence]{"stage 9's fence"}

// fencedFills counts the front pages whose reads were older than a mark.
var fencedFills atomic.Int64

// fenceCache is the stage's part of stage 3's cache: a miss after a
// write's bump reads at least as late as that write (Require), from a
// standby that has replayed it or from the primary, and what it stores is
// as new as the bump said.
func fenceCache(d *Deps, c *models.Cache) error {
	f, err := theFence(d)
	if f != nil {
		c.FenceWith(f)
	}
	return err
}

// fencePages is the stage's part of stage 8's front store: a write's
// deletion marks the pages it deletes, and a page rendered from reads
// older than the mark is not filled (the visitor gets it; the next miss,
// a moment later, fills a fresh one). The front page is rendered before
// anyone can say which rows it will need, so it is checked, not required.
func fencePages(d *Deps, p FrontPages) (FrontPages, error) {
	f, err := theFence(d)
	if f == nil || err != nil {
		return p, err
	}
	return f.Pages(p, d.Log, &fencedFills), nil
}

// replicaCollector exports the Router's counters and each replica's state
// as this instance sees it.
type replicaCollector struct{ r *replicas.Router }

var (
	dbStatementsDesc = prometheus.NewDesc("flickrkillr_db_statements_total",
		"Stage 9: statements sent, by database (primary, replica-N) and kind (read, write).", []string{"db", "kind"}, nil)
	primaryReadsDesc = prometheus.NewDesc("flickrkillr_replica_primary_reads_total",
		"Stage 9: reads sent to the primary, by why: freshness (no standby had the user's position), no_replica, forced, fallback (failed on a standby).", []string{"why"}, nil)
	replicaLagBytesDesc = prometheus.NewDesc("flickrkillr_replica_lag_bytes", "Stage 9: a standby's replay position behind the primary's, at the last poll.", []string{"replica"}, nil)
	replicaLagDesc      = prometheus.NewDesc("flickrkillr_replica_lag_seconds", "Stage 9: since the last commit a lagging standby replayed.", []string{"replica"}, nil)
	replicaInDesc       = prometheus.NewDesc("flickrkillr_replica_in_rotation", "Stage 9: 1 while a standby takes reads.", []string{"replica"}, nil)
	replicaSeenDesc     = prometheus.NewDesc("flickrkillr_replica_observers", "Stage 9: 1 per standby this process polls (the dashboard's mean of the instances' views).", []string{"replica"}, nil)
	replicaMaxLagDesc   = prometheus.NewDesc("flickrkillr_replica_max_lag_seconds", "Stage 9: the lag past which a standby leaves the rotation (the setting, per standby).", []string{"replica"}, nil)
	fencedFillsDesc     = prometheus.NewDesc("flickrkillr_front_fills_fenced_total", "Stage 9: front pages not filled because their reads were older than a write's mark.", nil, nil)
)

func (c replicaCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c replicaCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.r.Stats()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(dbStatementsDesc, st.Primary.Reads, "primary", "read")
	counter(dbStatementsDesc, st.Primary.Writes, "primary", "write")
	counter(primaryReadsDesc, st.FreshnessReads, "freshness")
	counter(primaryReadsDesc, st.NoReplicaReads, "no_replica")
	counter(primaryReadsDesc, st.ForcedReads, "forced")
	counter(primaryReadsDesc, st.Fallbacks, "fallback")
	for _, rs := range st.Replicas {
		counter(dbStatementsDesc, rs.Reads, rs.Name, "read")
		gauge(replicaLagBytesDesc, float64(rs.LagBytes), rs.Name)
		gauge(replicaLagDesc, rs.LagSeconds, rs.Name)
		in := 0.0
		if rs.InRotation {
			in = 1
		}
		gauge(replicaInDesc, in, rs.Name)
		gauge(replicaSeenDesc, 1, rs.Name)
		gauge(replicaMaxLagDesc, st.MaxLag.Seconds(), rs.Name)
	}
	counter(fencedFillsDesc, fencedFills.Load())
}

// replicasPanels: the statements per database, why reads went to the
// primary, and the standbys' lag against the max lag. The supervisor sums
// the instances' metrics: the lag is their mean view (over the observers).
func replicasPanels(*obs.Metrics) []obs.Panel {
	stmts := func(db, kind string) func(s *obs.Sample) float64 {
		return func(s *obs.Sample) float64 {
			return s.Rate("flickrkillr_db_statements_total", both(obs.Label("db", db), obs.Label("kind", kind)))
		}
	}
	primaryReads := func(why string) func(s *obs.Sample) float64 {
		return func(s *obs.Sample) float64 {
			return s.Rate("flickrkillr_replica_primary_reads_total", obs.Label("why", why))
		}
	}
	mean := func(name string) func(s *obs.Sample) float64 {
		return func(s *obs.Sample) float64 {
			return obs.Per(s.Gauge(name, nil), s.Gauge("flickrkillr_replica_observers", nil))
		}
	}
	return []obs.Panel{
		{ID: "replicastatements", Title: "Statements per database", Unit: "statements/s", Note: "reads on the standbys, writes and fresh reads on the primary", Series: []obs.Series{
			{Label: "primary writes", Value: stmts("primary", "write")},
			{Label: "primary reads", Value: stmts("primary", "read")},
			{Label: "standby reads", Value: func(s *obs.Sample) float64 {
				return s.Rate("flickrkillr_db_statements_total", both(obs.Label("kind", "read"), func(l map[string]string) bool { return l["db"] != "primary" }))
			}},
		}},
		{ID: "replicaprimaryreads", Title: "Reads sent to the primary", Unit: "reads/s", Note: "freshness: no standby had replayed the user's last write (or the request wrote)", Series: []obs.Series{
			{Label: "freshness", Value: primaryReads("freshness")},
			{Label: "no standby", Value: primaryReads("no_replica")},
			{Label: "failed on a standby", Value: primaryReads("fallback")},
			{Label: "fenced front fills", Value: func(s *obs.Sample) float64 { return s.Rate("flickrkillr_front_fills_fenced_total", nil) }},
		}},
		{ID: "replicalag", Title: "Standby lag", Unit: "seconds, KB, standbys", Note: "the mean over standbys and instances; a standby past the max lag leaves the rotation", Series: []obs.Series{
			{Label: "lag (s)", Value: mean("flickrkillr_replica_lag_seconds")},
			{Label: "lag (KB)", Value: func(s *obs.Sample) float64 { return mean("flickrkillr_replica_lag_bytes")(s) / 1024 }},
			{Label: "max lag (s)", Value: mean("flickrkillr_replica_max_lag_seconds")},
			{Label: "in rotation %", Value: func(s *obs.Sample) float64 { return 100 * mean("flickrkillr_replica_in_rotation")(s) }},
		}},
	}
}
