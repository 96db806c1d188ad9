package loadtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The sweep's CPU accounting: how much CPU the load tool, the server and
// PostgreSQL each took while a stage was measured, read from /proc (Linux).
// Every side shares the machine, so a tool that takes more CPU than the
// server it measures is part of what limits the figures: the report says so.

// procStat is the part of /proc/<pid>/stat the sweep needs; times are in
// clock ticks.
type procStat struct {
	PID    int
	PPID   int
	UTime  uint64 // user CPU of the process itself
	STime  uint64 // system CPU of the process itself
	CUTime uint64 // user CPU of the children it has waited for (stage 0's CGI processes)
	CSTime uint64 // system CPU of the children it has waited for
}

// parseStat reads one /proc/<pid>/stat line. The command name (field 2) is
// in parentheses and may itself hold spaces and parentheses, so the fields
// are counted from the last ')'.
func parseStat(line string) (procStat, error) {
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 1 || end < open {
		return procStat{}, fmt.Errorf("loadtest: not a /proc stat line: %.40q", line)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line[:open]))
	if err != nil {
		return procStat{}, fmt.Errorf("loadtest: /proc stat pid: %w", err)
	}
	// After the name: state(3) ppid(4) … utime(14) stime(15) cutime(16) cstime(17).
	f := strings.Fields(line[end+1:])
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("loadtest: /proc stat line of pid %d has %d fields after the name, want at least 15", pid, len(f))
	}
	st := procStat{PID: pid}
	if st.PPID, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, fmt.Errorf("loadtest: /proc stat ppid: %w", err)
	}
	for i, dst := range []*uint64{&st.UTime, &st.STime, &st.CUTime, &st.CSTime} {
		// cutime and cstime are signed in the kernel (long), never negative in practice.
		v, err := strconv.ParseInt(f[11+i], 10, 64)
		if err != nil || v < 0 {
			return procStat{}, fmt.Errorf("loadtest: /proc stat field %d of pid %d: %q", 14+i, pid, f[11+i])
		}
		*dst = uint64(v)
	}
	return st, nil
}

// ownTicks is the CPU of the process itself; treeTicks adds its children.
func (s procStat) ownTicks() uint64 { return s.UTime + s.STime }

// procTable is one reading of every process: who is whose child.
type procTable struct {
	stat     map[int]procStat
	children map[int][]int
}

// readProcs reads /proc/*/stat once. Processes that exit while we read are
// skipped (their parent counts them once it has waited for them).
func readProcs(root string) (procTable, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return procTable{}, err
	}
	t := procTable{stat: map[int]procStat{}, children: map[int][]int{}}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(root + "/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		st, err := parseStat(string(b))
		if err != nil {
			continue
		}
		t.stat[st.PID] = st
		t.children[st.PPID] = append(t.children[st.PPID], st.PID)
	}
	return t, nil
}

// treeTicks is the CPU of pid and all its descendants: its own time, the
// children it has already waited for (cutime + cstime) and the live
// children's trees. Between two readings the difference counts a child that
// exited in between exactly once: alive at the first reading with its time
// so far, in its parent's cutime at the second with its whole time.
func (t procTable) treeTicks(pid int) (uint64, bool) {
	st, ok := t.stat[pid]
	if !ok {
		return 0, false
	}
	n := st.ownTicks() + st.CUTime + st.CSTime
	for _, c := range t.children[pid] {
		if c != pid {
			ct, _ := t.treeTicks(c)
			n += ct
		}
	}
	return n, true
}

// clockTicks is USER_HZ, the unit of /proc's times: AT_CLKTCK from the
// auxiliary vector, 100 (Linux's value on every common architecture) if
// that cannot be read.
var clockTicks = func() float64 {
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	const atClkTck = 17
	for i := 0; i+16 <= len(b); i += 16 {
		typ, val := binary.NativeEndian.Uint64(b[i:]), binary.NativeEndian.Uint64(b[i+8:])
		if typ == atClkTck && val > 0 {
			return float64(val)
		}
		if typ == 0 {
			break
		}
	}
	return 100
}()

// cpuReading is one reading of the three sides, in seconds of CPU since
// each process started, and of the whole machine's busy time.
type cpuReading struct {
	tool, server, postgres float64
	postgresOK             bool
	machine                float64 // every CPU's busy time since boot (/proc/stat)
	machineOK              bool
}

// parseMachineBusy reads the "cpu" line of /proc/stat: the ticks every CPU
// spent on anything but idle and iowait.
func parseMachineBusy(procStat string) (uint64, error) {
	line, _, _ := strings.Cut(procStat, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, fmt.Errorf("loadtest: /proc/stat starts with %.40q, not the cpu line", line)
	}
	var busy uint64
	// user nice system idle iowait irq softirq steal (guest time is already in user).
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("loadtest: /proc/stat cpu field %d: %q", i+1, v)
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, nil
}

// readCPU reads the load tool's own CPU (this process: its threads, not the
// migrate commands it waited for), the server's tree and PostgreSQL's tree
// (pgPID is the postmaster; 0 skips it).
func readCPU(serverPID, pgPID int) (cpuReading, error) {
	self, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return cpuReading{}, err
	}
	me, err := parseStat(string(self))
	if err != nil {
		return cpuReading{}, err
	}
	t, err := readProcs("/proc")
	if err != nil {
		return cpuReading{}, err
	}
	r := cpuReading{tool: float64(me.ownTicks()) / clockTicks}
	srv, ok := t.treeTicks(serverPID)
	if !ok {
		return cpuReading{}, errors.New("loadtest: the server's process is gone")
	}
	r.server = float64(srv) / clockTicks
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		if busy, err := parseMachineBusy(string(b)); err == nil {
			r.machine, r.machineOK = float64(busy)/clockTicks, true
		}
	}
	if pgPID > 0 {
		var pg uint64
		pg, r.postgresOK = t.treeTicks(pgPID)
		r.postgres = float64(pg) / clockTicks
	}
	return r, nil
}

// CPU is what each side took while a stage was measured: seconds of CPU
// (user + system) and milliseconds of CPU per measured request.
type CPU struct {
	Seconds    float64 `json:"seconds"` // the measured window
	Requests   int64   `json:"requests"`
	ToolS      float64 `json:"tool_s"`
	ServerS    float64 `json:"server_s"`
	PostgresS  float64 `json:"postgres_s"`
	PostgresOK bool    `json:"postgres_measured"` // false: PostgreSQL's processes were not found (see the sweep's postgres_note)
	// OthersS is the machine's busy CPU time that none of the three sides
	// took: other processes on a shared machine (and PostgreSQL's, if not
	// measured). It says how much the figures were disturbed.
	OthersS float64 `json:"others_s"`
	// MachineS is the CPU time the machine had in the window (cores × seconds).
	MachineS float64 `json:"machine_s"`
	// MachineBusyS is the machine's busy CPU time in the window (/proc/stat:
	// all but idle and iowait), whoever took it; MachineS minus it is what
	// stayed idle (the model mode's check that the machine was not the limit).
	MachineBusyS float64 `json:"machine_busy_s,omitempty"`
	MachineOK    bool    `json:"machine_measured,omitempty"`
	// ToolOverServer: the tool took more CPU than the server it measured,
	// so on a shared machine it may be what limits the figures.
	ToolOverServer bool `json:"tool_over_server"`
}

func cpuBetween(a, b cpuReading, seconds float64, requests int64) *CPU {
	c := &CPU{Seconds: seconds, Requests: requests, ToolS: b.tool - a.tool, ServerS: b.server - a.server,
		PostgresOK: a.postgresOK && b.postgresOK}
	if c.PostgresOK {
		c.PostgresS = b.postgres - a.postgres
	}
	if a.machineOK && b.machineOK {
		c.MachineBusyS, c.MachineOK = b.machine-a.machine, true
		c.OthersS = max(0, (b.machine-a.machine)-c.ToolS-c.ServerS-c.PostgresS)
	}
	c.ToolOverServer = c.ToolS > c.ServerS
	return c
}

// PerRequestMS is CPU milliseconds per measured request of s seconds.
func (c *CPU) PerRequestMS(s float64) float64 {
	if c.Requests == 0 {
		return 0
	}
	return s * 1000 / float64(c.Requests)
}

// PostgresParent finds the postmaster from a backend's pid (SELECT
// pg_backend_pid()): the backend's parent, when it runs on this machine and
// is PostgreSQL's. The sweep measures that process tree's CPU.
func PostgresParent(backendPID int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", backendPID))
	if err != nil {
		return 0, fmt.Errorf("PostgreSQL's backend %d is not a process on this machine (%v)", backendPID, err)
	}
	st, err := parseStat(string(b))
	if err != nil {
		return 0, err
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", st.PPID))
	if err != nil {
		return 0, fmt.Errorf("PostgreSQL's postmaster (pid %d): %v", st.PPID, err)
	}
	if name := strings.TrimSpace(string(comm)); name != "postgres" && name != "postmaster" {
		return 0, fmt.Errorf("the parent of PostgreSQL's backend %d is %q, not the postmaster", backendPID, name)
	}
	return st.PPID, nil
}
