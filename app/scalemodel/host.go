package scalemodel

import (
	"fmt"
	"math"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Host is one machine of the model: a CPU cgroup (a group in each of v1's
// cpu and cpuacct hierarchies, or one v2 group) capped at its quota. A host
// either adopts processes that run already (Add: the serve process;
// AddTree: the postmaster and its backends), which Close moves back, or runs processes the model starts
// (Start), which Close kills; not both, so that the cleanup after a crash
// knows which to do with what it finds in the group.
type Host struct {
	m      *Model
	name   string
	role   Role
	quota  float64
	period time.Duration
	rel    string // the group's path under every hierarchy
	made   time.Time

	mu      sync.Mutex
	adopted bool
	started []*Proc
}

// Name returns the host's name (app-1, db…).
func (h *Host) Name() string { return h.name }

// Role returns what the host does.
func (h *Host) Role() Role { return h.role }

// Quota returns the host's CPUs.
func (h *Host) Quota() float64 { return h.quota }

// Procs is the GOMAXPROCS a Go process on this host should run with: its
// quota rounded up. Go's own cgroup-aware default (Go 1.25) rounds a limit
// under 2 up to 2, which on a 0.15 host lets two threads burn the period's
// quota at once and both stall; a process moved into the group after it
// started does not look again at all.
func (h *Host) Procs() int { return procsFor(h.quota) }

func procsFor(quota float64) int { return max(1, int(math.Ceil(quota-1e-9))) }

// Env returns the environment a Go child of this host needs on top of its
// own (GOMAXPROCS).
func (h *Host) Env() []string { return []string{"GOMAXPROCS=" + strconv.Itoa(h.Procs())} }

// Add moves one running process into the host: the serve process, whose
// later children (stage 0's CGI processes) are born in it.
func (h *Host) Add(pid int) error { return h.add(pid, false) }

// AddTree moves a running process and all its descendants: for the
// database host, the postmaster and every backend and helper it forked.
// Processes they fork later are born in the host's group. A child forked
// while the tree is read is caught by a second pass.
func (h *Host) AddTree(pid int) error { return h.add(pid, true) }

func (h *Host) add(pid int, withTree bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.started) > 0 {
		return fmt.Errorf("scalemodel: host %s runs processes the model started; adopt into another host", h.name)
	}
	h.adopted = true
	if _, ok := startTime(pid); !ok {
		return fmt.Errorf("scalemodel: host %s: no process %d", h.name, pid)
	}
	if err := h.m.lay.addPid(h.rel, pid); err != nil {
		return fmt.Errorf("scalemodel: host %s: add pid %d: %w", h.name, pid, err)
	}
	for pass := 0; withTree && pass < 2; pass++ {
		for _, p := range tree(pid)[1:] {
			h.m.lay.addPid(h.rel, p) // a descendant that exited meanwhile fails harmlessly
		}
	}
	return nil
}

// Start starts cmd and moves it into the host at once; Close kills it and
// everything in the host's group. Between its start and the move (well
// under a millisecond) it runs unconstrained; cgroup v1 offers no way to be
// born in a group. Give a Go child Env().
func (h *Host) Start(cmd *exec.Cmd) (*Proc, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.adopted {
		return nil, fmt.Errorf("scalemodel: host %s adopted running processes; start into another host", h.name)
	}
	if len(h.started) == 0 {
		if err := h.m.setKill(h.rel); err != nil {
			return nil, err
		}
	}
	p, err := startProc(cmd)
	if err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	start, _ := startTime(pid)
	h.started = append(h.started, p)
	if err := h.m.Track(Item{Kind: "process", PID: pid, Start: start}); err != nil {
		p.kill()
		return nil, err
	}
	if err := h.m.lay.addPid(h.rel, pid); err != nil {
		p.kill()
		return nil, fmt.Errorf("scalemodel: host %s: %w", h.name, err)
	}
	return p, nil
}

// Usage returns the CPU time the host's processes used since it was made.
func (h *Host) Usage() (time.Duration, error) { return h.m.lay.usage(h.rel) }

// Throttled returns the host's CFS throttling since it was made.
func (h *Host) Throttled() (Throttle, error) { return h.m.lay.throttle(h.rel) }

// Pids lists the processes in the host.
func (h *Host) Pids() ([]int, error) { return h.m.lay.procs(h.rel) }

func (h *Host) killStarted() {
	h.mu.Lock()
	started := h.started
	h.mu.Unlock()
	for _, p := range started {
		p.kill()
	}
}

// Close kills what the model started in the host or moves the adopted
// processes back, and removes the host's group; the model forgets it.
func (h *Host) Close() error {
	h.killStarted()
	h.mu.Lock()
	kill := len(h.started) > 0
	h.mu.Unlock()
	if err := h.m.lay.remove(h.rel, kill); err != nil {
		return err // still tracked: the model's Close, or the next model, retries
	}
	m := h.m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hosts = slices.DeleteFunc(m.hosts, func(x *Host) bool { return x == h })
	m.items = slices.DeleteFunc(m.items, func(it Item) bool {
		if it.Kind == "process" {
			return slices.ContainsFunc(h.started, func(p *Proc) bool { return p.Cmd.Process.Pid == it.PID })
		}
		return it.Kind == "cgroup" && it.Name == h.rel
	})
	return m.saveLocked()
}
