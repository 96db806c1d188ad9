package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"testing"
	"time"

	"flickrkillr/app/scalemodel"
	"flickrkillr/models/modeltest"
)

// --model names a spec, and refuses what it cannot place, before anything
// runs: one line naming MODEL. Every stage takes it (stage 7's test file:
// remote instances, --upstream, cannot be placed).
func TestModelFlagRefusesBadSpecs(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		says string
	}{
		{"an unknown role", Config{Model: "cache=0.2", Stage: 2}, `spec key "cache"`},
		{"a period CFS refuses", Config{Model: "period=5s", Stage: 2}, "1ms to 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := modelSpec(tc.cfg)
			if !IsConfigError(err) || !strings.HasPrefix(err.Error(), "MODEL: ") || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error = %v, want a MODEL ConfigError saying %q", err, tc.says)
			}
		})
	}
	for _, s := range Stages() {
		if spec, err := modelSpec(Config{Model: "default", Stage: s.Number}); spec == nil || err != nil {
			t.Errorf("--model default at stage %d: %v, %v; want the default spec", s.Number, spec, err)
		}
	}
	if spec, err := modelSpec(Config{}); spec != nil || err != nil {
		t.Fatalf("no --model gave %v, %v", spec, err)
	}
}

// The child half of TestServeWithModelPlacesHostsAndCleansUp: serve --model
// default at stage 2, in its own process (the model moves it into a host).
func TestServeModelChild(t *testing.T) {
	dsn := os.Getenv("MODEL_CHILD_DATABASE_URL")
	if dsn == "" {
		t.Skip("the child of TestServeWithModelPlacesHostsAndCleansUp")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg := Config{DatabaseURL: dsn, DataDir: t.TempDir(), Addr: os.Getenv("MODEL_CHILD_ADDR"),
		AdminAddr: os.Getenv("MODEL_CHILD_ADMIN_ADDR"), Stage: modelTestStage(), Model: "default"}
	if err := Serve(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
		t.Fatal(err)
	}
}

// modelTestStage is the stage TestServeWithModelPlacesHostsAndCleansUp
// serves: 2, or the highest stage a workshop tag below it holds.
func modelTestStage() int {
	n := 0
	for _, s := range Stages() {
		if s.Number <= 2 && s.Number > n {
			n = s.Number
		}
	}
	return n
}

// serve --model default puts itself in an app host and the test cluster's
// postmaster with its backends in a db host, shows both on the operator
// listener's /topology.json, and on Ctrl-C moves them back and removes
// every group.
func TestServeWithModelPlacesHostsAndCleansUp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("--model makes CPU cgroups: needs root")
	}
	if modelTestStage() == 0 {
		t.Skip("stage 0's CGI children re-execute the binary, which a test binary cannot be (the stage-0 tag holds no later stage)")
	}
	probe, err := scalemodel.New(scalemodel.DefaultSpec(), scalemodel.Options{Prefix: "flickrkillr-model-probe", StateDir: t.TempDir()})
	if err != nil {
		t.Skipf("no scale model here: %v", err)
	}
	probe.Close()
	need, _ := SchemaFor(modelTestStage())
	dsn := modeltest.NewDB(t, need)
	u, _ := url.Parse(dsn)
	postmaster, err := scalemodel.ListenerPID("tcp", u.Port())
	if err != nil {
		t.Skipf("the test database is not a local cluster: %v", err)
	}
	addr, admin := mustFreeAddr(t), mustFreeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestServeModelChild$")
	child.Env = append(os.Environ(), "MODEL_CHILD_DATABASE_URL="+dsn, "MODEL_CHILD_ADDR="+addr, "MODEL_CHILD_ADMIN_ADDR="+admin)
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	waitFor(t, 30*time.Second, "serve --model to be ready", func() bool { return ready(addr) })

	_, port, _ := strings.Cut(addr, ":")
	group := "flickrkillr-model-" + port
	if got := cpuCgroup(t, child.Process.Pid); got != "/"+group+"/app-1" {
		t.Errorf("serve runs in cpu cgroup %q, want /%s/app-1", got, group)
	}
	if got := cpuCgroup(t, postmaster); got != "/"+group+"/db" {
		t.Errorf("the postmaster runs in cpu cgroup %q, want /%s/db", got, group)
	}
	res, err := http.Get("http://" + admin + "/topology.json")
	if err != nil {
		t.Fatal(err)
	}
	var top struct {
		Hosts []scalemodel.HostStat `json:"hosts"`
	}
	err = json.NewDecoder(res.Body).Decode(&top)
	res.Body.Close()
	if err != nil || len(top.Hosts) != 2 || top.Hosts[0].Name != "app-1" || top.Hosts[0].Quota != 0.15 ||
		top.Hosts[1].Role != scalemodel.RoleDB || top.Hosts[1].Quota != 0.6 {
		t.Fatalf("/topology.json hosts = %+v (%v), want app-1 at 0.15 and db at 0.6", top.Hosts, err)
	}
	mustShowHosts(t, admin, "app-1", "db")

	child.Process.Signal(os.Interrupt)
	if err := child.Wait(); err != nil {
		t.Fatalf("serve --model ended with %v", err)
	}
	if got := cpuCgroup(t, postmaster); got != "/" {
		t.Errorf("after serve stopped the postmaster is in cpu cgroup %q, want / (where it came from)", got)
	}
	for _, d := range []string{"/sys/fs/cgroup/cpu/" + group, "/sys/fs/cgroup/cpuacct/" + group} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s is left after serve stopped (%v)", d, err)
		}
	}
}

// cpuCgroup reads a process's group in the cpu hierarchy (cgroup v1; on v2
// the one group).
func cpuCgroup(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && (strings.Contains(","+parts[1]+",", ",cpu,") || parts[0] == "0" && !strings.Contains(string(b), ":cpu")) {
			return parts[2]
		}
	}
	t.Fatalf("no cpu cgroup in %s", b)
	return ""
}

// mustShowHosts checks that an operator listener at admin serves the model's
// hosts as metrics (each named host with its CPU time) and draws them on its
// dashboard (the modelhosts panel).
func mustShowHosts(t *testing.T, admin string, hosts ...string) {
	t.Helper()
	// A topology's supervisor answers 500 until it can scrape every process
	// it gathers from (the worker's listener comes up last).
	get := func(path string) string {
		var body string
		waitFor(t, 30*time.Second, path+" to answer 200", func() bool {
			res, err := http.Get("http://" + admin + path)
			if err != nil {
				return false
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			body = string(b)
			return err == nil && res.StatusCode == http.StatusOK
		})
		return body
	}
	metrics := get("/metrics")
	for _, h := range hosts {
		if !strings.Contains(metrics, `flickrkillr_model_host_cpu_seconds_total{host="`+h+`"`) {
			t.Errorf("/metrics has no CPU time of host %s", h)
		}
	}
	if data := get("/dashboard/data.json"); !strings.Contains(data, `"modelhosts"`) {
		t.Errorf("the dashboard has no hosts panel: %.300s", data)
	}
}
