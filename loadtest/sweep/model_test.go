package sweep

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"flickrkillr/app/scalemodel"
	"flickrkillr/loadtest"
)

// The model's arithmetic on two readings of the hosts: CPU per request,
// the rate at which each host saturates, the lowest named the bottleneck;
// a host made inside the window left out; a run on a machine without idle
// time, or whose tool and quotas exceed the cores, invalid.
func TestModelRunNamesTheBottleneckAndJudgesTheRun(t *testing.T) {
	spec := scalemodel.DefaultSpec()
	t0 := time.Unix(1000, 0)
	h := &hostsWindow{opened: true, closed: true, at: [2]time.Time{t0, t0.Add(10 * time.Second)},
		reading: [2][]scalemodel.Counters{
			{{Name: "app-1", Role: "app"}, {Name: "db", Role: "db", Throttle: scalemodel.Throttle{Periods: 100}}},
			{{Name: "app-1", Role: "app", Usage: 1.5e9, Throttle: scalemodel.Throttle{Periods: 500, Throttled: 450, Time: time.Second}},
				{Name: "db", Role: "db", Usage: 2e9, Throttle: scalemodel.Throttle{Periods: 600}},
				{Name: "app-2", Role: "app", Usage: 1e9}},
		}}
	// 1,000 requests: app-1 1.5 ms each (0.15 / 0.0015 = 100 req/s), db 2 ms (300 req/s).
	cpu := &loadtest.CPU{Seconds: 10, ToolS: 2, MachineS: 20, MachineBusyS: 15, MachineOK: true}
	m, err := modelRun(spec, h, cpu, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Hosts) != 2 || m.Hosts[0].Name != "db" || m.Hosts[1].Name != "app-1" {
		t.Fatalf("hosts %+v: want db and app-1 (app-2 was made inside the window)", m.Hosts)
	}
	app := m.Hosts[1]
	if app.Quota != 0.15 || app.Used != 0.15 || app.Throttled != 450.0/500 || app.ThrottledMS != 1000 || app.CPUPerRequestMS != 1.5 || int(app.SaturatesRPS+0.5) != 100 {
		t.Errorf("app-1 %+v", app)
	}
	if m.Bottleneck != "app-1" || int(m.PredictedRPS+0.5) != 100 || m.QuotaCPUs != 0.75 || m.ToolCPUs != 0.2 || m.IdleShare != 0.25 || m.Invalid != "" {
		t.Errorf("model %+v: want app-1 bounding at 100 req/s, a valid run", m)
	}
	if r, ok := m.explained(95); !ok || r != 0.95 {
		t.Errorf("95 req/s against 100 predicted: %.2f, %v; want within 10%%", r, ok)
	}
	if _, ok := m.explained(80); ok {
		t.Error("80 req/s against 100 predicted counts as explained")
	}
	// 2% idle; a tool using as many CPUs as the machine has, beside 0.75 of quotas.
	cpu.MachineBusyS, cpu.ToolS = 19.6, 10*float64(runtime.NumCPU())
	m, _ = modelRun(spec, h, cpu, 1000)
	if !strings.Contains(m.Invalid, "2% idle") || !strings.Contains(m.Invalid, "over the machine's") {
		t.Errorf("invalid %q: want both the idle time and the tool's CPU named", m.Invalid)
	}
	if _, err := modelRun(spec, &hostsWindow{prefix: "p", opened: true, closed: true}, cpu, 1); err == nil {
		t.Error("no hosts read: want an error")
	}
}
