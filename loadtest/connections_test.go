package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// crowdSite is the fake site plus what the connections scenario needs: the
// static file the crowd asks for and the process figures of /healthz?data=1,
// here this test process's own (it holds both ends of every connection).
// idle is the server's idle timeout (0: net/http's default).
func crowdSite(t *testing.T, idle time.Duration) *httptest.Server {
	t.Helper()
	site := &fakeSite{comments: map[string][]string{}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			fds, _ := os.ReadDir("/proc/self/fd")
			json.NewEncoder(w).Encode(map[string]any{
				"status": "ok", "stage": 4, "rows": map[string]int{"users": 5, "photos": 10},
				"process": ProcessInfo{RSSBytes: 1 << 20, OpenFDs: len(fds), MaxFDs: 1 << 20, Goroutines: runtime.NumGoroutine()},
			})
		case crowdPath:
			w.Header().Set("Content-Type", "text/css")
			w.Write([]byte("body{}"))
		default:
			site.ServeHTTP(w, r)
		}
	}))
	srv.Config.IdleTimeout = idle
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func TestConnectionsHoldsTheCrowdBesideTheBrowseMix(t *testing.T) {
	srv := crowdSite(t, 0)
	const n = 60
	r, err := RunConnections(context.Background(), Options{URL: srv.URL, Scenario: "connections", Connections: n,
		DialRate: 2000, Duration: 300 * time.Millisecond, Concurrency: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Established != n || r.Failed != 0 || r.StillOpen != n {
		t.Fatalf("established %d, failed %d (%v), still open %d; want all %d", r.Established, r.Failed, r.Causes, r.StillOpen, n)
	}
	// Both ends live in this process: at least one more file and one more
	// goroutine per connection while the crowd is held.
	if r.Held.OpenFDs-r.Before.OpenFDs < n || r.Held.Goroutines-r.Before.Goroutines < n {
		t.Fatalf("server figures before %+v, held %+v: the crowd is not there", r.Before, r.Held)
	}
	for name, phase := range map[string]*Result{"baseline": r.Baseline, "beside": r.WithCrowd, "after": r.BaselineAfter} {
		if phase == nil || phase.Total.Requests == 0 {
			t.Fatalf("the browse phase %s is missing", name)
		}
	}
	if r.P99Ratio <= 0 {
		t.Fatalf("p99 ratio %g", r.P99Ratio)
	}
	var out strings.Builder
	if err := WriteConnectionsText(&out, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{fmt.Sprintf("%d established", n), "RSS MB", "open fds", "goroutines", "beside the crowd", "alone (baseline)", "alone again, after"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("the report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestConnectionsCountsWhatTheServerDrops(t *testing.T) {
	// A server that closes idle connections at once: nothing stays open.
	srv := crowdSite(t, time.Millisecond)
	r, err := RunConnections(context.Background(), Options{URL: srv.URL, Scenario: "connections", Connections: 20,
		DialRate: 2000, Duration: 300 * time.Millisecond, Concurrency: 1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Established != 20 || r.StillOpen != 0 {
		t.Fatalf("established %d, still open %d; want 20 and 0", r.Established, r.StillOpen)
	}
}

// At an open-file limit too small for the crowd, the tool refuses with a
// message naming RLIMIT_NOFILE. The limit is lowered in a child process (the
// test binary run again), never in the test process itself.
func TestConnectionsNamesTheOpenFileLimit(t *testing.T) {
	if url := os.Getenv("LOADTEST_FD_LIMIT_CHILD"); url != "" {
		lim := syscall.Rlimit{Cur: 64, Max: 64}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			fmt.Println("setrlimit:", err)
			os.Exit(3)
		}
		_, err := RunConnections(context.Background(), Options{URL: url, Scenario: "connections", Connections: 200,
			DialRate: 1000, Duration: time.Second, Concurrency: 1})
		var le *LimitError
		fmt.Printf("limit error: %v\nerror: %v\n", errors.As(err, &le), err)
		os.Exit(0)
	}
	srv := crowdSite(t, 0)
	cmd := exec.Command(os.Args[0], "-test.run=^TestConnectionsNamesTheOpenFileLimit$")
	cmd.Env = append(os.Environ(), "LOADTEST_FD_LIMIT_CHILD="+srv.URL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "limit error: true") || !strings.Contains(string(out), "RLIMIT_NOFILE") || !strings.Contains(string(out), "is 64") {
		t.Fatalf("the error does not name the open-file limit of 64:\n%s", out)
	}
}

func TestDialErrorsNameTheirLimit(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"out of files", &os.SyscallError{Syscall: "socket", Err: syscall.EMFILE}, "RLIMIT_NOFILE 1024"},
		{"out of ports", &os.SyscallError{Syscall: "connect", Err: syscall.EADDRNOTAVAIL}, "ip_local_port_range 32768-60999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cause, atLimit := explainDialError(tt.err, 1024, 32768, 60999)
			if !atLimit || !strings.Contains(cause, tt.want) {
				t.Fatalf("%q (at limit %v), want it to name %q", cause, atLimit, tt.want)
			}
		})
	}
}
