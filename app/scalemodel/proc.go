package scalemodel

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// startTime reads a process's start time (clock ticks since boot, field 22
// of /proc/PID/stat). With the pid it names one process for good: a pid
// reused after a crash has another start time, so the leftovers' cleanup
// never kills a stranger.
func startTime(pid int) (uint64, bool) {
	st, ok := procStat(pid)
	if !ok || len(st) < 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(st[19], 10, 64)
	return n, err == nil
}

// parentPid reads field 4 of /proc/PID/stat.
func parentPid(pid int) (int, bool) {
	st, ok := procStat(pid)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(st[1])
	return n, err == nil
}

// procStat returns /proc/PID/stat's fields after the command name (which may
// hold spaces): index 0 is field 3 (state).
func procStat(pid int) ([]string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil, false
	}
	f := strings.Fields(string(b[i+1:]))
	return f, len(f) >= 2
}

// alive says whether the process pid started at start still runs.
func alive(pid int, start uint64) bool {
	s, ok := startTime(pid)
	return ok && s == start
}

// tree returns pid and all its descendants, read from /proc.
func tree(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, ok := parentPid(p); ok {
			children[pp] = append(children[pp], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

func killPid(pid int) {
	syscall.Kill(pid, syscall.SIGKILL)
}

// Proc is a process the model started in a host; the model kills it on
// Close, and reaps it.
type Proc struct {
	Cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startProc(cmd *exec.Cmd) (*Proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("scalemodel: start %s: %w", cmd.Path, err)
	}
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// Wait waits for the process to exit and returns what exec.Cmd.Wait did.
func (p *Proc) Wait() error { <-p.done; return p.err }

// kill ends the process and waits for it (bounded: a process in
// uninterruptible sleep is left to the cgroup's removal to report).
func (p *Proc) kill() {
	p.Cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}
