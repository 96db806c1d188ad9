// Package topology runs several processes as one server (stage 7): a
// supervisor that owns every process it starts (proc.go: restarted when it
// dies, stopped on every exit path), N app instances, a redis-server they
// share and nginx in front, whose configuration it renders from a template
// and checks with nginx -t (nginx.go); its operator listener shows the
// processes (/topology) and a dashboard over the instances' own metrics
// (gather.go). It knows nothing of the app: package app says how to start
// an instance and what the dashboard draws.
package topology

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"flickrkillr/app/obs"
)

// ErrNoNginx is the refusal to start without nginx on PATH.
var ErrNoNginx = errors.New("topology: nginx is not on PATH")

// ErrNoRedisServer is the refusal to start a shared Redis without
// redis-server installed (Options.RedisURL empty).
var ErrNoRedisServer = errors.New("topology: redis-server is not installed")

// Options are what Run starts: where, how many, and how an instance is made.
type Options struct {
	Addr      string // nginx's listener, host:port
	AdminAddr string // the supervisor's operator listener ("": none, and the instances get none)
	Instances int    // app instances (0: 2)
	Log       *slog.Logger
	// RedisURL is the durable Redis the instances share (sessions,
	// throttles, the queue); CacheRedisURL the cache Redis (stage 3's cache;
	// empty: the cache shares RedisURL's). Both empty: the topology starts
	// one redis-server of each role (redis.go), the cache one with
	// CacheMaxMemory (empty: DefaultCacheMaxMemory).
	RedisURL       string
	CacheRedisURL  string
	CacheMaxMemory string
	DataDir        string // the photo files, which nginx serves under FilesPrefix (absolute)
	Static         fs.FS  // the files nginx serves under /static/
	Limits         Limits // the instances' own limits, which nginx's must match
	// Command is an instance's command line (this binary, `instance`).
	Command []string
	// Env is the environment of the instance name, listening at addr with
	// its operator listener at admin ("": none), sharing redisURL.
	Env func(name, addr, admin, redisURL string) []string
	// CPUs pins instance i to CPUs[i%len] with taskset (empty: no pinning).
	CPUs []string
	// Info and Panels make the supervisor's dashboard (no panels: none);
	// it adds the per-instance ones.
	Info   obs.Info
	Panels []obs.Panel
	// Attrs go into the "serving" log line (the stage, say).
	Attrs []any
	// FrontCache is stage 8's front cache: FrontMemcached starts a memcached
	// that nginx reads pages from (its address to the instances in
	// MemcachedEnv), FrontProxy makes nginx's proxy_cache a microcache; ""
	// none. SessionCookie names the cookie of a logged-in visitor, whose
	// requests always reach an instance.
	FrontCache    string
	SessionCookie string
	// FrontMaxName and FrontMaxCursor bound the pages nginx looks up in the
	// front cache (the app's frontcache.MaxName and MaxCursor): the longest
	// name in a path and the longest ?before=, so that no key is over
	// memcached's 250 bytes. Required with FrontCache.
	FrontMaxName, FrontMaxCursor int
	// Upstreams are instances on other hosts (host:port) that the
	// supervisor fronts but does not start: with any, it starts no
	// instances of its own (Instances is ignored). They are not
	// supervised: one that dies is nginx's to route around.
	Upstreams []string
	// WorkerProcs image-worker processes run beside the instances, each
	// with an operator listener the supervisor reads (0: none, the
	// instances make the images themselves). WorkerCommand is a worker's
	// command line, WorkerEnv its environment (name, its operator
	// listener, the shared Redis).
	WorkerProcs   int
	WorkerCommand []string
	WorkerEnv     func(name, admin, redisURL string) []string
	// PgBouncer, when set, is started between the instances and PostgreSQL
	// (pgbouncer.go): the instances get its URL as DATABASE_URL, with
	// DATABASE_POOLER=transaction. Nil: they connect to PostgreSQL directly.
	PgBouncer *PgBouncer
	// Place, when set, is the scale model (docs/scale-model.md): every
	// process the topology starts is put into a host right after it starts,
	// restarts included, by host name and role: app-N (instance N, role
	// app), front (nginx and memcached), redis (both redis-servers), db
	// (PgBouncer, beside PostgreSQL) and worker-N. An error stops that
	// process. Hosts is what /topology.json shows of them ("hosts").
	Place func(host, role string, pid int) error
	Hosts func() any
	// Metrics are served on the supervisor's /metrics beside what it
	// gathers from the instances (the scale model's hosts), unlabelled.
	Metrics prometheus.Gatherer
	// Services are processes a later stage brings (services.go; stage 9:
	// the streaming standbys), started before PgBouncer and the instances.
	Services []Service
}

// topology is what the supervisor runs and owns.
type topology struct {
	o        Options
	log      *slog.Logger
	dir      string // the generated config, pid, temp and log files (.run/, ignored by git)
	redis    *proc  // nil when RedisURL names a Redis
	redisURL string
	// The cache Redis (redis.go): nil when the options name the Redis.
	cacheRedis     *proc
	cacheRedisURL  string
	instances      []*instance
	workers        []*instance // image-worker processes (no Addr: they answer no requests)
	nginx          *proc
	ports          *ports       // the loopback addresses of this start, held until used
	pgbouncer      *pgbouncer   // nil without Options.PgBouncer
	replicaPoolers []*pgbouncer // one per PgBouncer.Replicas (stage 9)
	nginxExe       string
	started        time.Time
	// Stage 8 (memcached.go): nil unless Options.FrontCache is FrontMemcached.
	memcached     *proc
	memcachedAddr string
	// Options.Services, as started (services.go).
	services    []*service
	servicesCtx context.Context
}

// inHost makes p's processes land in the scale model's host (Options.Place).
func (t *topology) inHost(p *proc, host, role string) *proc {
	if t.o.Place != nil {
		p.placed = func(pid int) error { return t.o.Place(host, role, pid) }
	}
	return p
}

// instance is one app process of the topology.
type instance struct {
	*proc // nil for a remote instance (Options.Upstreams)
	Name  string
	Addr  string // its public listener, behind nginx
	Admin string // its operator listener ("" without one): the supervisor reads its /metrics
}

// Run starts everything, supervises it until ctx ends, then stops it in
// order (nginx, the instances, Redis).
func Run(ctx context.Context, o Options) error {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		return ErrNoNginx
	}
	n := o.Instances
	if n == 0 {
		n = 2
	}
	log := o.Log
	t := &topology{o: o, log: log, started: time.Now(), ports: newPorts()}
	if t.dir, err = runDir(o.Addr); err != nil {
		return err
	}
	defer t.ports.releaseAll()
	t.ports.hold(o.Addr)
	t.ports.hold(o.AdminAddr)
	for _, s := range o.Services {
		t.ports.hold(s.Addr) // released just before it starts (startServices)
	}

	// Each kind of process has its own context, cancelled in order at the end.
	redisCtx, stopRedis := context.WithCancel(context.Background())
	servicesCtx, stopServices := context.WithCancel(context.Background())
	t.servicesCtx = servicesCtx
	poolerCtx, stopPooler := context.WithCancel(context.Background())
	instCtx, stopInstances := context.WithCancel(context.Background())
	nginxCtx, stopNginx := context.WithCancel(context.Background())
	defer func() {
		stopNginx()
		if t.nginx != nil {
			<-t.nginx.done
		}
		stopInstances()
		for _, in := range append(t.instances, t.workers...) {
			if in.proc != nil { // started
				<-in.done
			}
		}
		stopPooler()
		for _, b := range append([]*pgbouncer{t.pgbouncer}, t.replicaPoolers...) {
			if b != nil {
				<-b.done
			}
		}
		stopServices()
		t.stopServices()
		stopRedis()
		for _, r := range []*proc{t.redis, t.cacheRedis} {
			if r != nil {
				<-r.done
			}
		}
		if t.memcached != nil { // Stage 8: stopped with Redis
			<-t.memcached.done
		}
		log.Info("the topology has stopped")
	}()

	t.redisURL, t.cacheRedisURL = o.RedisURL, o.CacheRedisURL
	if t.redisURL == "" && len(o.Upstreams) == 0 { // remote instances name their Redis themselves
		if t.redis, t.redisURL, err = t.startRedis(redisCtx, durableRedis); err != nil {
			return err
		}
		if t.cacheRedisURL == "" {
			if t.cacheRedis, t.cacheRedisURL, err = t.startRedis(redisCtx, cacheRedis); err != nil {
				return err
			}
		}
	}
	if o.FrontCache == FrontMemcached {
		if err := t.startMemcached(redisCtx); err != nil {
			return err
		}
	}
	if err := t.startServices(ctx); err != nil {
		return err
	}
	if o.PgBouncer != nil {
		if err := t.startPgBouncer(poolerCtx); err != nil {
			return err
		}
		log.Info("PgBouncer pools the instances' connections", "addr", t.pgbouncer.Addr, "server_connections", t.pgbouncer.PoolSize,
			"postgres_max_connections", t.pgbouncer.MaxConns)
	}
	t.nginxExe = nginx
	for i, a := range o.Upstreams {
		t.instances = append(t.instances, &instance{Name: fmt.Sprintf("u%d", i+1), Addr: a})
	}
	if len(o.Upstreams) > 0 {
		n = 0
	}
	// Every instance's addresses first, all held at once (ports.go): no two alike.
	for i := range n {
		in := &instance{Name: fmt.Sprintf("i%d", i+1)}
		if in.Addr, err = t.ports.take(); err != nil {
			return err
		}
		if o.AdminAddr != "" {
			if in.Admin, err = t.ports.take(); err != nil {
				return err
			}
		}
		t.instances = append(t.instances, in)
	}
	for i, in := range t.instances[len(o.Upstreams):] {
		env := append(os.Environ(), o.Env(in.Name, in.Addr, in.Admin, t.redisURL)...)
		if t.memcached != nil {
			env = append(env, MemcachedEnv+"="+t.memcachedAddr)
		}
		if t.cacheRedisURL != "" {
			env = append(env, CacheRedisEnv+"="+t.cacheRedisURL)
		}
		if t.pgbouncer != nil { // after Env's: exec.Cmd keeps the last of a name
			env = append(env, t.poolerEnv()...)
		}
		args := o.Command
		if len(o.CPUs) > 0 { // pinned before exec, so GOMAXPROCS follows
			args = append([]string{"taskset", "--cpu-list", o.CPUs[i%len(o.CPUs)]}, args...)
		}
		in.proc = t.inHost(newProc(in.Name, log, syscall.SIGTERM, func() *exec.Cmd {
			cmd := exec.Command(args[0], args[1:]...)
			if args[0] == "taskset" {
				cmd.Path, _ = exec.LookPath("taskset")
			}
			cmd.Env = env
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			return cmd
		}), fmt.Sprintf("app-%d", i+1), "app")
		t.ports.release(in.Addr, in.Admin)
		if err := in.start(instCtx); err != nil {
			return err
		}
	}
	for _, in := range t.instances {
		if in.proc == nil {
			if !in.state().Up {
				log.Warn("a remote instance does not accept connections (yet); nginx will try it", "instance", in.Name, "addr", in.Addr)
			}
			continue
		}
		if err := in.waitReady(ctx, 60*time.Second); err != nil {
			return err
		}
	}
	if err := t.startWorkers(instCtx); err != nil {
		return err
	}

	conf, err := t.writeNginxConfig(t.instances)
	if err != nil {
		return err
	}
	if err := checkNginxConfig(nginx, t.dir, conf); err != nil {
		return err
	}
	t.nginx = t.inHost(newProc("nginx", log, syscall.SIGQUIT, func() *exec.Cmd {
		cmd := exec.Command(nginx, "-p", t.dir, "-c", conf, "-e", filepath.Join(t.dir, "error.log"))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		return cmd
	}), "front", "front")
	t.ports.release(o.Addr)
	if err := t.nginx.start(nginxCtx); err != nil {
		return err
	}
	if err := waitHTTP(ctx, t.nginx, "http://"+o.Addr+"/healthz", 10*time.Second); err != nil {
		return fmt.Errorf("nginx: %w (its log: %s)", err, filepath.Join(t.dir, "error.log"))
	}

	t.ports.release(o.AdminAddr)
	stopAdmin := t.startAdmin(ctx)
	defer stopAdmin()
	attrs := append([]any{"url", "http://" + o.Addr}, o.Attrs...)
	log.Info("FlickrKillr is serving", append(attrs, "instances", len(t.instances), "redis", t.redisURL, "cache_redis", t.cacheRedisURL, "nginx_config", conf)...)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping the topology: nginx, then the instances, then PgBouncer and Redis")
			return nil
		case <-hup:
			t.rollingRestart(ctx)
		}
	}
}

// startWorkers starts Options.WorkerProcs worker processes (w1, w2, …),
// supervised like the instances and stopped with them.
func (t *topology) startWorkers(ctx context.Context) error {
	for i := range t.o.WorkerProcs {
		w := &instance{Name: fmt.Sprintf("w%d", i+1)}
		if t.o.AdminAddr != "" {
			var err error
			if w.Admin, err = t.ports.take(); err != nil {
				return err
			}
		}
		env := append(os.Environ(), t.o.WorkerEnv(w.Name, w.Admin, t.redisURL)...)
		if t.cacheRedisURL != "" { // a worker's writes bump the cache's generations
			env = append(env, CacheRedisEnv+"="+t.cacheRedisURL)
		}
		if t.memcached != nil { // a finished photo deletes its front pages, as an instance's write does
			env = append(env, MemcachedEnv+"="+t.memcachedAddr)
		}
		if t.pgbouncer != nil {
			env = append(env, t.poolerEnv()...)
		}
		args := t.o.WorkerCommand
		w.proc = t.inHost(newProc(w.Name, t.log, syscall.SIGTERM, func() *exec.Cmd {
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Env = env
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			return cmd
		}), fmt.Sprintf("worker-%d", i+1), "worker")
		t.workers = append(t.workers, w)
		t.ports.release(w.Admin)
		if err := w.start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// state is the instance's process status; a remote instance has none the
// supervisor knows, so it is "up" while it accepts a TCP connection.
func (in *instance) state() procStatus {
	if in.proc != nil {
		return in.status()
	}
	st := procStatus{Name: in.Name, LastExit: "not supervised here"}
	if c, err := net.DialTimeout("tcp", in.Addr, 300*time.Millisecond); err == nil {
		c.Close()
		st.Up = true
	}
	return st
}

// waitReady waits for the instance's current process to answer /readyz.
func (in *instance) waitReady(ctx context.Context, limit time.Duration) error {
	return waitHTTP(ctx, in.proc, "http://"+in.Addr+"/readyz", limit)
}

// runDir is the folder of one topology's generated files: .run/nginx-<port>
// under the working directory (ignored by git), named by nginx's port so
// that two topologies never share one and a restart reuses it.
func runDir(addr string) (string, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("topology: %q is not host:port", addr)
	}
	dir, err := filepath.Abs(filepath.Join(".run", "nginx-"+port))
	if err != nil {
		return "", err
	}
	for _, sub := range []string{"tmp", "static"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return "", fmt.Errorf("topology: make %s: %w", dir, err)
		}
	}
	return dir, nil
}
