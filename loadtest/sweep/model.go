package sweep

import (
	"fmt"
	"math"
	"runtime"
	"sort"
	"strings"
	"time"

	"flickrkillr/app/scalemodel"
	"flickrkillr/loadtest"
)

// The sweep in model mode (--model SPEC, docs/scale-model.md): every server
// it starts runs `serve --model SPEC`, the same spec at every stage; only
// the number of hosts changes (the instances of the topology stages). The
// model lives in the serve process; the sweep reads its hosts' cgroup
// counters (scalemodel.ReadHosts) when the measured window opens and when it
// closes, so the log-ins and the warm-up stay out of every host's figure.

// modelPrefix is the cgroup folder of the model of a serve listening on
// addr: app/model.go names it after the port of --addr.
func modelPrefix(addr string) string {
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	return "flickrkillr-model-" + port
}

// Thresholds of a valid run: the machine kept this share of its CPU idle,
// and the load tool's CPU plus every host's quota fit in the machine's
// cores. Otherwise the machine or the tool, not a host, may have been the
// limit.
const (
	minIdleShare = 0.10
	// explainedWithin is the target: the measured rate lands
	// within 10% of the rate the bounding host predicts.
	explainedWithin = 0.10
)

// ModelRun is a run's hosts over its measured window and what they say.
type ModelRun struct {
	Hosts []HostUse `json:"hosts"`
	// WindowS is the wall time between the two readings of the hosts.
	WindowS float64 `json:"window_s"`
	// ToolCPUs is the load tool's CPU over the window, in CPUs; IdleShare
	// the share of the machine's CPU time that stayed idle (/proc/stat);
	// QuotaCPUs the sum of the hosts' quotas; Cores the machine's.
	ToolCPUs  float64 `json:"tool_cpus"`
	IdleShare float64 `json:"machine_idle_share"`
	IdleOK    bool    `json:"machine_idle_measured"`
	QuotaCPUs float64 `json:"quota_cpus"`
	Cores     int     `json:"cores"`
	// Bottleneck is the host with the lowest saturation rate; PredictedRPS
	// that rate (0: no host used any CPU).
	Bottleneck   string  `json:"bottleneck,omitempty"`
	PredictedRPS float64 `json:"predicted_rps,omitempty"`
	// Invalid says why the run measured the machine or the load tool rather
	// than a host ("" when valid).
	Invalid string `json:"invalid,omitempty"`
	// Discarded is why an earlier measurement of the run was invalid: it was
	// measured again once, and these figures are the second measurement's.
	Discarded string `json:"discarded,omitempty"`
}

// HostUse is one host over a run's measured window.
type HostUse struct {
	Name  string  `json:"name"`
	Role  string  `json:"role"`
	Quota float64 `json:"quota"` // CPUs
	// CPUS is the CPU time the host used in the window; Used the same in
	// CPUs (CPUS / window).
	CPUS float64 `json:"cpu_s"`
	Used float64 `json:"used"`
	// Throttled is the share of the window's CFS periods in which the host
	// hit its quota; ThrottledMS the kernel's throttled time.
	Throttled   float64 `json:"throttled"`
	ThrottledMS float64 `json:"throttled_ms"`
	// CPUPerRequestMS is CPUS over the window's requests; SaturatesRPS the
	// rate at which this host would use all its quota (quota / CPU per
	// request): the lowest is the model's prediction.
	CPUPerRequestMS float64 `json:"cpu_per_request_ms"`
	SaturatesRPS    float64 `json:"saturates_rps,omitempty"`
}

// hostsWindow reads the hosts of the model at prefix when the window opens
// and closes (loadtest.Options.OnWindow); done gives the two readings.
type hostsWindow struct {
	prefix         string
	at             [2]time.Time
	reading        [2][]scalemodel.Counters
	err            error
	opened, closed bool
}

func (h *hostsWindow) onWindow(open bool) {
	i := 1
	if open {
		i = 0
	}
	h.at[i] = time.Now()
	r, err := scalemodel.ReadHosts(h.prefix)
	if err != nil && h.err == nil {
		h.err = err
	}
	h.reading[i] = r
	h.opened, h.closed = h.opened || open, h.closed || !open
}

// modelRun turns the two readings into each host's use and the model's
// verdict, with the tool's and the machine's CPU of the same window.
func modelRun(spec scalemodel.Spec, h *hostsWindow, cpu *loadtest.CPU, requests int64) (*ModelRun, error) {
	if h.err != nil {
		return nil, fmt.Errorf("reading the model's hosts: %w", h.err)
	}
	if !h.opened || !h.closed || len(h.reading[0]) == 0 {
		return nil, fmt.Errorf("the model's hosts (%s) were not found when the window opened: did the server run with --model?", h.prefix)
	}
	wall := h.at[1].Sub(h.at[0]).Seconds()
	m := &ModelRun{WindowS: wall, Cores: runtime.NumCPU()}
	before := map[string]scalemodel.Counters{}
	for _, c := range h.reading[0] {
		before[c.Name] = c
	}
	for _, c := range h.reading[1] {
		b, ok := before[c.Name]
		if !ok {
			continue // made inside the window (a restart): not a host of the whole window
		}
		u := HostUse{Name: c.Name, Role: string(c.Role), Quota: spec.Quota(c.Role)}
		u.CPUS = float64(c.Usage-b.Usage) / 1e9
		if wall > 0 {
			u.Used = u.CPUS / wall
		}
		if p := c.Throttle.Periods - b.Throttle.Periods; p > 0 {
			u.Throttled = float64(c.Throttle.Throttled-b.Throttle.Throttled) / float64(p)
		}
		u.ThrottledMS = float64(c.Throttle.Time-b.Throttle.Time) / float64(time.Millisecond)
		if requests > 0 {
			u.CPUPerRequestMS = u.CPUS * 1000 / float64(requests)
		}
		if u.CPUPerRequestMS > 0 {
			u.SaturatesRPS = u.Quota / (u.CPUPerRequestMS / 1000)
		}
		m.QuotaCPUs += u.Quota
		m.Hosts = append(m.Hosts, u)
		if u.SaturatesRPS > 0 && (m.PredictedRPS == 0 || u.SaturatesRPS < m.PredictedRPS) {
			m.Bottleneck, m.PredictedRPS = u.Name, u.SaturatesRPS
		}
	}
	sort.SliceStable(m.Hosts, func(i, j int) bool { return hostOrder(m.Hosts[i].Name) < hostOrder(m.Hosts[j].Name) })
	if cpu != nil && cpu.Seconds > 0 {
		m.ToolCPUs = cpu.ToolS / cpu.Seconds
		if cpu.MachineOK && cpu.MachineS > 0 {
			m.IdleShare, m.IdleOK = math.Max(0, 1-cpu.MachineBusyS/cpu.MachineS), true
		}
	}
	m.Invalid = m.validity()
	return m, nil
}

// validity is why the run is invalid, or "": the machine had no idle CPU
// left (then everything, the hosts included, waited for the machine), or the
// tool and the quotas together ask for more than the machine has (a host at
// its quota could then not get it).
func (m *ModelRun) validity() string {
	var why []string
	if !m.IdleOK {
		why = append(why, "the machine's idle time could not be read (/proc/stat)")
	} else if m.IdleShare < minIdleShare {
		why = append(why, fmt.Sprintf("the machine was %.0f%% idle (under %.0f%%: the machine, not a host, was the limit)", 100*m.IdleShare, 100*minIdleShare))
	}
	if need := m.ToolCPUs + m.QuotaCPUs; need > float64(m.Cores) {
		why = append(why, fmt.Sprintf("the load tool's %.2f CPU and the hosts' quotas (%.2f) add up to %.2f, over the machine's %d cores", m.ToolCPUs, m.QuotaCPUs, need, m.Cores))
	}
	return strings.Join(why, "; ")
}

// host finds a host by name.
func (m *ModelRun) host(name string) (HostUse, bool) {
	if m != nil {
		for _, h := range m.Hosts {
			if h.Name == name {
				return h, true
			}
		}
	}
	return HostUse{}, false
}

// explained is measured over predicted, and whether it lands within
// explainedWithin of 1.
func (m *ModelRun) explained(measured float64) (float64, bool) {
	if m == nil || m.PredictedRPS <= 0 {
		return 0, false
	}
	r := measured / m.PredictedRPS
	return r, math.Abs(r-1) <= explainedWithin
}

// hostOrder sorts hosts as the docs list them: db, redis, front, then the
// app hosts and workers by number.
func hostOrder(name string) string {
	role, n, _ := strings.Cut(name, "-")
	rank := map[string]string{"db": "0", "redis": "1", "front": "2", "app": "3", "worker": "4"}[role]
	return fmt.Sprintf("%s%s%04s", rank, role, n)
}
