package scalemodel

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Options are the model's plain settings; the zero value serves `serve`.
type Options struct {
	// Prefix names everything the model makes (its cgroup folder, later its
	// namespaces): two models with different prefixes never touch each
	// other's. Default "flickrkillr-model".
	Prefix string
	// StateDir holds the state file, <Prefix>.json. Default /run (a tmpfs
	// like the cgroup tree: both are gone after a reboot).
	StateDir string
	// Mounts is the mount table the cpu controller is looked up in. Default
	// /proc/mounts; tests point it at a fake cgroup root.
	Mounts string
}

// Item is one thing the model made, in its state file so that a model
// started after this one was SIGKILLed can undo it. Kinds: "cgroup" (Name is
// the group's path under every hierarchy; Kill says its processes are the
// model's own), "process" (PID and Start), "netns" and "veth" (Name).
type Item struct {
	Kind  string `json:"kind"`
	Name  string `json:"name,omitempty"`
	PID   int    `json:"pid,omitempty"`
	Start uint64 `json:"start,omitempty"`
	Kill  bool   `json:"kill,omitempty"`
}

// state is the state file: who owns the prefix, and what it made, in order.
type state struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
	Items []Item `json:"items"`
}

// Model owns every host it made and everything listed in its state file;
// Close removes them all. It is safe for concurrent use.
type Model struct {
	spec   Spec
	opts   Options
	lay    layout
	path   string // the state file
	mu     sync.Mutex
	items  []Item
	hosts  []*Host
	last   Mark // Snapshot's previous reading
	closed bool
}

// New checks that hosts can be made here (a cpu controller and the rights
// to make groups in it), cleans the leftovers of a previous model with the
// same prefix that did not get to Close (SIGKILL), and makes the model's
// cgroup folder. Its errors are one line saying why there is no model: the
// caller must not run unconstrained while claiming one.
func New(spec Spec, opts Options) (*Model, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = "flickrkillr-model"
	}
	if strings.ContainsAny(opts.Prefix, "/. ") {
		return nil, fmt.Errorf("scalemodel: prefix %q: want a plain name", opts.Prefix)
	}
	if opts.StateDir == "" {
		opts.StateDir = "/run"
	}
	if opts.Mounts == "" {
		opts.Mounts = "/proc/mounts"
	}
	lay, err := detect(opts.Mounts)
	if err != nil {
		return nil, err
	}
	m := &Model{spec: spec, opts: opts, lay: lay, path: filepath.Join(opts.StateDir, opts.Prefix+".json")}
	if err := m.start(); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("scalemodel: refusing a model: no rights to make cgroups in %s (uid %d; the model needs root)", lay.cpuDir(""), os.Geteuid())
		}
		return nil, err
	}
	return m, nil
}

func (m *Model) start() error {
	if err := m.cleanLeftovers(); err != nil {
		return err
	}
	if err := m.track(Item{Kind: "cgroup", Name: m.opts.Prefix}); err != nil {
		return err
	}
	if err := m.lay.mkdir(m.opts.Prefix); err != nil {
		m.Close()
		return err
	}
	return nil
}

// Spec returns the sizes the model's hosts get.
func (m *Model) Spec() Spec { return m.spec }

// NewHost makes a host of a role, sized by the spec. Its name must be unique
// in the model (app-1, app-2, db…).
func (m *Model) NewHost(name string, role Role) (*Host, error) {
	q, ok := m.spec.Quotas[role]
	if !ok {
		return nil, fmt.Errorf("scalemodel: host %s: unknown role %q", name, role)
	}
	if name == "" || strings.ContainsAny(name, "/. ") {
		return nil, fmt.Errorf("scalemodel: host name %q: want a plain name", name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errors.New("scalemodel: model closed")
	}
	for _, h := range m.hosts {
		if h.name == name {
			return nil, fmt.Errorf("scalemodel: host %s exists", name)
		}
	}
	h := &Host{m: m, name: name, role: role, quota: q, period: m.spec.Period, rel: m.opts.Prefix + "/" + name, made: time.Now()}
	if err := m.trackLocked(Item{Kind: "cgroup", Name: h.rel}); err != nil {
		return nil, err
	}
	if err := m.lay.mkdir(h.rel); err != nil {
		return nil, err
	}
	if err := m.lay.setQuota(h.rel, q, m.spec.Period); err != nil {
		m.lay.remove(h.rel, false)
		return nil, err
	}
	m.hosts = append(m.hosts, h)
	return h, nil
}

// Hosts returns the model's hosts in the order they were made.
func (m *Model) Hosts() []*Host {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.hosts)
}

// Track records something the caller is about to make for the model (a
// network namespace, a veth) before making it, so that Close, or the next
// model after a crash, removes it.
func (m *Model) Track(it Item) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.trackLocked(it)
}

func (m *Model) track(it Item) error { return m.Track(it) }

func (m *Model) trackLocked(it Item) error {
	m.items = append(m.items, it)
	return m.saveLocked()
}

// setKill marks a host's group as holding the model's own processes.
func (m *Model) setKill(rel string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.items {
		if m.items[i].Kind == "cgroup" && m.items[i].Name == rel {
			m.items[i].Kill = true
		}
	}
	return m.saveLocked()
}

func (m *Model) saveLocked() error {
	start, _ := startTime(os.Getpid())
	b, err := json.Marshal(state{PID: os.Getpid(), Start: start, Items: m.items})
	if err != nil {
		return fmt.Errorf("scalemodel: state: %w", err)
	}
	tmp := m.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("scalemodel: state file: %w", err)
	}
	if err := os.Rename(tmp, m.path); err != nil {
		return fmt.Errorf("scalemodel: state file: %w", err)
	}
	return nil
}

// cleanLeftovers undoes what a previous model with this prefix made, when
// its process is gone; a live owner keeps its prefix.
func (m *Model) cleanLeftovers() error {
	var st state
	b, err := os.ReadFile(m.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("scalemodel: state file: %w", err)
	default:
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("scalemodel: state file %s: %w", m.path, err)
		}
		if st.PID != os.Getpid() && alive(st.PID, st.Start) {
			return fmt.Errorf("scalemodel: refusing a model: prefix %s belongs to running pid %d (%s)", m.opts.Prefix, st.PID, m.path)
		}
	}
	// Groups under the prefix that a crash left unrecorded (made between
	// two state writes) go too: the prefix is the model's alone.
	items := st.Items
	for _, rel := range m.lay.children(m.opts.Prefix) {
		if !slices.ContainsFunc(items, func(it Item) bool { return it.Kind == "cgroup" && it.Name == rel }) {
			items = append(items, Item{Kind: "cgroup", Name: rel})
		}
	}
	if err := m.undo(items); err != nil {
		return fmt.Errorf("scalemodel: cleaning a previous model's leftovers: %w", err)
	}
	if err := os.Remove(m.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("scalemodel: state file: %w", err)
	}
	return nil
}

// undo removes items newest first: processes before the groups they ran in,
// subgroups before their parent.
func (m *Model) undo(items []Item) error {
	var errs []error
	for i := len(items) - 1; i >= 0; i-- {
		if err := m.undoOne(items[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Model) undoOne(it Item) error {
	switch it.Kind {
	case "process":
		if alive(it.PID, it.Start) {
			killPid(it.PID)
		}
		return nil
	case "cgroup":
		if _, err := os.Stat(m.lay.cpuDir(it.Name)); errors.Is(err, os.ErrNotExist) {
			if _, err := os.Stat(m.lay.acctDir(it.Name)); errors.Is(err, os.ErrNotExist) {
				return nil
			}
		}
		return m.lay.remove(it.Name, it.Kill)
	case "netns":
		return ipDel(it.Name, "netns", "del", it.Name)
	case "veth":
		return ipDel(it.Name, "link", "del", it.Name)
	}
	return fmt.Errorf("scalemodel: state lists an unknown kind %q", it.Kind)
}

// ipDel runs `ip ARGS`, where a thing already gone is not an error.
func ipDel(name string, args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such file") && !strings.Contains(string(out), "Cannot find device") {
		return fmt.Errorf("scalemodel: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Close kills the processes the model started, moves the ones it adopted
// back, and removes every group and everything tracked, then the state file.
// It is safe to call more than once.
func (m *Model) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	hosts, items := m.hosts, m.items
	m.mu.Unlock()
	for _, h := range hosts {
		h.killStarted()
	}
	err := m.undo(items)
	if err == nil {
		if rerr := os.Remove(m.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = fmt.Errorf("scalemodel: state file: %w", rerr)
		}
	}
	// On an error the state file stays, so the next model retries.
	return err
}

// Mark is a reading of every host's counters: the start of a window.
type Mark struct {
	At    time.Time
	hosts map[*Host]reading
}

type reading struct {
	usage time.Duration
	thr   Throttle
}

// Mark reads every host's counters now.
func (m *Model) Mark() Mark {
	mk := Mark{At: time.Now(), hosts: map[*Host]reading{}}
	for _, h := range m.Hosts() {
		u, _ := h.Usage()
		t, _ := h.Throttled()
		mk.hosts[h] = reading{u, t}
	}
	return mk
}

// HostStat is one host over a window: the shape of /topology.json's hosts.
type HostStat struct {
	Name  string  `json:"name"`
	Role  Role    `json:"role"`
	Quota float64 `json:"quota"` // CPUs
	// Used is CPUs used over the window: CPU time / wall time.
	Used float64 `json:"used"`
	// Throttled is the share of the window's CFS periods in which the host
	// hit its quota (0-1): near 1, this host is the bottleneck.
	Throttled float64 `json:"throttled"`
	// ThrottledMS is the time its processes waited for the next period.
	ThrottledMS float64 `json:"throttled_ms"`
	WindowS     float64 `json:"window_s"`
}

// Since returns every host's use from mk to now; a host made after mk
// counts from when it was made.
func (m *Model) Since(mk Mark) []HostStat { return m.between(mk, m.Mark()) }

func (m *Model) between(mk, now Mark) []HostStat {
	var out []HostStat
	for _, h := range m.Hosts() {
		from, ok := mk.hosts[h]
		start := mk.At
		if !ok {
			start = h.made
		}
		to, ok := now.hosts[h]
		if !ok {
			continue
		}
		wall := now.At.Sub(start)
		st := HostStat{Name: h.name, Role: h.role, Quota: h.quota, WindowS: wall.Seconds()}
		if wall > 0 {
			st.Used = float64(to.usage-from.usage) / float64(wall)
		}
		if p := to.thr.Periods - from.thr.Periods; p > 0 {
			st.Throttled = float64(to.thr.Throttled-from.thr.Throttled) / float64(p)
		}
		st.ThrottledMS = float64(to.thr.Time-from.thr.Time) / float64(time.Millisecond)
		out = append(out, st)
	}
	return out
}

// Snapshot returns every host's use since the previous Snapshot (the first
// one: since each host was made). For a measured window, take a Mark at its
// start and call Since at its end instead.
func (m *Model) Snapshot() []HostStat {
	m.mu.Lock()
	last := m.last
	m.mu.Unlock()
	now := m.Mark()
	m.mu.Lock()
	m.last = now
	m.mu.Unlock()
	return m.between(last, now)
}
