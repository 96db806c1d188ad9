package scalemodel

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The few cgroup files a host needs, written directly: cgroup v2's cpu.max
// and cpu.stat where v2 is mounted with its cpu controller, or v1's
// cpu.cfs_quota_us / cpu.cfs_period_us / cpu.stat plus cpuacct.usage where
// only v1 holds it. On this project's machines (and CI's) v1 mounts cpu and
// cpuacct as separate hierarchies, so a v1 host is a group in each. A library
// (containerd/cgroups) would cover both but brings a dependency tree for five
// files.

// layout says where the cpu controller lives: one v2 mount, or v1's cpu and
// cpuacct hierarchies (the same directory where they are co-mounted).
type layout struct {
	v2   string
	cpu  string
	acct string
}

// detect reads a mounts file (/proc/mounts unless a test points elsewhere)
// and finds the cpu controller, or says in one line why there is none.
func detect(mountsFile string) (layout, error) {
	f, err := os.Open(mountsFile)
	if err != nil {
		return layout{}, fmt.Errorf("scalemodel: cannot read the mount table: %w", err)
	}
	defer f.Close()
	var l layout
	var v2NoCPU string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 {
			continue
		}
		dir, fstype, opts := fields[1], fields[2], strings.Split(fields[3], ",")
		switch fstype {
		case "cgroup2":
			ctrl, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
			if err == nil && slices.Contains(strings.Fields(string(ctrl)), "cpu") {
				l.v2 = dir
			} else if v2NoCPU == "" {
				v2NoCPU = dir
			}
		case "cgroup":
			if slices.Contains(opts, "cpu") && l.cpu == "" {
				l.cpu = dir
			}
			if slices.Contains(opts, "cpuacct") && l.acct == "" {
				l.acct = dir
			}
		}
	}
	if err := sc.Err(); err != nil {
		return layout{}, fmt.Errorf("scalemodel: cannot read the mount table: %w", err)
	}
	switch {
	case l.cpu != "" && l.acct != "":
		// v1 holds cpu, so a v2 mount cannot also have it.
		return layout{cpu: l.cpu, acct: l.acct}, nil
	case l.v2 != "":
		return layout{v2: l.v2}, nil
	case l.cpu != "":
		return layout{}, fmt.Errorf("scalemodel: refusing a model: cgroup v1's cpu controller is mounted (%s) but cpuacct is not, so a host's CPU use could not be measured", l.cpu)
	case v2NoCPU != "":
		return layout{}, fmt.Errorf("scalemodel: refusing a model: no cpu controller (cgroup v2 at %s lists no cpu in cgroup.controllers, and no cgroup v1 cpu hierarchy is mounted)", v2NoCPU)
	}
	return layout{}, errors.New("scalemodel: refusing a model: no cpu controller (no cgroup v1 cpu hierarchy or cgroup v2 mount in the mount table)")
}

// dirs returns a group's directory in each hierarchy (rel "" is the root).
func (l layout) dirs(rel string) []string {
	if l.v2 != "" {
		return []string{filepath.Join(l.v2, rel)}
	}
	if l.cpu == l.acct {
		return []string{filepath.Join(l.cpu, rel)}
	}
	return []string{filepath.Join(l.cpu, rel), filepath.Join(l.acct, rel)}
}

func (l layout) cpuDir(rel string) string {
	if l.v2 != "" {
		return filepath.Join(l.v2, rel)
	}
	return filepath.Join(l.cpu, rel)
}

func (l layout) acctDir(rel string) string {
	if l.v2 != "" {
		return filepath.Join(l.v2, rel)
	}
	return filepath.Join(l.acct, rel)
}

// mkdir makes a group in every hierarchy. Under v2 the parent must hand the
// cpu controller down (cgroup.subtree_control) before a child can use it.
func (l layout) mkdir(rel string) error {
	if l.v2 != "" {
		parent := filepath.Join(l.v2, filepath.Dir(rel))
		if err := writeFile(filepath.Join(parent, "cgroup.subtree_control"), "+cpu"); err != nil {
			return err
		}
	}
	for _, d := range l.dirs(rel) {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("scalemodel: make cgroup %s: %w", d, err)
		}
	}
	if _, err := os.Stat(filepath.Join(l.cpuDir(rel), l.quotaFile())); err != nil {
		return fmt.Errorf("scalemodel: refusing a model: %s has no %s (a kernel without CFS bandwidth control cannot cap a host)", l.cpuDir(rel), l.quotaFile())
	}
	return nil
}

func (l layout) quotaFile() string {
	if l.v2 != "" {
		return "cpu.max"
	}
	return "cpu.cfs_quota_us"
}

// setQuota caps a group at quota CPUs per period.
func (l layout) setQuota(rel string, quota float64, period time.Duration) error {
	periodUS := period.Microseconds()
	quotaUS := int64(quota*float64(periodUS) + 0.5)
	dir := l.cpuDir(rel)
	if l.v2 != "" {
		return writeFile(filepath.Join(dir, "cpu.max"), fmt.Sprintf("%d %d", quotaUS, periodUS))
	}
	// The period first: the quota is checked against it.
	if err := writeFile(filepath.Join(dir, "cpu.cfs_period_us"), strconv.FormatInt(periodUS, 10)); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "cpu.cfs_quota_us"), strconv.FormatInt(quotaUS, 10))
}

// addPid moves a process (all its threads) into the group.
func (l layout) addPid(rel string, pid int) error {
	for _, d := range l.dirs(rel) {
		if err := writeFile(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// procs lists the processes in the group, in any of its hierarchies.
func (l layout) procs(rel string) ([]int, error) {
	var pids []int
	for _, d := range l.dirs(rel) {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("scalemodel: %w", err)
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids, nil
}

// usage reads the CPU time the group has used since it was made.
func (l layout) usage(rel string) (time.Duration, error) {
	if l.v2 != "" {
		st, err := readStat(filepath.Join(l.v2, rel, "cpu.stat"))
		return time.Duration(st["usage_usec"]) * time.Microsecond, err
	}
	b, err := os.ReadFile(filepath.Join(l.acctDir(rel), "cpuacct.usage"))
	if err != nil {
		return 0, fmt.Errorf("scalemodel: %w", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("scalemodel: cpuacct.usage %q: %w", b, err)
	}
	return time.Duration(n), nil
}

// Throttle is a host's CFS throttling since it was made (cpu.stat).
type Throttle struct {
	Periods   uint64        // enforcement periods in which the host ran
	Throttled uint64        // of those, periods in which it hit its quota
	Time      time.Duration // total time its processes waited for the next period
}

func (l layout) throttle(rel string) (Throttle, error) {
	st, err := readStat(filepath.Join(l.cpuDir(rel), "cpu.stat"))
	if err != nil {
		return Throttle{}, err
	}
	t := Throttle{Periods: uint64(st["nr_periods"]), Throttled: uint64(st["nr_throttled"])}
	if l.v2 != "" {
		t.Time = time.Duration(st["throttled_usec"]) * time.Microsecond
	} else {
		t.Time = time.Duration(st["throttled_time"])
	}
	return t, nil
}

// remove empties a group and deletes it in every hierarchy. Its processes
// are killed (kill) or moved to the hierarchy's root, where a process the
// model adopted (the postmaster) came from on these machines.
func (l layout) remove(rel string, kill bool) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := l.procs(rel)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("scalemodel: cgroup %s still holds processes %v", rel, pids)
		}
		for _, pid := range pids {
			if kill {
				killPid(pid)
			} else {
				l.addPid("", pid) // a process that exits meanwhile fails here harmlessly
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	var errs []error
	for _, d := range l.dirs(rel) {
		// A group whose last task just exited can answer EBUSY for a moment.
		var err error
		for range 50 {
			if err = os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("scalemodel: remove cgroup: %w", err))
		}
	}
	return errors.Join(errs...)
}

// children lists the group's subgroups (relative paths), deepest first, so
// they can be removed in that order.
func (l layout) children(rel string) []string {
	var out []string
	seen := map[string]bool{}
	for _, root := range l.dirs("") {
		filepath.WalkDir(filepath.Join(root, rel), func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			r, _ := filepath.Rel(root, p)
			if r != rel && !seen[r] {
				seen[r] = true
				out = append(out, r)
			}
			return nil
		})
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return out
}

func readStat(path string) (map[string]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scalemodel: %w", err)
	}
	st := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			st[k] = n
		}
	}
	return st, nil
}

func writeFile(path, s string) error {
	// Not os.WriteFile: cgroup files exist already and must not be truncated
	// or created; one write call carries the value.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("scalemodel: %w", err)
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("scalemodel: write %q to %s: %w", s, path, err)
	}
	return nil
}
