package app

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"flickrkillr/app/guard"
	"flickrkillr/app/obs"
	"flickrkillr/app/scalemodel"
	"flickrkillr/app/topology"
	"flickrkillr/models"
	"flickrkillr/templates"
)

// Stage 7: scale-out. `serve --stage 7` becomes a supervisor (package
// topology): it starts a redis-server that every instance shares (unless
// REDIS_URL names one), N app instances (this binary again, each on its own
// loopback port, sharing nothing but PostgreSQL, Redis and the photo files),
// and nginx in front, which spreads requests over them and serves the
// stylesheet and the photo files from disk itself. An instance that dies is
// restarted; SIGHUP restarts them one at a time; Ctrl-C stops everything.
func init() {
	register(Stage{
		Number:  scaleOutStage,
		Name:    "scale-out",
		Summary: "N app instances behind nginx, sharing nothing; nginx serves the stylesheet and photo files",
		Note:    "**Buys:** instances that can be killed or replaced without a failed GET or a lost session, and photo files served by nginx from disk. **Shows:** on the image routes (`thumb`, `image`: nginx's sendfile, a p99 of milliseconds) and in the CPU table (the server side counts nginx, the instances and the supervisor); on one shared machine the pages pay nginx's hop, so the aggregate moves little (docs/stages/07-scale-out.md).",
		Serve:   serveTopology,
		Front:   behindNginx,
		// The instances count log-in and sign-up failures together in the
		// Redis they share: N instances allow the attempts one allows. The
		// gates (bcrypt, the decode budget) guard a process's CPU and
		// memory and stay per process.
		Throttles: func(d *Deps) (names, addrs failureThrottle, err error) {
			rdb, err := d.Redis()
			if err != nil {
				return nil, nil, err
			}
			return guard.NewSharedThrottle(rdb, "throttle:name:", maxNameFailures, failureWindow),
				guard.NewSharedThrottle(rdb, "throttle:addr:", maxAddrFailures, failureWindow), nil
		},
		Topology: true, // `serve --stage 7`: never the default
		Flags:    scaleOutFlags(),
		Panels:   scaleOutPanels,
	})
}

// scaleOutSettings are the stage's own settings.
type scaleOutSettings struct {
	Instances int // INSTANCES: the app instances behind nginx (default 2)
	// UPSTREAMS (--upstream, repeatable): instances on other hosts,
	// host:port, which the supervisor fronts and does not start.
	Upstreams []string
	// TRUSTED_PROXIES (--trusted-proxies): the addresses whose
	// X-Forwarded-For an instance believes (IPs or CIDRs; loopback
	// always): nginx's, as the instance sees it.
	TrustedProxies []*net.IPNet
	// WORKER_PROCS: image-worker processes beside the instances (0: the
	// instances make the images themselves).
	WorkerProcs int
	// PGBOUNCER=0 (--pgbouncer=false): the instances connect to PostgreSQL
	// directly, each with its own pool, to compare.
	NoPgBouncer bool
	// REDIS_CACHE_MAXMEMORY (--cache-maxmemory): the maxmemory of the cache
	// Redis (empty: topology.DefaultCacheMaxMemory).
	CacheMaxMemory string
}

var scaleOut = &setting[scaleOutSettings]{"stage 7"}

// scaleOutFlags are the stage's variables and flags: the topology's shape
// (instances, worker processes, remote instances), whom an instance trusts
// for the client's address, PgBouncer on or off, the cache Redis's memory.
func scaleOutFlags() []Flag {
	set := func(c *Config, change func(*scaleOutSettings)) { scaleOut.set(c, change) }
	return []Flag{
		intFlag(scaleOut, func(s *scaleOutSettings) *int { return &s.Instances }, "instances", "INSTANCES",
			func() int { return 2 }, 1, 32, "instances", "stage 7: app instances behind nginx (env INSTANCES)", "serve"),
		intFlag(scaleOut, func(s *scaleOutSettings) *int { return &s.WorkerProcs }, "worker-procs", "WORKER_PROCS",
			func() int { return 0 }, 0, 32, "worker processes",
			"stage 7: `flickrkillr worker` processes beside the instances, supervised and on the dashboard, each with --workers;\n0: the instances make the images (env WORKER_PROCS)", "serve"),
		{
			Name:     "upstream",
			Commands: []string{"serve"},
			env: func(c *Config) error {
				if v := os.Getenv("UPSTREAMS"); v != "" {
					set(c, func(s *scaleOutSettings) { s.Upstreams = strings.Split(v, ",") })
				}
				return nil
			},
			flag: func(c *Config, fs *flag.FlagSet) {
				fs.Func("upstream", "stage 7: an instance on another host (host:port) to front instead of starting instances; repeatable\n(env UPSTREAMS, comma-separated). It runs `flickrkillr instance` with STAGE=7, DATABASE_URL and REDIS_URL\nof the shared servers, and TRUSTED_PROXIES naming this host", func(u string) error {
					set(c, func(s *scaleOutSettings) { s.Upstreams = append(s.Upstreams, u) })
					return nil
				})
			},
			validate: func(c Config) error {
				upstreams := scaleOut.of(c).Upstreams
				for _, u := range upstreams {
					if _, _, err := net.SplitHostPort(u); err != nil {
						return &ConfigError{"UPSTREAMS", fmt.Sprintf("%q is not host:port", u)}
					}
				}
				if c.Model != "" && len(upstreams) > 0 {
					return &ConfigError{"MODEL", "the instances of --upstream run on other machines, which the model cannot place: run them without --model"}
				}
				return nil
			},
		},
		{
			Name:     "trusted-proxies",
			Commands: []string{"serve"},
			env: func(c *Config) error {
				v := os.Getenv("TRUSTED_PROXIES")
				if v == "" {
					return nil
				}
				nets, err := parseProxies(v)
				if err != nil {
					return &ConfigError{"TRUSTED_PROXIES", err.Error()}
				}
				set(c, func(s *scaleOutSettings) { s.TrustedProxies = nets })
				return nil
			},
			flag: func(c *Config, fs *flag.FlagSet) {
				fs.Func("trusted-proxies", "stage 7: addresses (IPs or CIDRs, comma-separated) whose X-Forwarded-For an instance believes,\nbesides loopback: nginx's as the instances see it (env TRUSTED_PROXIES)", func(v string) error {
					nets, err := parseProxies(v)
					set(c, func(s *scaleOutSettings) { s.TrustedProxies = nets })
					return err
				})
			},
			validate: func(Config) error { return nil },
		},
		{
			Name:     "pgbouncer",
			Commands: []string{"serve"},
			env: func(c *Config) error {
				return envValue("PGBOUNCER", strconv.ParseBool, "%q is not a boolean (1 or 0)", func(on bool) {
					set(c, func(s *scaleOutSettings) { s.NoPgBouncer = !on })
				})
			},
			flag: func(c *Config, fs *flag.FlagSet) {
				fs.BoolFunc("pgbouncer", "stage 7: the instances reach PostgreSQL through one PgBouncer (transaction pooling), on by default;\n--pgbouncer=false connects each instance's pool directly, to compare (env PGBOUNCER)", func(v string) error {
					on, err := strconv.ParseBool(v)
					set(c, func(s *scaleOutSettings) { s.NoPgBouncer = !on })
					return err
				})
			},
			validate: func(Config) error { return nil },
		},
		{
			Name:     "cache-maxmemory",
			Commands: []string{"serve"},
			env: func(c *Config) error {
				set(c, func(s *scaleOutSettings) { s.CacheMaxMemory = os.Getenv("REDIS_CACHE_MAXMEMORY") })
				return nil
			},
			flag: func(c *Config, fs *flag.FlagSet) {
				fs.Var(settingValue{
					get: func() string { return scaleOut.of(*c).CacheMaxMemory },
					set: func(v string) error { set(c, func(s *scaleOutSettings) { s.CacheMaxMemory = v }); return nil },
				}, "cache-maxmemory", "stage 7: the maxmemory of the topology's cache Redis, which evicts past it (volatile-lru;\ndefault "+topology.DefaultCacheMaxMemory+"; env REDIS_CACHE_MAXMEMORY)")
			},
			validate: func(c Config) error {
				if m := scaleOut.of(c).CacheMaxMemory; m != "" && !redisMemory.MatchString(m) {
					return &ConfigError{"REDIS_CACHE_MAXMEMORY", fmt.Sprintf("%q is not a Redis memory size such as 256mb", m)}
				}
				return nil
			},
		},
	}
}

// scaleOutPanels: the instances the supervisor watches.
func scaleOutPanels(m *obs.Metrics) []obs.Panel {
	return []obs.Panel{
		{ID: "instances", Title: "Instances", Unit: "instances, restarts", Note: "the supervisor's view (its ADMIN_ADDR); empty on an instance's own dashboard", Series: []obs.Series{
			{Label: "up", Value: func(s *obs.Sample) float64 { return s.Gauge("flickrkillr_instance_up", nil) }},
			{Label: "restarts (total)", Value: func(s *obs.Sample) float64 { return s.Gauge("flickrkillr_instance_restarts_total", nil) }},
		}},
	}
}

const scaleOutStage = 7

// redisMemory is a size as redis-server's maxmemory takes it.
var redisMemory = regexp.MustCompile(`^(?i)[1-9][0-9]*(b|k|kb|m|mb|g|gb)?$`)

// filesPrefix is where nginx serves the photo files by key.
const filesPrefix = "/files/"

// behindNginx is the app as an instance sees it: the TCP peer is nginx,
// whose X-Forwarded-For (the client's address, set by nginx, never the
// client's own header) is trusted from loopback and from the addresses of
// --trusted-proxies only (TRUSTED_PROXIES: nginx on another host, as this
// instance sees it); pages link photo files by key, which nginx serves
// from disk. Trusting every private address instead would let any host on
// the network pick its own address, and the throttle's key with it.
func behindNginx(cfg Config) Front {
	trust := []echo.TrustOption{echo.TrustLoopback(true), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range scaleOut.of(cfg).TrustedProxies {
		trust = append(trust, echo.TrustIPRange(n))
	}
	return Front{
		IPExtractor: echo.ExtractIPFromXFFHeader(trust...),
		ImageURL: func(id int64, key string, v models.Variant) string {
			name, err := models.ImageFile(key, v)
			if err != nil {
				return photoImagePath(id, key, v) // no valid key: the app's route answers
			}
			return filesPrefix + name
		},
	}
}

// parseProxies reads "10.0.0.5,192.168.1.0/24": IPs and CIDRs.
func parseProxies(v string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if !strings.Contains(f, "/") {
			if ip := net.ParseIP(f); ip != nil && ip.To4() != nil {
				f += "/32"
			} else {
				f += "/128"
			}
		}
		_, n, err := net.ParseCIDR(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address or CIDR", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// proxiesString is parseProxies' input again, for an instance's environment.
func proxiesString(nets []*net.IPNet) string {
	var s []string
	for _, n := range nets {
		s = append(s, n.String())
	}
	return strings.Join(s, ",")
}

// NginxMissingError is the refusal to start stage 7 without nginx.
type NginxMissingError struct{}

func (NginxMissingError) Error() string {
	return "stage 7 runs nginx in front of the instances, and nginx is not on PATH: install Debian's package " +
		"(`sudo apt-get install nginx-light`, or `nginx`; it lives in /usr/sbin, which must be on PATH)"
}

const topologyNote = "Stage 7: the supervisor's view. Every panel sums the instances' own metrics (scraped from their operator " +
	"listeners each second); CPU and memory are the instances' only (not nginx's, Redis's or the supervisor's). /topology lists the processes."

// serveTopology is stage 7's Serve: the supervisor of topology.Run, told
// how an instance of this binary starts and what the dashboard draws.
func serveTopology(ctx context.Context, cfg Config, log *slog.Logger) error {
	if _, err := exec.LookPath("nginx"); err != nil {
		return NginxMissingError{}
	}
	o, err := supervisorOptions(ctx, cfg, log)
	if err != nil {
		return err
	}
	err = topology.Run(ctx, o)
	switch {
	case errors.Is(err, topology.ErrNoNginx):
		return NginxMissingError{}
	case errors.Is(err, topology.ErrNoRedisServer):
		return &ConfigError{"REDIS_URL", "is empty and redis-server is not installed: stage 7's instances need one Redis they all share " +
			"(an embedded miniredis lives inside one process): `sudo apt-get install redis-server`, or set REDIS_URL"}
	}
	return err
}

// supervisorOptions are the topology's options for cfg: the instances and
// worker processes of this binary, PgBouncer, the model's hosts, the
// dashboard, and what later stages add (their topologyParts).
func supervisorOptions(ctx context.Context, cfg Config, log *slog.Logger) (topology.Options, error) {
	exe, err := os.Executable()
	if err != nil {
		return topology.Options{}, fmt.Errorf("app: find own binary: %w", err)
	}
	cpus, err := instanceCPUs()
	if err != nil {
		return topology.Options{}, err
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return topology.Options{}, err
	}
	static, _ := fs.Sub(templates.Static, "static")
	srv := newServer("", nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s, _ := resolve(cfg.Stage)
	tooLarge, err := tooLargePage(s) // nginx's 413 is the app's page
	if err != nil {
		return topology.Options{}, err
	}
	so := scaleOut.of(cfg)
	o := topology.Options{
		Addr: cfg.Addr, AdminAddr: cfg.AdminAddr, Instances: so.Instances, Upstreams: so.Upstreams, Log: log,
		RedisURL: cfg.RedisURL, CacheRedisURL: cfg.RedisCacheURL, CacheMaxMemory: so.CacheMaxMemory, DataDir: dataDir, Static: static, CPUs: cpus,
		Limits: topology.Limits{
			MaxBody:    maxUploadBody, // upload.go's MaxBytesReader
			MaxHeader:  maxHeaderBytes,
			ReadHeader: srv.ReadHeaderTimeout, ReadBody: srv.ReadTimeout, Write: srv.WriteTimeout, Idle: srv.IdleTimeout,
		},
		Command: []string{exe, "instance"},
		Env: func(name, addr, admin, redisURL string) []string {
			return append([]string{
				"DATABASE_URL=" + cfg.DatabaseURL, // PgBouncer's instead, when it runs (topology.go)
				// PostgreSQL itself for the watchdog's probe: through PgBouncer
				// (no reserve pool) it would queue behind the instance's own
				// statements, and a slow database would open the breaker.
				"WATCHDOG_DATABASE_URL=" + cfg.DatabaseURL,
				"REDIS_URL=" + redisURL,
				"DATA_DIR=" + dataDir,
				"ADDR=" + addr,
				"ADMIN_ADDR=" + admin,
				fmt.Sprintf("STAGE=%d", cfg.Stage),
				fmt.Sprintf("INDEXES=%t", cfg.Indexes),
				fmt.Sprintf("METRICS=%t", !cfg.NoMetrics),
				"DB_LATENCY=" + cfg.DBLatency.String(), // its Redis; the database is already behind our proxy
				"DRAIN_DELAY=0",                        // nginx does not ask /readyz: a refused connect moves it on
				"INSTANCE=" + name,
				"TRUSTED_PROXIES=" + proxiesString(so.TrustedProxies),
			}, modelEnv(cfg, scalemodel.RoleApp)...)
		},
		Attrs: []any{"stage", fmt.Sprintf("%d (%s)", s.Number, s.Name), "indexes", cfg.Indexes || s.Indexes},
	}
	o.Limits.TooLargePage = tooLarge

	if so.WorkerProcs > 0 {
		o.WorkerProcs, o.WorkerCommand = so.WorkerProcs, []string{exe, "worker"}
		o.WorkerEnv = func(name, admin, redisURL string) []string {
			return append([]string{
				"DATABASE_URL=" + cfg.DatabaseURL,
				"REDIS_URL=" + redisURL,
				"DATA_DIR=" + dataDir,
				"ADMIN_ADDR=" + admin,
				fmt.Sprintf("STAGE=%d", cfg.Stage),
				fmt.Sprintf("INDEXES=%t", cfg.Indexes),
				fmt.Sprintf("METRICS=%t", !cfg.NoMetrics),
				fmt.Sprintf("WORKERS=%d", max(queueConfig.of(cfg).Workers, 1)),
				"INSTANCE=" + name,
			}, modelEnv(cfg, scalemodel.RoleWorker)...)
		}
		instanceEnv := o.Env
		o.Env = func(name, addr, admin, redisURL string) []string { // the worker processes make the images
			return append(instanceEnv(name, addr, admin, redisURL), "WORKERS=0")
		}
	}
	if !cfg.NoMetrics {
		o.Panels = append(corePanels(), panelsFor(s, obs.NewMetrics(nil))...)
		o.Info = dashboardInfo(s, fmt.Sprintf("migration %d expected", s.Schema), topologyNote)
	}
	if !so.NoPgBouncer && len(so.Upstreams) == 0 { // remote instances bring their own DATABASE_URL
		if _, err := exec.LookPath("pgbouncer"); err != nil {
			return topology.Options{}, &ConfigError{"PGBOUNCER", "stage 7 puts PgBouncer between the instances and PostgreSQL, and pgbouncer is not installed: " +
				"`sudo apt-get install pgbouncer`, or run without it with --pgbouncer=false (PGBOUNCER=0)"}
		}
		// Through PgBouncer the timeout cannot be a startup parameter (1.18
		// refuses it): it is the role's default in the database, which
		// PostgreSQL applies to every server connection PgBouncer opens.
		if err := models.SetRoleStatementTimeout(ctx, cfg.DatabaseURL, requestTimeout); err != nil {
			return topology.Options{}, err
		}
		o.PgBouncer = &topology.PgBouncer{DatabaseURL: cfg.DatabaseURL}
	}
	o.Place, o.Hosts = modelHosts(cfg) // --model (model.go)
	if cfg.model != nil && len(o.Panels) > 0 {
		o.Metrics = modelMetrics(cfg.model)
		o.Panels = append(o.Panels, modelPanels(cfg.model.Spec(), topologyHostNames(cmp.Or(so.Instances, 2), so.WorkerProcs))...)
	}
	for _, add := range partsOf[topologyPart](s) { // later stages' parts (stage 8: the front cache)
		add(cfg, &o)
	}
	return o, nil
}

// topologyPart is what a later topology stage adds to the supervisor's
// options, a part of its Stage (stage 8: the front cache).
type topologyPart func(cfg Config, o *topology.Options)

// instanceCPUs reads INSTANCE_CPUS ("0,1"): instance i runs pinned to the
// i-th entry (taskset), for measuring one instance per core.
func instanceCPUs() ([]string, error) {
	v := os.Getenv("INSTANCE_CPUS")
	if v == "" {
		return nil, nil
	}
	cpus := strings.Split(v, ",")
	for _, c := range cpus {
		if _, err := strconv.Atoi(c); err != nil {
			return nil, &ConfigError{"INSTANCE_CPUS", fmt.Sprintf("%q is not a list of CPU numbers like 0,1", v)}
		}
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return nil, &ConfigError{"INSTANCE_CPUS", "needs taskset (Debian's util-linux)"}
	}
	return cpus, nil
}
