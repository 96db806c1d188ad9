package app

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"flickrkillr/app/scalemodel"
	"flickrkillr/models/modeltest"
)

// serve --model default at stage 7 stays outside the model itself and puts
// every process it starts into its host: each instance in app-N, nginx in
// front, both redis-servers in redis, PgBouncer in db with the test
// cluster's PostgreSQL, the worker process in worker-1; an instance killed
// and restarted by the supervisor lands in its host again; /topology.json
// lists the hosts; on Ctrl-C every group is gone and PostgreSQL is back
// where it was.
func TestStage7ModelPlacesEveryProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts a topology")
	}
	if os.Geteuid() != 0 {
		t.Skip("--model makes CPU cgroups: needs root (CI runs it as root)")
	}
	probe, err := scalemodel.New(scalemodel.DefaultSpec(), scalemodel.Options{Prefix: "flickrkillr-model-probe", StateDir: t.TempDir()})
	if err != nil {
		t.Skipf("no scale model here: %v", err)
	}
	probe.Close()
	needCommands(t, "nginx")
	for _, exe := range []string{"redis-server", "pgbouncer"} {
		if _, err := exec.LookPath(exe); err != nil {
			t.Skipf("%s is not installed (scripts/test.sh installs it)", exe)
		}
	}
	schema, err := SchemaFor(scaleOutStage)
	if err != nil {
		t.Fatal(err)
	}
	dsn := modeltest.NewDB(t, schema)
	u, _ := url.Parse(dsn)
	postmaster, err := scalemodel.ListenerPID("tcp", u.Port())
	if err != nil {
		t.Skipf("the test database is not a local cluster: %v", err)
	}
	exe := buildFlickrkillr(t)
	work := t.TempDir()
	addr, admin := mustFreeAddr(t), mustFreeAddr(t)
	logs := &syncBuffer{}
	sup := exec.Command(exe, "serve", "--stage", "7", "--instances", "2", "--worker-procs", "1", "--model", "default",
		"--addr", addr, "--admin-addr", admin)
	sup.Dir = work
	sup.Env = append(os.Environ(), "DATABASE_URL="+dsn, "REDIS_URL=", "REDIS_CACHE_URL=", "DATA_DIR="+filepath.Join(work, "data"),
		"STAGE=", "INDEXES=", "INSTANCES=", "INSTANCE_CPUS=", "DB_LATENCY=", "METRICS=", "WORKER_PROCS=", "WORKERS=", "PGBOUNCER=", "MODEL=")
	sup.Stdout, sup.Stderr = logs, logs
	sup.WaitDelay = 5 * time.Second // a child that outlives it (PgBouncer runs as postgres, which ends its Pdeathsig) keeps the pipes
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sup.Wait() }()
	t.Cleanup(func() {
		if sup.ProcessState == nil { // Ctrl-C first: the model cleans its groups and puts PostgreSQL back
			sup.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				sup.Process.Kill()
				<-exited
			}
		}
		if t.Failed() {
			t.Logf("the topology's log:\n%s", logs.String())
		}
	})
	waitFor(t, 90*time.Second, "the modelled topology to serve", func() bool {
		c := &http.Client{Timeout: time.Second}
		for _, u := range []string{"http://" + addr + "/healthz", "http://" + admin + "/topology.json"} { // the operator listener starts last
			res, err := c.Get(u)
			if err != nil {
				return false
			}
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				return false
			}
		}
		return true
	})
	_, port, _ := strings.Cut(addr, ":")
	group := "/flickrkillr-model-" + port

	if got := cpuCgroup(t, sup.Process.Pid); strings.HasPrefix(got, group) {
		t.Errorf("the supervisor runs in %s, want outside the model", got)
	}
	if got := cpuCgroup(t, postmaster); got != group+"/db" {
		t.Errorf("the postmaster runs in %q, want %s/db", got, group)
	}
	topo := readTopology(t, admin)
	var victim topologyProcFile
	for _, p := range topo.Processes {
		want := group + "/" + hostOf(p)
		for _, pid := range append([]int{p.PID}, descendants(p.PID)...) { // nginx's workers too
			if got := cpuCgroup(t, pid); got != want {
				t.Errorf("%s (%s, pid %d) runs in %q, want %q", p.Name, p.Role, pid, got, want)
			}
		}
		if p.Role == "app instance" {
			victim = p
		}
	}
	if len(topo.Processes) < 6 {
		t.Fatalf("/topology.json lists %d processes, want nginx, 2 instances, a worker, PgBouncer and 2 redis-servers: %+v", len(topo.Processes), topo.Processes)
	}
	var hosts struct {
		Hosts []scalemodel.HostStat `json:"hosts"`
	}
	res, err := http.Get("http://" + admin + "/topology.json")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(res.Body).Decode(&hosts)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	quotas := map[string]float64{}
	for _, h := range hosts.Hosts {
		quotas[h.Name] = h.Quota
	}
	spec := scalemodel.DefaultSpec()
	for name, role := range map[string]scalemodel.Role{"db": scalemodel.RoleDB, "app-1": scalemodel.RoleApp, "app-2": scalemodel.RoleApp,
		"front": scalemodel.RoleFront, "redis": scalemodel.RoleRedis, "worker-1": scalemodel.RoleWorker} {
		if q, ok := quotas[name]; !ok || q != spec.Quota(role) {
			t.Errorf("/topology.json hosts: %s at %v (listed: %v), want %v", name, q, ok, spec.Quota(role))
		}
	}

	mustShowHosts(t, admin, "app-1", "app-2", "front", "redis", "db", "worker-1")

	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var again topologyProcFile
	waitFor(t, 30*time.Second, "the killed instance to be restarted", func() bool {
		again = readTopology(t, admin).instance(victim.Name)
		return again.Up && again.PID != victim.PID
	})
	if got, want := cpuCgroup(t, again.PID), group+"/"+hostOf(victim); got != want {
		t.Errorf("the restarted %s runs in %q, want %q", victim.Name, got, want)
	}

	sup.Process.Signal(os.Interrupt)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve --model ended with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("serve --model did not stop within 60 s of Ctrl-C")
	}
	if got := cpuCgroup(t, postmaster); got != "/" {
		t.Errorf("after serve stopped the postmaster is in %q, want / (where it came from)", got)
	}
	for _, d := range []string{"/sys/fs/cgroup/cpu" + group, "/sys/fs/cgroup/cpuacct" + group, "/sys/fs/cgroup" + group} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s is left after serve stopped (%v)", d, err)
		}
	}
}

// hostOf is the model's host of a process in /topology.json
// (topology.Options.Place).
func hostOf(p topologyProcFile) string {
	digits := strings.TrimLeft(p.Name, "abcdefghijklmnopqrstuvwxyz-")
	switch {
	case p.Role == "app instance":
		return "app-" + digits
	case p.Role == "image worker":
		return "worker-" + digits
	case p.Role == "PostgreSQL pooler":
		return "db"
	case strings.Contains(p.Role, "Redis"):
		return "redis"
	}
	return "front"
}

// Remote instances (--upstream) run on other machines, which the model
// cannot place: serve refuses the pair in one line naming MODEL.
func TestModelRefusesRemoteInstances(t *testing.T) {
	cfg := Config{Model: "default", Stage: scaleOutStage}
	scaleOut.set(&cfg, func(s *scaleOutSettings) { s.Instances, s.Upstreams = 2, []string{"10.0.0.2:8080"} })
	err := cfg.Validate(append([]string{"model"}, StageFlags("serve")...)...)
	if !IsConfigError(err) || !strings.HasPrefix(err.Error(), "MODEL: ") || !strings.Contains(err.Error(), "--upstream") {
		t.Fatalf("error = %v, want a MODEL ConfigError naming --upstream", err)
	}
}
