// Package spawn retells the gevent talks' two tables in Go: spawn 100 …
// 100,000 tasks that sleep, as goroutines and as OS threads (goroutines
// locked to their thread with runtime.LockOSThread, so that each holds one),
// and measure how long it takes until all have finished and how much memory
// the process holds while all of them sleep.
//
// Each figure comes from a fresh process (the caller runs one cell per
// process: see RunCell), so that one row's memory does not stay in the next
// row's figure, and so that a thread count the machine refuses ends a child,
// not the table.
package spawn

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The kinds of task and the measures.
const (
	Goroutine = "goroutine"
	Thread    = "thread"
	Time      = "time"   // spawn N tasks that sleep Sleep; time until all have finished
	Memory    = "memory" // spawn N tasks that sleep until told; resident memory while all sleep
)

// Cell is one measurement: one kind, one measure, one N.
type Cell struct {
	Kind    string `json:"kind"`
	Measure string `json:"measure"`
	N       int    `json:"n"`
	// Time: seconds from the first spawn until the last task finished, one
	// per repetition.
	Seconds []float64 `json:"seconds,omitempty"`
	// Memory: the process's resident and virtual size while all N sleep,
	// and its resident size before the first spawn.
	RSSBytes     int64 `json:"rss_bytes,omitempty"`
	BaseRSSBytes int64 `json:"base_rss_bytes,omitempty"`
	VMBytes      int64 `json:"vm_bytes,omitempty"`
	Threads      int   `json:"threads,omitempty"` // OS threads of the process at that moment
	// NotRun says why the cell was not measured (a limit of this machine);
	// Failed, why a measurement that was started failed.
	NotRun string `json:"not_run,omitempty"`
	Failed string `json:"failed,omitempty"`
}

// Measure runs one cell in this process. For threads it raises the
// runtime's own thread limit (debug.SetMaxThreads, 10,000 by default) to n
// plus a margin: the kernel's limits are the ones the table is about.
func Measure(kind, measure string, n int, sleep time.Duration, repeat int) (Cell, error) {
	c := Cell{Kind: kind, Measure: measure, N: n}
	if kind != Goroutine && kind != Thread {
		return c, fmt.Errorf("spawn: unknown kind %q", kind)
	}
	if kind == Thread {
		debug.SetMaxThreads(max(10000, n+1000))
	}
	switch measure {
	case Time:
		for range max(repeat, 1) {
			c.Seconds = append(c.Seconds, spawnAndSleep(kind, n, sleep).Seconds())
			runtime.GC()
		}
	case Memory:
		spawnAndHold(kind, n, &c)
	default:
		return c, fmt.Errorf("spawn: unknown measure %q", measure)
	}
	return c, nil
}

// task is one spawned task: a goroutine, or one locked to its own OS thread.
// A locked goroutine that blocks keeps its thread blocked with it, and one
// that returns without unlocking ends its thread: a thread per task.
func task(kind string, body func()) {
	go func() {
		if kind == Thread {
			runtime.LockOSThread()
		}
		body()
	}()
}

func spawnAndSleep(kind string, n int, sleep time.Duration) time.Duration {
	var wg sync.WaitGroup
	wg.Add(n)
	start := time.Now()
	for range n {
		task(kind, func() { time.Sleep(sleep); wg.Done() })
	}
	wg.Wait()
	return time.Since(start)
}

func spawnAndHold(kind string, n int, c *Cell) {
	runtime.GC()
	debug.FreeOSMemory()
	c.BaseRSSBytes, _ = memory()
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	var done sync.WaitGroup
	done.Add(n)
	for range n {
		task(kind, func() { started.Done(); <-release; done.Done() })
	}
	started.Wait()
	time.Sleep(200 * time.Millisecond) // the last ones reach their receive
	c.RSSBytes, c.VMBytes = memory()
	c.Threads = threads()
	close(release)
	done.Wait()
}

// memory is the process's resident and virtual size (/proc/self/statm).
func memory() (rss, vm int64) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, 0
	}
	page := int64(os.Getpagesize())
	v, _ := strconv.ParseInt(f[0], 10, 64)
	r, _ := strconv.ParseInt(f[1], 10, 64)
	return r * page, v * page
}

func threads() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// ThreadLimit is how many more OS threads this machine lets a process make,
// and the limit that decides it.
type ThreadLimit struct {
	Max int
	Why string
}

// reserve is left to the rest of the machine: this table must not take the
// last pids from the other programs running beside it.
const reserve = 0.25

// MachineThreadLimit reads the kernel's limits on threads (threads-max,
// pid_max, the cgroup's pids.max, RLIMIT_NPROC), takes away the threads that
// exist now and a quarter of the smallest limit for everyone else.
func MachineThreadLimit() ThreadLimit {
	type limit struct {
		name string
		n    int
	}
	var limits []limit
	readInt := func(path string) (int, bool) {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, false
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		return n, err == nil
	}
	if n, ok := readInt("/proc/sys/kernel/threads-max"); ok {
		limits = append(limits, limit{"kernel.threads-max", n})
	}
	if n, ok := readInt("/proc/sys/kernel/pid_max"); ok {
		limits = append(limits, limit{"kernel.pid_max (each thread takes a pid)", n})
	}
	for _, p := range []string{"/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"} {
		if n, ok := readInt(p); ok {
			limits = append(limits, limit{"the cgroup's pids.max", n})
		}
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(6 /* RLIMIT_NPROC on Linux */, &rl) == nil && rl.Cur < 1<<31 && os.Geteuid() != 0 {
		limits = append(limits, limit{"RLIMIT_NPROC (ulimit -u)", int(rl.Cur)})
	}
	if len(limits) == 0 {
		return ThreadLimit{Max: 10000, Why: "no kernel limits readable here; 10,000 assumed"}
	}
	sort.Slice(limits, func(i, j int) bool { return limits[i].n < limits[j].n })
	low := limits[0]
	inUse := 0
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		// "0.50 0.40 0.30 2/129 12345": 129 threads exist now.
		if f := strings.Fields(string(b)); len(f) > 3 {
			if _, total, ok := strings.Cut(f[3], "/"); ok {
				inUse, _ = strconv.Atoi(total)
			}
		}
	}
	left := low.n - inUse - int(float64(low.n)*reserve)
	return ThreadLimit{Max: max(left, 0), Why: fmt.Sprintf("%s is %d; %d threads exist now and a quarter is left to the rest of the machine", low.name, low.n, inUse)}
}

// Options say which table to make.
type Options struct {
	Sizes   []int         // 100, 1000, 10000, 100000
	Sleep   time.Duration // of the time table's tasks: 200 ms
	Repeat  int           // time cells per size and kind
	Threads ThreadLimit   // the most OS threads to ask for
	// RunCell measures one cell; the command runs each in a fresh process.
	// Nil measures in this process.
	RunCell func(ctx context.Context, kind, measure string, n int) (Cell, error)
	// Progress, when set, hears of each cell as it starts.
	Progress func(kind, measure string, n int)
}

// Table is the two tables: every size × kind × measure.
type Table struct {
	Sleep       string `json:"sleep"`
	ThreadLimit int    `json:"thread_limit"`
	LimitWhy    string `json:"thread_limit_why"`
	Cells       []Cell `json:"cells"`
}

// Run measures the table. A thread cell beyond the machine's limit is not
// run, and once a thread cell fails the larger ones are not run either.
func Run(ctx context.Context, o Options) (*Table, error) {
	if o.RunCell == nil {
		o.RunCell = func(_ context.Context, kind, measure string, n int) (Cell, error) {
			return Measure(kind, measure, n, o.Sleep, o.Repeat)
		}
	}
	t := &Table{Sleep: o.Sleep.String(), ThreadLimit: o.Threads.Max, LimitWhy: o.Threads.Why}
	for _, measure := range []string{Time, Memory} {
		threadsFailed := ""
		for _, n := range o.Sizes {
			for _, kind := range []string{Goroutine, Thread} {
				if err := ctx.Err(); err != nil {
					return t, err
				}
				c := Cell{Kind: kind, Measure: measure, N: n}
				switch {
				case kind == Thread && threadsFailed != "":
					c.NotRun = "a smaller thread count already failed: " + threadsFailed
				case kind == Thread && n > o.Threads.Max:
					c.NotRun = fmt.Sprintf("this machine allows about %d more threads: %s", o.Threads.Max, o.Threads.Why)
				default:
					if o.Progress != nil {
						o.Progress(kind, measure, n)
					}
					var err error
					if c, err = o.RunCell(ctx, kind, measure, n); err != nil {
						c = Cell{Kind: kind, Measure: measure, N: n, Failed: err.Error()}
						if kind == Thread {
							threadsFailed = fmt.Sprintf("%d threads: %v", n, err)
						}
					}
				}
				t.Cells = append(t.Cells, c)
			}
		}
	}
	return t, nil
}

// Cell finds a cell of the table.
func (t *Table) Cell(kind, measure string, n int) (Cell, bool) {
	for _, c := range t.Cells {
		if c.Kind == kind && c.Measure == measure && c.N == n {
			return c, true
		}
	}
	return Cell{}, false
}
