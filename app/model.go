package app

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"flickrkillr/app/obs"
	"flickrkillr/app/scalemodel"
)

// The scale model (--model SPEC, MODEL; docs/scale-model.md): package
// scalemodel makes the hosts, and here serve is placed in them. At the
// single-process stages (0-6) the serve process is the app host app-1 (its
// CGI children, its in-process workers and an embedded miniredis with it),
// the PostgreSQL behind DATABASE_URL is the db host, and a redis-server
// behind REDIS_URL the redis host. At the topology stages (7 and later) the serve
// process is the supervisor and stays outside, as the load tool does (it
// starts and watches the hosts); every process it starts is placed as it
// starts (topology.Options.Place): instance N in app-N, nginx and memcached
// in front, the redis-servers in redis, PgBouncer in db beside PostgreSQL,
// worker process N in worker-N, stage 9's standby N and its PgBouncer in
// db-replicaN. Remote instances (--upstream) cannot be
// placed: --model refuses them rather than run unconstrained while claiming
// a model.

// modelSpec reads cfg.Model, nil without one; a bad spec or a stage the
// model cannot place yet is a ConfigError.
func modelSpec(cfg Config) (*scalemodel.Spec, error) {
	if cfg.Model == "" {
		return nil, nil
	}
	spec, err := scalemodel.ParseSpec(cfg.Model)
	if err != nil {
		return nil, &ConfigError{"MODEL", strings.TrimPrefix(err.Error(), "scalemodel: ")}
	}
	return &spec, nil
}

// modelRun is a serve process's model: nil without --model, and every
// method then does nothing.
type modelRun struct {
	m   *scalemodel.Model
	app *scalemodel.Host
	log *slog.Logger
}

// startModel makes the hosts and places the database (and a local
// redis-server) in theirs. It runs before the delay proxy of --db-latency
// starts, so it reads DATABASE_URL as given; join then places this process.
func startModel(cfg Config, log *slog.Logger) (*modelRun, error) {
	spec, err := modelSpec(cfg)
	if spec == nil || err != nil {
		return nil, err
	}
	// The prefix follows the listen address: a serve restarted on it after
	// a SIGKILL cleans what its predecessor left; two serves on two
	// addresses keep apart.
	_, port, _ := net.SplitHostPort(cfg.Addr)
	m, err := scalemodel.New(*spec, scalemodel.Options{Prefix: "flickrkillr-model-" + port})
	if err != nil {
		return nil, &ConfigError{"MODEL", strings.TrimPrefix(err.Error(), "scalemodel: ")}
	}
	r := &modelRun{m: m, log: log}
	if err := r.place(cfg); err != nil {
		m.Close()
		return nil, err
	}
	return r, nil
}

func (r *modelRun) place(cfg Config) error {
	if s, ok := LookupStage(cfg.Stage); !ok || !s.Topology { // the topology places its instances itself
		app, err := r.m.NewHost("app-1", scalemodel.RoleApp)
		if err != nil {
			return err
		}
		r.app = app
	}
	network, addr, err := pgListener(cfg.DatabaseURL)
	if err != nil {
		return err
	}
	if err := r.adopt("db", scalemodel.RoleDB, "DATABASE_URL", network, addr); err != nil {
		return err
	}
	if s, err := resolve(cfg.Stage); err == nil { // a later stage's servers (stage 10: the shards)
		for _, servers := range partsOf[modelServers](s) {
			for _, sv := range servers(cfg) {
				network, addr, err := pgListener(sv.URL)
				if err != nil {
					return err
				}
				if err := r.adopt(sv.Name, scalemodel.RoleDB, sv.Variable, network, addr); err != nil {
					return err
				}
			}
		}
	}
	if cfg.RedisURL == "" {
		r.log.Info("scale model: the embedded miniredis runs inside the app host (REDIS_URL names none)")
		return nil
	}
	u, err := url.Parse(cfg.RedisURL)
	if err != nil {
		return &ConfigError{"REDIS_URL", "must be a redis:// URL"}
	}
	if !isLocal(u.Hostname()) {
		return &ConfigError{"MODEL", fmt.Sprintf("REDIS_URL's %s is not this machine: the model can only put a local redis-server in its redis host", u.Hostname())}
	}
	port := u.Port()
	if port == "" {
		port = "6379"
	}
	return r.adopt("redis", scalemodel.RoleRedis, "REDIS_URL", "tcp", port)
}

// modelServers is a Part: the PostgreSQL servers of a stage's
// configuration that the model puts in database hosts of their own, as it
// does DATABASE_URL's (stage 10: the shards).
type modelServers func(cfg Config) []modelServer

// modelServer is one: its host's name, the variable that names it, its URL.
type modelServer struct{ Name, Variable, URL string }

// adopt puts the server listening at addr, with all its processes, into a
// new host of role.
func (r *modelRun) adopt(name string, role scalemodel.Role, variable, network, addr string) error {
	pid, err := scalemodel.ListenerPID(network, addr)
	if err != nil {
		return &ConfigError{"MODEL", fmt.Sprintf("the server %s names: %s", variable, strings.TrimPrefix(err.Error(), "scalemodel: "))}
	}
	h, err := r.m.NewHost(name, role)
	if err != nil {
		return err
	}
	if err := h.AddTree(pid); err != nil {
		return err
	}
	r.log.Info("scale model: host", "name", name, "role", role, "quota", h.Quota(), "pid", pid)
	return nil
}

// pgListener says where the PostgreSQL of a URL listens on this machine:
// a TCP port on a loopback host, or a unix socket (host=/dir).
func pgListener(dsn string) (network, addr string, err error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", "", &ConfigError{"DATABASE_URL", "must be a postgres:// URL"}
	}
	host, port := u.Hostname(), u.Port()
	if h := u.Query().Get("host"); h != "" {
		host = h
	}
	if p := u.Query().Get("port"); p != "" {
		port = p
	}
	if port == "" {
		port = "5432"
	}
	switch {
	case strings.HasPrefix(host, "/"):
		return "unix", filepath.Join(host, ".s.PGSQL."+port), nil
	case host == "" || isLocal(host):
		return "tcp", port, nil
	}
	return "", "", &ConfigError{"MODEL", fmt.Sprintf("DATABASE_URL's %s is not this machine: the model can only put a local PostgreSQL in its database host", host)}
}

func isLocal(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// join moves this process into the app host and sizes its Go runtime (and
// its Go children's: stage 0's CGI processes) to the host's quota.
func (r *modelRun) join(cfg *Config) error {
	if r == nil {
		return nil
	}
	if s, ok := LookupStage(cfg.Stage); ok && s.Topology { // the supervisor: its processes are placed as they start
		cfg.model = r.m
		r.log.Info("scale model: the supervisor stays outside it; its processes are placed as they start", "spec", r.m.Spec().String())
		return nil
	}
	if err := r.app.Add(os.Getpid()); err != nil {
		return err
	}
	runtime.GOMAXPROCS(r.app.Procs())
	os.Setenv("GOMAXPROCS", strconv.Itoa(r.app.Procs()))
	cfg.model = r.m
	r.log.Info("scale model: host", "name", r.app.Name(), "role", r.app.Role(), "quota", r.app.Quota(), "pid", os.Getpid(),
		"spec", r.m.Spec().String())
	return nil
}

// close removes the model on every exit path of serve: the processes go
// back, the groups go.
func (r *modelRun) close() {
	if r == nil {
		return
	}
	if err := r.m.Close(); err != nil {
		r.log.Error("scale model: clean-up", "err", err)
	}
}

// modelPages serves the hosts on the operator listener as /topology.json's
// hosts (name, role, quota, used, throttled), over the window since the
// previous request.
func modelPages(cfg Config) map[string]http.Handler {
	if cfg.model == nil {
		return nil
	}
	m := cfg.model
	return map[string]http.Handler{
		"GET /topology.json": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(struct { // an error is a client gone away
				Model string                `json:"model"`
				Hosts []scalemodel.HostStat `json:"hosts"`
			}{m.Spec().String(), m.Snapshot()})
		}),
	}
}

// modelHosts is the scale model for the topology (stages 7, 8): its Place
// puts each process the supervisor starts into the host of that name,
// made on first use and found again on a restart; its Hosts is
// /topology.json's hosts. Both nil without --model.
func modelHosts(cfg Config) (place func(host, role string, pid int) error, hosts func() any) {
	m := cfg.model
	if m == nil {
		return nil, nil
	}
	var mu sync.Mutex
	place = func(name, role string, pid int) error {
		mu.Lock()
		defer mu.Unlock()
		var h *scalemodel.Host
		for _, x := range m.Hosts() {
			if x.Name() == name {
				h = x
			}
		}
		if h == nil {
			var err error
			if h, err = m.NewHost(name, scalemodel.Role(role)); err != nil {
				return err
			}
		}
		// The whole tree: nginx's master may have forked its workers, and
		// PgBouncer may have daemonized, before the move.
		return h.AddTree(pid)
	}
	return place, func() any { return m.Snapshot() }
}

// modelEnv is the environment of a Go process the topology starts on a host
// of role: GOMAXPROCS from its quota (Host.Procs), which a process moved into
// its group after it started would not read.
func modelEnv(cfg Config, role scalemodel.Role) []string {
	if cfg.model == nil {
		return nil
	}
	return []string{"GOMAXPROCS=" + strconv.Itoa(cfg.model.Spec().Procs(role))}
}

// hostsCollector exports the model's hosts to /metrics, for the dashboard's
// hosts panel: each host's CPU time, its quota, and its CFS periods, all and
// throttled (labels host and role).
type hostsCollector struct{ m *scalemodel.Model }

var (
	hostCPU       = prometheus.NewDesc("flickrkillr_model_host_cpu_seconds_total", "Scale model: CPU time the host's processes used.", []string{"host", "role"}, nil)
	hostQuota     = prometheus.NewDesc("flickrkillr_model_host_quota_cpus", "Scale model: the host's CPU quota.", []string{"host", "role"}, nil)
	hostPeriods   = prometheus.NewDesc("flickrkillr_model_host_periods_total", "Scale model: CFS periods in which the host ran.", []string{"host", "role"}, nil)
	hostThrottled = prometheus.NewDesc("flickrkillr_model_host_throttled_periods_total", "Scale model: CFS periods in which the host hit its quota.", []string{"host", "role"}, nil)
)

func (c hostsCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c hostsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, h := range c.m.Hosts() {
		labels := []string{h.Name(), string(h.Role())}
		ch <- prometheus.MustNewConstMetric(hostQuota, prometheus.GaugeValue, h.Quota(), labels...)
		if used, err := h.Usage(); err == nil { // a host being removed: no point this second
			ch <- prometheus.MustNewConstMetric(hostCPU, prometheus.CounterValue, used.Seconds(), labels...)
		}
		if thr, err := h.Throttled(); err == nil {
			ch <- prometheus.MustNewConstMetric(hostPeriods, prometheus.CounterValue, float64(thr.Periods), labels...)
			ch <- prometheus.MustNewConstMetric(hostThrottled, prometheus.CounterValue, float64(thr.Throttled), labels...)
		}
	}
}

// modelPanels is the dashboard's view of the model: each host's CPU used as
// a share of its quota (1: the host is at its quota, the bottleneck), and
// the share of its periods in which it was throttled. hosts are the names
// the panel draws (a topology's hosts are made as its processes start).
func modelPanels(spec scalemodel.Spec, hosts []string) []obs.Panel {
	var used, throttled []obs.Series
	for _, name := range hosts {
		f := obs.Label("host", name)
		quota := spec.Quota(hostRole(name))
		used = append(used, obs.Series{Label: name, Value: func(s *obs.Sample) float64 {
			return obs.Per(s.Rate("flickrkillr_model_host_cpu_seconds_total", f), quota)
		}})
		throttled = append(throttled, obs.Series{Label: name, Value: func(s *obs.Sample) float64 {
			return obs.Per(s.Rate("flickrkillr_model_host_throttled_periods_total", f), s.Rate("flickrkillr_model_host_periods_total", f))
		}})
	}
	return []obs.Panel{
		{ID: "modelhosts", Title: "Scale model: CPU used, share of each host's quota", Unit: "of quota",
			Note: "1 is a host at its quota: the bottleneck (" + spec.String() + ")", Series: used},
		{ID: "modelthrottled", Title: "Scale model: periods throttled, by host", Unit: "share of periods", Series: throttled},
	}
}

// hostRole is the role of a host by its name (app-2, worker-1, db…).
func hostRole(name string) scalemodel.Role {
	role, _, _ := strings.Cut(name, "-")
	return scalemodel.Role(role)
}

// topologyHostNames are the hosts a modelled topology makes (Options.Place).
func topologyHostNames(instances, workers int) []string {
	names := []string{"db", "redis", "front"}
	for i := range instances {
		names = append(names, fmt.Sprintf("app-%d", i+1))
	}
	for i := range workers {
		names = append(names, fmt.Sprintf("worker-%d", i+1))
	}
	return names
}

// modelMetrics is the model's hosts as a registry of their own, for a
// process whose /metrics is not an App's (the topology's supervisor).
func modelMetrics(m *scalemodel.Model) prometheus.Gatherer {
	reg := prometheus.NewRegistry()
	reg.MustRegister(hostsCollector{m})
	return reg
}
