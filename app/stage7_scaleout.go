package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"flickrkillr/models"
)

// Stage 7: scale-out. `serve --stage 7` becomes a supervisor: it starts a
// redis-server that every instance shares (unless REDIS_URL names one), N
// app instances (this binary again, each on its own loopback port, sharing
// nothing but PostgreSQL, Redis and the photo files), and nginx in front,
// which spreads requests over them and serves the stylesheet and the photo
// files from disk itself. An instance that dies is restarted; SIGHUP
// restarts them one at a time; Ctrl-C stops everything.
func init() {
	register(Stage{
		Number:   scaleOutStage,
		Name:     "scale-out",
		Summary:  "N app instances behind nginx, sharing nothing; nginx serves the stylesheet and photo files",
		Serve:    serveTopology,
		Front:    behindNginx,
		Topology: true, // `serve --stage 7`: never the default
	})
}

const scaleOutStage = 7

// filesPrefix is where nginx serves the photo files by key.
const filesPrefix = "/files/"

// behindNginx is the app as an instance sees it: the TCP peer is nginx on
// loopback, whose X-Forwarded-For (the client's address, set by nginx, never
// the client's own header) is trusted from loopback only; pages link photo
// files by key, which nginx serves from disk.
func behindNginx() Front {
	return Front{
		IPExtractor: echo.ExtractIPFromXFFHeader(echo.TrustLoopback(true), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)),
		ImageURL: func(id int64, key string, v models.Variant) string {
			name, err := models.ImageFile(key, v)
			if err != nil {
				return photoImagePath(id, key, v) // no valid key: the app's route answers
			}
			return filesPrefix + name
		},
	}
}

// NginxMissingError is the refusal to start stage 7 without nginx.
type NginxMissingError struct{}

func (NginxMissingError) Error() string {
	return "stage 7 runs nginx in front of the instances, and nginx is not on PATH: install Debian's package " +
		"(`sudo apt-get install nginx-light`, or `nginx`; it lives in /usr/sbin, which must be on PATH)"
}

// topology is what the supervisor runs and owns.
type topology struct {
	cfg       Config
	log       *slog.Logger
	dir       string // the generated config, pid, temp and log files (.run/, ignored by git)
	redis     *proc  // nil when REDIS_URL names a Redis
	redisURL  string
	instances []*instance
	nginx     *proc
	nginxExe  string
	dataDir   string
	started   time.Time
}

// instance is one app process of the topology.
type instance struct {
	*proc
	Name  string
	Addr  string // its public listener, behind nginx
	Admin string // its operator listener ("" without one): the supervisor reads its /metrics
}

// serveTopology is stage 7's Serve: start everything, supervise it until
// ctx ends, then stop it in order (nginx, the instances, Redis).
func serveTopology(ctx context.Context, cfg Config, log *slog.Logger) error {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		return NginxMissingError{}
	}
	n := cfg.Instances
	if n == 0 {
		n = 2
	}
	t := &topology{cfg: cfg, log: log, started: time.Now()}
	if t.dir, err = runDir(cfg.Addr); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("app: find own binary: %w", err)
	}
	cpus, err := instanceCPUs()
	if err != nil {
		return err
	}

	// Each kind of process has its own context, cancelled in order at the end.
	redisCtx, stopRedis := context.WithCancel(context.Background())
	instCtx, stopInstances := context.WithCancel(context.Background())
	nginxCtx, stopNginx := context.WithCancel(context.Background())
	defer func() {
		stopNginx()
		if t.nginx != nil {
			<-t.nginx.done
		}
		stopInstances()
		for _, in := range t.instances {
			<-in.done
		}
		stopRedis()
		if t.redis != nil {
			<-t.redis.done
		}
		log.Info("the topology has stopped")
	}()

	t.redisURL = cfg.RedisURL
	if t.redisURL == "" {
		if t.redisURL, err = t.startRedis(redisCtx); err != nil {
			return err
		}
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	t.nginxExe, t.dataDir = nginx, dataDir
	for i := range n {
		in := &instance{Name: fmt.Sprintf("i%d", i+1)}
		if in.Addr, err = freeAddr(); err != nil {
			return err
		}
		if cfg.AdminAddr != "" {
			if in.Admin, err = freeAddr(); err != nil {
				return err
			}
		}
		env := append(os.Environ(),
			"DATABASE_URL="+cfg.DatabaseURL,
			"REDIS_URL="+t.redisURL,
			"DATA_DIR="+dataDir,
			"ADDR="+in.Addr,
			"ADMIN_ADDR="+in.Admin,
			fmt.Sprintf("STAGE=%d", cfg.Stage),
			fmt.Sprintf("INDEXES=%t", cfg.Indexes),
			fmt.Sprintf("METRICS=%t", !cfg.NoMetrics),
			"DB_LATENCY="+cfg.DBLatency.String(), // its Redis; the database is already behind our proxy
			"DRAIN_DELAY=0",                      // nginx does not ask /readyz: a refused connect moves it on
			"INSTANCE="+in.Name,
		)
		args := []string{exe, "instance"}
		if len(cpus) > 0 { // INSTANCE_CPUS: pinned before exec, so GOMAXPROCS follows
			args = append([]string{"taskset", "--cpu-list", cpus[i%len(cpus)]}, args...)
		}
		in.proc = newProc(in.Name, log, syscall.SIGTERM, func() *exec.Cmd {
			cmd := exec.Command(args[0], args[1:]...)
			if args[0] == "taskset" {
				cmd.Path, _ = exec.LookPath("taskset")
			}
			cmd.Env = env
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			return cmd
		})
		t.instances = append(t.instances, in)
		if err := in.start(instCtx); err != nil {
			return err
		}
	}
	for _, in := range t.instances {
		if err := in.waitReady(ctx, 60*time.Second); err != nil {
			return err
		}
	}

	conf, err := writeNginxConfig(t.dir, cfg.Addr, dataDir, t.instances)
	if err != nil {
		return err
	}
	if err := checkNginxConfig(nginx, t.dir, conf); err != nil {
		return err
	}
	t.nginx = newProc("nginx", log, syscall.SIGQUIT, func() *exec.Cmd {
		cmd := exec.Command(nginx, "-p", t.dir, "-c", conf, "-e", filepath.Join(t.dir, "error.log"))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		return cmd
	})
	if err := t.nginx.start(nginxCtx); err != nil {
		return err
	}
	if err := waitHTTP(ctx, t.nginx, "http://"+cfg.Addr+"/healthz", 10*time.Second); err != nil {
		return fmt.Errorf("nginx: %w (its log: %s)", err, filepath.Join(t.dir, "error.log"))
	}

	stopAdmin := t.startAdmin(ctx)
	defer stopAdmin()
	s, _ := resolve(cfg.Stage)
	log.Info("FlickrKillr is serving", "url", "http://"+cfg.Addr, "stage", fmt.Sprintf("%d (%s)", s.Number, s.Name),
		"indexes", cfg.Indexes || s.Indexes, "instances", len(t.instances), "redis", t.redisURL, "nginx_config", conf)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping the topology: nginx, then the instances, then Redis")
			return nil
		case <-hup:
			t.rollingRestart(ctx)
		}
	}
}

// rollingRestart restarts the instances one at a time without failing a
// request: nginx is reloaded without the instance (its old workers finish
// what they have in flight and exit, closing their idle connections to it),
// the instance is stopped (it has nothing left to answer), started again,
// and once ready nginx is reloaded with it. Stopping an instance nginx still
// used failed POSTs on idle keepalive connections that the instance closed
// as nginx sent on them (measured: one or two per restart), and took it out
// of rotation for fail_timeout (a second stop then left nginx none: 502).
// With one instance there is nothing to drain to: its restart fails what
// arrives meanwhile.
func (t *topology) rollingRestart(ctx context.Context) {
	t.log.Info("rolling restart", "instances", len(t.instances))
	for _, in := range t.instances {
		if len(t.instances) > 1 {
			if err := t.reloadNginx(in); err != nil {
				t.log.Error("rolling restart stopped", "instance", in.Name, "err", err)
				return
			}
		}
		if err := in.bounce(ctx); err != nil {
			t.log.Error("rolling restart stopped", "instance", in.Name, "err", err)
			return
		}
		if err := in.waitReady(ctx, 60*time.Second); err != nil {
			t.log.Error("rolling restart stopped", "instance", in.Name, "err", err)
			return
		}
	}
	if len(t.instances) > 1 {
		if err := t.reloadNginx(nil); err != nil {
			t.log.Error("rolling restart: nginx reload", "err", err)
			return
		}
	}
	t.log.Info("rolling restart done")
}

// reloadNginx rewrites the configuration with every instance but except
// (nil: all), reloads nginx (SIGHUP: new workers, the old ones finish their
// requests and exit) and waits, up to 15 s, for the old workers to be gone.
func (t *topology) reloadNginx(except *instance) error {
	var live []*instance
	for _, in := range t.instances {
		if in != except {
			live = append(live, in)
		}
	}
	conf, err := writeNginxConfig(t.dir, t.cfg.Addr, t.dataDir, live)
	if err != nil {
		return err
	}
	if err := checkNginxConfig(t.nginxExe, t.dir, conf); err != nil {
		return err
	}
	master := t.nginx.status().PID
	old := childPIDs(master)
	if err := syscall.Kill(master, syscall.SIGHUP); err != nil {
		return fmt.Errorf("app: reload nginx: %w", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		gone := true
		for _, pid := range old {
			if syscall.Kill(pid, 0) == nil {
				gone = false
			}
		}
		if gone {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.log.Warn("nginx's old workers are still finishing requests after 15 s; going on")
	return nil
}

// childPIDs lists pid's children (/proc/<pid>/task/<pid>/children).
func childPIDs(pid int) []int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// waitReady waits for the instance's current process to answer /readyz.
func (in *instance) waitReady(ctx context.Context, limit time.Duration) error {
	return waitHTTP(ctx, in.proc, "http://"+in.Addr+"/readyz", limit)
}

// waitHTTP polls url until it answers 200, p's process exits, or limit passes.
func waitHTTP(ctx context.Context, p *proc, url string, limit time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	pid := p.status().PID
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if st := p.status(); st.PID != pid || !st.Up {
			return fmt.Errorf("%s exited before it was ready (%s)", p.name, st.LastExit)
		}
		if res, err := c.Get(url); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer %s within %s", p.name, url, limit)
}

// startRedis runs a redis-server of the topology's own on a free port: no
// persistence (sessions and cache entries are worth losing on a restart).
func (t *topology) startRedis(ctx context.Context) (string, error) {
	exe, err := exec.LookPath("redis-server")
	if err != nil {
		return "", &ConfigError{"REDIS_URL", "is empty and redis-server is not installed: stage 7's instances need one Redis they all share " +
			"(an embedded miniredis lives inside one process): `sudo apt-get install redis-server`, or set REDIS_URL"}
	}
	addr, err := freeAddr()
	if err != nil {
		return "", err
	}
	_, port, _ := net.SplitHostPort(addr)
	logFile := filepath.Join(t.dir, "redis.log")
	t.redis = newProc("redis-server", t.log, syscall.SIGTERM, func() *exec.Cmd {
		return exec.Command(exe, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", t.dir, "--logfile", logFile)
	})
	if err := t.redis.start(ctx); err != nil {
		return "", err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return "redis://" + addr + "/0", nil
		}
		if !t.redis.status().Up {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", fmt.Errorf("app: redis-server did not start on %s (its log: %s)", addr, logFile)
}

// runDir is the folder of one topology's generated files: .run/nginx-<port>
// under the working directory (ignored by git), named by nginx's port so
// that two topologies never share one and a restart reuses it.
func runDir(addr string) (string, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", &ConfigError{"ADDR", fmt.Sprintf("%q is not host:port", addr)}
	}
	dir, err := filepath.Abs(filepath.Join(".run", "nginx-"+port))
	if err != nil {
		return "", err
	}
	for _, sub := range []string{"tmp", "static"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return "", fmt.Errorf("app: make %s: %w", dir, err)
		}
	}
	return dir, nil
}

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

// freeAddr is a loopback address with a port free right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// proc is one child process the supervisor owns: started, restarted when it
// exits on its own (after a backoff that doubles from 200 ms to 5 s while it
// keeps dying young), and stopped with its graceful signal when its context
// ends (SIGKILL after 12 s). Children are in their own process group, so a
// terminal's Ctrl-C reaches the supervisor only, which stops them in order;
// and they get SIGTERM if the supervisor itself dies (Pdeathsig).
type proc struct {
	name    string
	log     *slog.Logger
	stopSig syscall.Signal
	command func() *exec.Cmd
	done    chan struct{} // closed when supervision has ended and the process is gone

	mu       sync.Mutex
	st       procStatus
	bouncing bool          // an intentional restart: no backoff
	exited   chan struct{} // closed when the current process exits
}

// procStatus is what the operator view shows of a process.
type procStatus struct {
	Name     string    `json:"name"`
	PID      int       `json:"pid"`
	Up       bool      `json:"up"`
	Since    time.Time `json:"since"`
	Starts   int       `json:"starts"`
	Restarts int       `json:"restarts"` // after it exited on its own (crashes, kills)
	LastExit string    `json:"last_exit,omitempty"`
}

func newProc(name string, log *slog.Logger, stopSig syscall.Signal, command func() *exec.Cmd) *proc {
	return &proc{name: name, log: log, stopSig: stopSig, command: command, done: make(chan struct{}), st: procStatus{Name: name}}
}

func (p *proc) status() procStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// start starts the first process and supervises it in the background until
// ctx ends; an error is a process that could not start at all.
func (p *proc) start(ctx context.Context) error {
	cmd, err := p.spawn()
	if err != nil {
		close(p.done)
		return err
	}
	go p.supervise(ctx, cmd)
	return nil
}

func (p *proc) spawn() (*exec.Cmd, error) {
	cmd := p.command()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("app: start %s: %w", p.name, err)
	}
	p.mu.Lock()
	p.st.PID, p.st.Up, p.st.Since = cmd.Process.Pid, true, time.Now()
	p.st.Starts++
	p.exited = make(chan struct{})
	p.mu.Unlock()
	return cmd, nil
}

func (p *proc) supervise(ctx context.Context, cmd *exec.Cmd) {
	defer close(p.done)
	failures := 0
	for {
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		var err error
		select {
		case err = <-waited:
		case <-ctx.Done():
			cmd.Process.Signal(p.stopSig)
			select {
			case err = <-waited:
			case <-time.After(12 * time.Second):
				p.log.Warn("did not stop in 12 s; killing it", "process", p.name, "pid", cmd.Process.Pid)
				cmd.Process.Kill()
				err = <-waited
			}
			p.exit(err)
			return
		}
		lived := p.exit(err)
		if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		bounced := p.bouncing
		p.bouncing = false
		if !bounced {
			p.st.Restarts++
		}
		p.mu.Unlock()
		delay := time.Duration(0)
		if !bounced {
			if lived >= 10*time.Second {
				failures = 0
			}
			delay = min(200*time.Millisecond<<failures, 5*time.Second)
			failures++
			p.log.Warn("exited; restarting it", "process", p.name, "pid", cmd.Process.Pid, "exit", describeExit(err), "after", delay)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		for {
			if cmd, err = p.spawn(); err == nil {
				break
			}
			p.log.Error("restart failed", "process", p.name, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
		}
	}
}

// exit records the end of the current process and says how long it lived.
func (p *proc) exit(err error) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.st.Up = false
	p.st.LastExit = describeExit(err)
	close(p.exited)
	return time.Since(p.st.Since)
}

// bounce stops the current process with its graceful signal and lets the
// supervisor start it again at once; it returns once the old one is gone.
func (p *proc) bounce(ctx context.Context) error {
	p.mu.Lock()
	if !p.st.Up {
		p.mu.Unlock()
		return fmt.Errorf("%s is not running", p.name)
	}
	p.bouncing = true
	pid, exited := p.st.PID, p.exited
	p.mu.Unlock()
	p.log.Info("restarting", "process", p.name, "pid", pid)
	if err := syscall.Kill(pid, p.stopSig); err != nil {
		return err
	}
	select {
	case <-exited:
	case <-ctx.Done():
		return ctx.Err()
	}
	// Wait for the new process to be spawned.
	for ctx.Err() == nil {
		if st := p.status(); st.Up && st.PID != pid {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ctx.Err()
}

func describeExit(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
