package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"
)

// The connections scenario is C10K: can one server hold ten thousand idle
// keep-alive connections, what does each cost it, and does the traffic beside
// them suffer? It measures the browse mix alone (the baseline), then opens
// the crowd at a bounded dial rate (one request each, then idle), reads the
// server's own figures from /healthz?data=1, measures the browse mix again
// beside the crowd, and once more alone after it.

// crowdPath is the one request each idle connection makes: a small static
// file, so that the crowd costs the server connections, not work.
const crowdPath = "/static/style.css"

// ProcessInfo is what the server says it costs (the "process" of /healthz?data=1).
type ProcessInfo struct {
	RSSBytes   int64  `json:"rss_bytes"`
	OpenFDs    int    `json:"open_fds"`
	MaxFDs     uint64 `json:"max_fds"`
	Goroutines int    `json:"goroutines"`
	Threads    int    `json:"threads"`
	HeapBytes  int64  `json:"heap_bytes"`  // Go heap objects, live and not yet collected
	StackBytes int64  `json:"stack_bytes"` // goroutine stacks
}

// ConnectionsResult is a connections run.
type ConnectionsResult struct {
	Tool        string         `json:"tool"`
	URL         string         `json:"url"`
	Asked       int            `json:"connections"`
	DialRate    float64        `json:"dial_rate"`
	Established int            `json:"established"`
	Failed      int            `json:"failed"`
	Causes      map[string]int `json:"failure_causes,omitempty"`
	DialSeconds float64        `json:"dial_s"`
	// StillOpen is how many of the crowd the server had not closed when the
	// browse mix beside them ended.
	StillOpen int `json:"still_open"`
	Limits    struct {
		ToolMaxFDs uint64 `json:"tool_max_fds"`
		PortRange  string `json:"ephemeral_ports"`
	} `json:"limits"`
	// Server figures before the crowd, while it is held idle, and at the end
	// of the browse mix beside it.
	Before ProcessInfo `json:"server_before"`
	Held   ProcessInfo `json:"server_held"`
	After  ProcessInfo `json:"server_after"`
	// PerConnection is (Held - Before) / Established.
	PerConnection struct {
		RSSBytes   float64 `json:"rss_bytes"`
		HeapBytes  float64 `json:"heap_bytes"`
		StackBytes float64 `json:"stack_bytes"`
		FDs        float64 `json:"fds"`
		Goroutines float64 `json:"goroutines"`
	} `json:"per_connection"`
	Baseline  *Result `json:"baseline"`
	WithCrowd *Result `json:"with_crowd"`
	// BaselineAfter is the browse mix alone again once the crowd is gone:
	// the phase beside the crowd is compared with both alone phases, which
	// bracket it (the cache warms, the machine's load changes).
	BaselineAfter *Result `json:"baseline_after"`
	// P99Ratio is the p99 beside the crowd over the mean of the alone ones.
	P99Ratio float64 `json:"p99_ratio"`
}

// LimitError is a connection count the machine's limits cannot hold; it
// names the limit.
type LimitError struct{ Msg string }

func (e *LimitError) Error() string { return e.Msg }

// RunConnections runs the connections scenario: o.Connections idle
// connections dialed at o.DialRate, with the browse mix (o.Duration,
// o.Concurrency) measured before and beside them.
func RunConnections(ctx context.Context, o Options) (*ConnectionsResult, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	r := &ConnectionsResult{Tool: "flickrkillr loadtest --scenario connections", URL: o.URL, Asked: o.Connections, DialRate: o.DialRate}
	maxFDs, err := raiseOpenFileLimit()
	if err != nil {
		return nil, err
	}
	r.Limits.ToolMaxFDs = maxFDs
	// The crowd, the browse users (twice over: a run's connections close as
	// the next opens), and the tool's own files.
	need := uint64(o.Connections + 2*o.Concurrency + 64)
	if need > maxFDs {
		return nil, &LimitError{fmt.Sprintf("--connections %d needs about %d open files in this process, but its open-file limit "+
			"(RLIMIT_NOFILE, soft and hard) is %d: raise the hard limit (as root: ulimit -Hn; under systemd: LimitNOFILE=) or ask for fewer connections",
			o.Connections, need, maxFDs)}
	}
	lo, hi, err := ephemeralPorts()
	if err == nil {
		r.Limits.PortRange = fmt.Sprintf("%d-%d", lo, hi)
		if ports := hi - lo + 1; o.Connections+2*o.Concurrency > ports {
			return nil, &LimitError{fmt.Sprintf("--connections %d to one server needs a local port each, but the ephemeral port range "+
				"(net.ipv4.ip_local_port_range) is %d-%d, %d ports: widen it (sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\") or ask for fewer",
				o.Connections, lo, hi, ports)}
		}
	}

	setup, err := newClient(o.URL, 30*time.Second)
	if err != nil {
		return nil, err
	}
	defer setup.Close()
	server, err := serverProcess(ctx, setup)
	if err != nil {
		return nil, err
	}
	if server.MaxFDs > 0 && uint64(server.OpenFDs+o.Connections+2*o.Concurrency) > server.MaxFDs {
		return nil, &LimitError{fmt.Sprintf("--connections %d: the server has %d files open and may open %d (its RLIMIT_NOFILE): "+
			"raise the server's limit (its hard limit; Go raises the soft one) or ask for fewer connections",
			o.Connections, server.OpenFDs, server.MaxFDs)}
	}

	browse := o
	browse.Scenario = "browse"
	if r.Baseline, err = Run(ctx, browse); err != nil {
		return r, fmt.Errorf("baseline: %w", err)
	}
	if r.Before, err = serverProcess(ctx, setup); err != nil {
		return r, err
	}

	crowd := &crowd{}
	defer crowd.close()
	start := time.Now()
	crowd.open(ctx, o, setup.addr, setup.host, maxFDs, lo, hi)
	r.DialSeconds = time.Since(start).Seconds()
	r.Established, r.Failed, r.Causes = int(crowd.established.Load()), int(crowd.failed.Load()), crowd.causeCounts()
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	if r.Established == 0 {
		return r, fmt.Errorf("no connection of the crowd was established: %s", topCause(r.Causes))
	}
	sleepUntil(ctx, time.Now().Add(time.Second)) // let the server's last handlers go idle
	if r.Held, err = serverProcess(ctx, setup); err != nil {
		return r, err
	}
	n := float64(r.Established)
	r.PerConnection.RSSBytes = float64(r.Held.RSSBytes-r.Before.RSSBytes) / n
	r.PerConnection.HeapBytes = float64(r.Held.HeapBytes-r.Before.HeapBytes) / n
	r.PerConnection.StackBytes = float64(r.Held.StackBytes-r.Before.StackBytes) / n
	r.PerConnection.FDs = float64(r.Held.OpenFDs-r.Before.OpenFDs) / n
	r.PerConnection.Goroutines = float64(r.Held.Goroutines-r.Before.Goroutines) / n

	if r.WithCrowd, err = Run(ctx, browse); err != nil {
		return r, fmt.Errorf("beside the crowd: %w", err)
	}
	if r.After, err = serverProcess(ctx, setup); err != nil {
		return r, err
	}
	r.StillOpen = r.Established - int(crowd.dropped.Load())
	crowd.close()
	if r.BaselineAfter, err = Run(ctx, browse); err != nil {
		return r, fmt.Errorf("alone again after the crowd: %w", err)
	}
	if alone := (r.Baseline.Total.P99 + r.BaselineAfter.Total.P99) / 2; alone > 0 {
		r.P99Ratio = r.WithCrowd.Total.P99 / alone
	}
	return r, nil
}

// crowd is the idle connections: one goroutine each waits for the server to
// close it, which is how a drop is noticed without sending anything.
type crowd struct {
	mu          sync.Mutex
	conns       []net.Conn
	causes      map[string]int
	closing     atomic.Bool
	established atomic.Int64
	failed      atomic.Int64
	dropped     atomic.Int64
	watchers    sync.WaitGroup
}

// open dials o.Connections connections at o.DialRate per second, at most 256
// at a time, each sending one request. It stops early at a limit of this
// machine (the open-file limit, the ephemeral ports): the rest would fail
// the same way.
func (c *crowd) open(ctx context.Context, o Options, addr, host string, maxFDs uint64, lo, hi int) {
	req := []byte("GET " + crowdPath + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: flickrkillr-loadtest (idle crowd)\r\n\r\n")
	slots := make(chan struct{}, 256)
	var wg sync.WaitGroup
	var stop atomic.Bool
	start := time.Now()
	interval := time.Duration(float64(time.Second) / o.DialRate)
	for i := 0; i < o.Connections && !stop.Load(); i++ {
		if !sleepUntil(ctx, start.Add(time.Duration(i)*interval)) {
			break
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			conn, err := c.dial(ctx, addr, req)
			if err != nil {
				cause, atLimit := explainDialError(err, maxFDs, lo, hi)
				c.fail(cause)
				if atLimit {
					stop.Store(true)
				}
				return
			}
			c.keep(conn)
		}()
	}
	wg.Wait()
}

func (c *crowd) dial(ctx context.Context, addr string, req []byte) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(req); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 1024)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	switch {
	case err != nil:
	case res.StatusCode != http.StatusOK:
		err = fmt.Errorf("GET %s: status %d", crowdPath, res.StatusCode)
	case res.Close:
		err = fmt.Errorf("GET %s: the server closed the connection (no keep-alive)", crowdPath)
	case br.Buffered() > 0:
		err = fmt.Errorf("GET %s: bytes after the answer", crowdPath)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

func (c *crowd) keep(conn net.Conn) {
	c.mu.Lock()
	c.conns = append(c.conns, conn)
	c.mu.Unlock()
	c.established.Add(1)
	c.watchers.Add(1)
	go func() {
		defer c.watchers.Done()
		var b [1]byte
		conn.Read(b[:]) // returns when the server closes it, or we do
		if !c.closing.Load() {
			c.dropped.Add(1)
		}
	}()
}

func (c *crowd) fail(cause string) {
	c.failed.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.causes == nil {
		c.causes = map[string]int{}
	}
	c.causes[cause]++
}

func (c *crowd) causeCounts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.causes
}

func (c *crowd) close() {
	c.closing.Store(true)
	c.mu.Lock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
	c.mu.Unlock()
	c.watchers.Wait()
}

// explainDialError names the limit behind a failed connection; atLimit says
// that the next dials would fail the same way.
func explainDialError(err error, maxFDs uint64, lo, hi int) (cause string, atLimit bool) {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.EMFILE):
		return fmt.Sprintf("this process's open-file limit (RLIMIT_NOFILE %d) is reached", maxFDs), true
	case errors.Is(err, syscall.ENFILE):
		return "the system-wide open-file limit (fs.file-max) is reached", true
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Sprintf("no ephemeral port left (net.ipv4.ip_local_port_range %d-%d)", lo, hi), true
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (is the server running? its listen backlog full?)", false
	case errors.As(err, &ne) && ne.Timeout():
		return "no answer within the time limit (the server may be at its open-file limit: see its RLIMIT_NOFILE, max_fds in /healthz?data=1)", false
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		return "the server closed the connection before answering (its open-file limit?)", false
	}
	return err.Error(), false
}

func topCause(causes map[string]int) string {
	best, n := "", 0
	for c, k := range causes {
		if k > n {
			best, n = c, k
		}
	}
	return best
}

// raiseOpenFileLimit lifts this process's soft RLIMIT_NOFILE to its hard
// limit (which only root can raise) and returns it.
func raiseOpenFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read the open-file limit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raise the open-file limit to %d: %w", lim.Max, err)
		}
	}
	return lim.Cur, nil
}

// ephemeralPorts reads the range of local ports Linux gives to outgoing
// connections.
func ephemeralPorts() (lo, hi int, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscanf(string(b), "%d %d", &lo, &hi); err != nil {
		return 0, 0, err
	}
	return lo, hi, nil
}

// serverProcess reads the server's own figures from /healthz?data=1.
func serverProcess(ctx context.Context, c *client) (ProcessInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var res response
	if err := c.do(ctx, http.MethodGet, "/healthz?data=1", nil, &res); err != nil {
		return ProcessInfo{}, fmt.Errorf("%w: %s: %v", ErrUnreachable, c.base(), err)
	}
	var h struct {
		Process *ProcessInfo `json:"process"`
	}
	if res.status != http.StatusOK || json.Unmarshal(res.body, &h) != nil {
		return ProcessInfo{}, fmt.Errorf("%w: %s/healthz?data=1 answered %d", ErrUnreachable, c.base(), res.status)
	}
	if h.Process == nil {
		return ProcessInfo{}, fmt.Errorf("%s/healthz?data=1 has no \"process\" figures (memory, files, goroutines): is it an older build?", c.base())
	}
	return *h.Process, nil
}

// WriteConnectionsText writes the human report of a connections run.
func WriteConnectionsText(w io.Writer, r *ConnectionsResult) error {
	fmt.Fprintf(w, "%s — %s\n", r.Tool, r.URL)
	fmt.Fprintf(w, "crowd:    %d asked, %d established, %d failed, %d still open at the end; dialed at %g/s in %.1fs\n",
		r.Asked, r.Established, r.Failed, r.StillOpen, r.DialRate, r.DialSeconds)
	fmt.Fprintf(w, "limits:   this tool's RLIMIT_NOFILE %d, ephemeral ports %s\n", r.Limits.ToolMaxFDs, r.Limits.PortRange)
	for _, c := range sortedCauses(r.Causes) {
		fmt.Fprintf(w, "  failed: %s (%d×)\n", c, r.Causes[c])
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tbefore\tcrowd held\tafter browse\tper connection\t")
	fmt.Fprintf(tw, "RSS MB\t%.1f\t%.1f\t%.1f\t%.1f KB\t\n", mb(r.Before.RSSBytes), mb(r.Held.RSSBytes), mb(r.After.RSSBytes), r.PerConnection.RSSBytes/1024)
	fmt.Fprintf(tw, "  Go heap MB\t%.1f\t%.1f\t%.1f\t%.1f KB\t\n", mb(r.Before.HeapBytes), mb(r.Held.HeapBytes), mb(r.After.HeapBytes), r.PerConnection.HeapBytes/1024)
	fmt.Fprintf(tw, "  stacks MB\t%.1f\t%.1f\t%.1f\t%.1f KB\t\n", mb(r.Before.StackBytes), mb(r.Held.StackBytes), mb(r.After.StackBytes), r.PerConnection.StackBytes/1024)
	fmt.Fprintf(tw, "open fds\t%d\t%d\t%d\t%.2f\t\n", r.Before.OpenFDs, r.Held.OpenFDs, r.After.OpenFDs, r.PerConnection.FDs)
	fmt.Fprintf(tw, "goroutines\t%d\t%d\t%d\t%.2f\t\n", r.Before.Goroutines, r.Held.Goroutines, r.After.Goroutines, r.PerConnection.Goroutines)
	fmt.Fprintf(tw, "OS threads\t%d\t%d\t%d\t\t\n", r.Before.Threads, r.Held.Threads, r.After.Threads)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "browse mix\treq/s\tp50 ms\tp99 ms\terrors\t")
	for _, row := range []struct {
		name string
		res  *Result
	}{{"alone (baseline)", r.Baseline}, {"beside the crowd", r.WithCrowd}, {"alone again, after", r.BaselineAfter}} {
		if row.res == nil {
			continue
		}
		t := row.res.Total
		fmt.Fprintf(tw, "%s\t%.1f\t%.2f\t%.2f\t%d\t\n", row.name, t.RPS, t.P50, t.P99, t.Errors)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.P99Ratio > 0 {
		fmt.Fprintf(w, "p99 beside the crowd / alone (the mean of before and after): %.2f×\n", r.P99Ratio)
	}
	return nil
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func sortedCauses(causes map[string]int) []string {
	m := make(map[string]int64, len(causes))
	for k, v := range causes {
		m[k] = int64(v)
	}
	return topCauses(m, len(m))
}
