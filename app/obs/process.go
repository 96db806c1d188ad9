package obs

import (
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
)

// ProcessStats are what the server itself costs right now: the C10K scenario
// of the load tool (`loadtest --scenario connections`) reads them from
// /healthz?data=1 before and while it holds thousands of idle connections.
type ProcessStats struct {
	RSSBytes   int64  `json:"rss_bytes"`  // resident memory (/proc/self/statm)
	OpenFDs    int    `json:"open_fds"`   // entries in /proc/self/fd
	MaxFDs     uint64 `json:"max_fds"`    // RLIMIT_NOFILE, soft: Go raises it to the hard limit at start
	Goroutines int    `json:"goroutines"` // one per open connection, plus the app's own
	Threads    int    `json:"threads"`    // OS threads (/proc/self/status)
	// What the Go runtime holds of it: live and not yet collected heap
	// objects, and goroutine stacks (runtime/metrics, no stop-the-world).
	HeapBytes  int64 `json:"heap_bytes"`
	StackBytes int64 `json:"stack_bytes"`
}

// ReadProcessStats reads them; on a system without /proc the file-based
// figures stay zero.
func ReadProcessStats() *ProcessStats {
	ps := &ProcessStats{Goroutines: runtime.NumGoroutine()}
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(samples)
	if samples[0].Value.Kind() == metrics.KindUint64 {
		ps.HeapBytes = int64(samples[0].Value.Uint64())
	}
	if samples[1].Value.Kind() == metrics.KindUint64 {
		ps.StackBytes = int64(samples[1].Value.Uint64())
	}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			ps.RSSBytes = pages * int64(os.Getpagesize())
		}
	}
	if d, err := os.Open("/proc/self/fd"); err == nil {
		names, _ := d.Readdirnames(-1)
		d.Close()
		ps.OpenFDs = len(names) - 1 // not the one reading it
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		ps.MaxFDs = lim.Cur
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Threads:"); ok {
				ps.Threads, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
	}
	return ps
}
