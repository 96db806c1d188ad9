package loadtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// SweepOptions say how to measure the stages, on one or both ladders.
type SweepOptions struct {
	Run     Options        // the measurement of each stage (URL is set by the sweep)
	Stages  []StageSchemas // the stages to measure, in order, with their schemas
	Ladder  string         // tagged, alone or both
	Current int64          // the schema version the database is at: measured first, restored at the end
	Warmup  time.Duration  // unrecorded load before each measurement
	// RetryPause is the wait before measuring a failed run again.
	RetryPause time.Duration
	// Redis says which Redis the servers use, for the report; BeforeRun,
	// when set, runs before each server starts (it empties a private Redis,
	// so that no run finds the cache of the one before).
	Redis     string
	BeforeRun func(ctx context.Context) error
	Exe       string   // the flickrkillr binary that migrates and serves
	Addr      string   // where each stage's server listens
	Env       []string // DATABASE_URL, DATA_DIR, REDIS_URL for the server
	Command   string   // how the sweep was started, for the report
	Rerun     string   // the one command that repeats it
	Note      string   // the operator's note for the report (say, a shared machine)
	// PostgresPID is the cluster's postmaster, whose process tree's CPU the
	// sweep reports; 0 with PostgresNote saying why it is not measured.
	PostgresPID  int
	PostgresNote string
	Log          func(format string, args ...any)
}

// StageSchemas is one stage of the build and the schema versions it runs on:
// its own (Own), and with --indexes (Indexed; equal to Own from the stage
// that adds the indexes on, 0 when the build has no index migration).
type StageSchemas struct {
	Stage   int    `json:"stage"`
	Name    string `json:"name"`
	Own     int64  `json:"own_schema"`
	Indexed int64  `json:"indexed_schema,omitempty"`
	// Mixes are further mixes to measure the stage on, as --anonymous
	// shares, beside the sweep's own (the topology stages, 7 and 8, are also
	// measured with most visitors anonymous: stage 8's front cache serves
	// only them). Each is a run of its own, outside the ladders' steps.
	Mixes []float64 `json:"mixes,omitempty"`
}

// The two ladders.
const (
	LadderTagged = "tagged" // each stage on its own schema, as the workshop tags build it
	LadderAlone  = "alone"  // stages before the indexes on the index schema: each step alone
)

// Ladders lists the --ladder values.
var Ladders = []string{LadderTagged, LadderAlone, "both"}

var ladderTitles = map[string]string{
	LadderTagged: "as the tags build it",
	LadderAlone:  "each step alone (--indexes)",
}

// SweepResult is a sweep: the runs in the order they were measured, and the
// ladders that read them.
type SweepResult struct {
	Command      string      `json:"command"`
	Rerun        string      `json:"rerun"`
	Note         string      `json:"note,omitempty"`
	Warmup       string      `json:"warmup"`
	Redis        string      `json:"redis"`
	Host         HostInfo    `json:"host"`
	Started      time.Time   `json:"started"`
	PostgresNote string      `json:"postgres_note,omitempty"`
	Runs         []*SweepRun `json:"runs"`
	Ladders      []Ladder    `json:"ladders"`
}

// SweepRun is one server measured: a stage's code on one schema. A run can
// be a step of both ladders (from stage 4 on, --indexes changes nothing).
type SweepRun struct {
	Stage   int      `json:"stage"`
	Name    string   `json:"name"`
	Indexes bool     `json:"indexes"` // served with --indexes
	Schema  int64    `json:"schema"`
	Ladders []string `json:"ladders"`
	// Anonymous is the run's --anonymous share; SecondMix marks a run on a
	// stage's further mix (StageSchemas.Mixes): not a ladder's step, but
	// shown beside its stage's step. Ladders are the ladders it belongs with.
	Anonymous float64 `json:"anonymous,omitempty"`
	SecondMix bool    `json:"second_mix,omitempty"`
	Result    *Result `json:"result,omitempty"`
	CPU       *CPU    `json:"cpu,omitempty"`
	Error     string  `json:"error,omitempty"`
	// Retried says why each earlier attempt failed, when the run was
	// measured again.
	Retried []string `json:"retried,omitempty"`
}

// Label names the run: "3 cache", "3 cache --indexes" or
// "7 scale-out --anonymous 0.9".
func (r *SweepRun) Label() string {
	l := fmt.Sprintf("%d %s", r.Stage, r.Name)
	if r.Indexes {
		l += " --indexes"
	}
	if r.Anonymous > 0 {
		l += fmt.Sprintf(" --anonymous %g", r.Anonymous)
	}
	return l
}

// Ladder is one ladder: for each stage, the run measured for it.
type Ladder struct {
	Name  string       `json:"name"`
	Title string       `json:"title"`
	Steps []LadderStep `json:"steps"`
}

// LadderStep is a stage of a ladder; Run indexes SweepResult.Runs.
type LadderStep struct {
	Stage int `json:"stage"`
	Run   int `json:"run"`
}

// HostInfo describes the machine for the record.
type HostInfo struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Memory string `json:"memory"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
}

// Failed lists the runs that could not be measured.
func (sr *SweepResult) Failed() []*SweepRun {
	var failed []*SweepRun
	for _, r := range sr.Runs {
		if r.Error != "" {
			failed = append(failed, r)
		}
	}
	return failed
}

// planSweep turns the stages and the ladder choice into runs, ordered to
// migrate as little as possible: the runs on the schema the database is at
// come first, then each other schema in turn (the index migration on the
// full seed takes a while, so each direction happens once). A stage whose
// own schema already has the indexes is one run that both ladders share.
func planSweep(stages []StageSchemas, ladder string, current int64) ([]*SweepRun, []Ladder, error) {
	var names []string
	switch ladder {
	case LadderTagged, LadderAlone:
		names = []string{ladder}
	case "both", "":
		names = []string{LadderTagged, LadderAlone}
	default:
		return nil, nil, fmt.Errorf("--ladder must be tagged, alone or both (got %q)", ladder)
	}
	type key struct {
		stage   int
		indexes bool
		mix     int // 0: the sweep's own; i: the stage's Mixes[i-1]
	}
	byKey := map[key]*SweepRun{}
	var runs []*SweepRun
	for _, name := range names {
		for _, st := range stages {
			k, schema := key{st.Stage, false, 0}, st.Own
			if name == LadderAlone {
				if st.Indexed == 0 {
					return nil, nil, fmt.Errorf("the %q ladder needs the index migration, which this build does not have: use --ladder tagged (or main)", LadderAlone)
				}
				if st.Indexed != st.Own {
					k, schema = key{st.Stage, true, 0}, st.Indexed
				}
			}
			for mix := 0; mix <= len(st.Mixes); mix++ {
				k.mix = mix
				r := byKey[k]
				if r == nil {
					r = &SweepRun{Stage: st.Stage, Name: st.Name, Indexes: k.indexes, Schema: schema}
					if mix > 0 {
						r.Anonymous, r.SecondMix = st.Mixes[mix-1], true
					}
					byKey[k] = r
					runs = append(runs, r)
				}
				r.Ladders = append(r.Ladders, name)
			}
		}
	}
	// Order: the current schema first, then the others in ascending version;
	// within a schema, by stage (a stage's further mixes after its own run:
	// the sort is stable).
	rank := func(r *SweepRun) int64 {
		if r.Schema == current {
			return -1
		}
		return r.Schema
	}
	sort.SliceStable(runs, func(i, j int) bool {
		if ri, rj := rank(runs[i]), rank(runs[j]); ri != rj {
			return ri < rj
		}
		return runs[i].Stage < runs[j].Stage
	})
	var ladders []Ladder
	for _, name := range names {
		l := Ladder{Name: name, Title: ladderTitles[name]}
		for _, st := range stages {
			for i, r := range runs {
				// A further mix's run is beside the step, not a step:
				// the report finds it by its stage (secondMixes).
				if r.Stage == st.Stage && slices.Contains(r.Ladders, name) && !r.SecondMix {
					l.Steps = append(l.Steps, LadderStep{Stage: st.Stage, Run: i})
				}
			}
		}
		ladders = append(ladders, l)
	}
	return runs, ladders, nil
}

// restoreArgs are the migrate flags that bring the database back to the
// schema version it was found at, or nil when no stage runs on it.
func restoreArgs(stages []StageSchemas, version int64) []string {
	for _, st := range stages {
		if st.Own == version {
			return []string{"--stage", fmt.Sprint(st.Stage)}
		}
	}
	for _, st := range stages {
		if st.Indexed == version {
			return []string{"--stage", fmt.Sprint(st.Stage), "--indexes"}
		}
	}
	return nil
}

// Sweep migrates, starts, warms up, measures and stops each run in turn,
// then brings the schema back to where it was.
func Sweep(ctx context.Context, so SweepOptions) (*SweepResult, error) {
	if so.Log == nil {
		so.Log = func(string, ...any) {}
	}
	runs, ladders, err := planSweep(so.Stages, so.Ladder, so.Current)
	if err != nil {
		return nil, err
	}
	for _, r := range runs {
		if !r.SecondMix {
			r.Anonymous = so.Run.Anonymous
		}
	}
	sr := &SweepResult{Command: so.Command, Rerun: so.Rerun, Note: so.Note, Warmup: so.Warmup.String(), Redis: so.Redis, Host: hostInfo(), Started: time.Now().UTC(),
		PostgresNote: so.PostgresNote, Runs: runs, Ladders: ladders}
	for _, run := range runs {
		err := sweepRun(ctx, so, run)
		// A shared machine can stall a server long enough for one request
		// to fail (a Redis timeout during the logins); up to two more
		// attempts after a pause keep the ladder whole, and the report
		// lists every failed attempt.
		for attempt := 2; err != nil && ctx.Err() == nil && attempt <= 3; attempt++ {
			run.Retried = append(run.Retried, err.Error())
			so.Log("%s failed (%v); attempt %d of 3 in %s", run.Label(), err, attempt, so.RetryPause)
			if !sleepUntil(ctx, time.Now().Add(so.RetryPause)) {
				break
			}
			run.Result, run.CPU = nil, nil
			err = sweepRun(ctx, so, run)
		}
		if ctx.Err() != nil {
			return sr, ctx.Err()
		}
		if err != nil {
			so.Log("%s failed: %v", run.Label(), err)
			run.Error = err.Error()
			continue
		}
		so.Log("%s: %.1f req/s, p99 %.1f ms, %d errors%s; CPU s: tool %.1f, server %.1f, PostgreSQL %.1f",
			run.Label(), run.Result.Total.RPS, run.Result.Total.P99, run.Result.Total.Errors, shedText(run.Result.SignIn), run.CPU.ToolS, run.CPU.ServerS, run.CPU.PostgresS)
	}
	if args := restoreArgs(so.Stages, so.Current); args != nil && len(runs) > 0 && runs[len(runs)-1].Schema != so.Current {
		so.Log("bringing the schema back to version %d", so.Current)
		if err := migrate(ctx, so, args...); err != nil {
			return sr, err
		}
	}
	return sr, nil
}

// shedText is ", N sign-ins shed, M users still waiting" when the server
// shed sign-ins, or "".
func shedText(s *SignInResult) string {
	if s == nil || s.Shed == 0 && s.Waiting == 0 {
		return ""
	}
	return fmt.Sprintf(", %d sign-ins shed, %d users still waiting at the end", s.Shed, s.Waiting)
}

func migrate(ctx context.Context, so SweepOptions, args ...string) error {
	cmd := exec.CommandContext(ctx, so.Exe, append([]string{"migrate"}, args...)...)
	cmd.Env = append(os.Environ(), so.Env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("migrate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func sweepRun(ctx context.Context, so SweepOptions, run *SweepRun) error {
	args := []string{"--stage", fmt.Sprint(run.Stage)}
	if run.Indexes {
		args = append(args, "--indexes")
	}
	so.Log("%s: migrating to schema %d", run.Label(), run.Schema)
	if err := migrate(ctx, so, args...); err != nil {
		return err
	}
	if so.BeforeRun != nil {
		if err := so.BeforeRun(ctx); err != nil {
			return err
		}
	}
	// Another server on the address (another checkout's sweep) would answer
	// our health check and be measured in our server's place.
	if ln, err := net.Listen("tcp", so.Addr); err != nil {
		return fmt.Errorf("%s is taken (another server or sweep?): pass --addr: %w", so.Addr, err)
	} else {
		ln.Close()
	}
	so.Log("%s: starting the server on %s", run.Label(), so.Addr)
	name := fmt.Sprintf("flickrkillr-sweep-%d-stage%d", os.Getpid(), run.Stage)
	if run.Indexes {
		name += "-indexes"
	}
	if run.SecondMix {
		name += fmt.Sprintf("-anonymous%g", run.Anonymous)
	}
	logPath := filepath.Join(os.TempDir(), name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644) // a retry appends
	if err != nil {
		return err
	}
	defer logFile.Close()
	srv := exec.Command(so.Exe, append([]string{"serve", "--addr", so.Addr}, args...)...)
	srv.Env = append(os.Environ(), so.Env...)
	srv.Stdout, srv.Stderr = logFile, logFile
	if err := srv.Start(); err != nil {
		return err
	}
	defer stopServer(srv)
	url := "http://" + so.Addr
	if err := waitHealthy(ctx, url, 30*time.Second); err != nil {
		return fmt.Errorf("%w (server log: %s)", err, logPath)
	}
	o := so.Run
	o.URL, o.Anonymous = url, run.Anonymous
	if so.Warmup > 0 {
		so.Log("%s: warming up for %s", run.Label(), so.Warmup)
		w := o
		w.Duration, w.Progress = so.Warmup, nil
		if _, err := Run(ctx, w); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	// The warm-up's last requests were cut off, not their work on the
	// server (stage 0's processes scanning tables): let it answer again first.
	if err := waitHealthy(ctx, url, 60*time.Second); err != nil {
		return fmt.Errorf("after the warm-up: %w (server log: %s)", err, logPath)
	}
	so.Log("%s: measuring for %s", run.Label(), o.Duration)
	var before cpuReading
	var cpuErr error
	o.OnWindow = func(open bool) {
		r, err := readCPU(srv.Process.Pid, so.PostgresPID)
		if err != nil {
			cpuErr = err
			return
		}
		if open {
			before = r
			return
		}
		run.CPU = cpuBetween(before, r, 0, 0)
	}
	res, err := Run(ctx, o)
	if err != nil {
		return err
	}
	if cpuErr != nil || run.CPU == nil {
		return fmt.Errorf("reading CPU from /proc: %v", cpuErr)
	}
	run.CPU.Seconds, run.CPU.Requests = res.Elapsed, res.Total.Requests
	run.CPU.MachineS = res.Elapsed * float64(runtime.NumCPU())
	run.Result = res
	return nil
}

func stopServer(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

func waitHealthy(ctx context.Context, url string, limit time.Duration) error {
	c, err := newClient(url, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	var res response
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if err := c.do(ctx, http.MethodGet, "/healthz", nil, &res); err == nil && res.status == http.StatusOK {
			return nil
		}
		if !sleepUntil(ctx, time.Now().Add(200*time.Millisecond)) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("the server did not become healthy within %s", limit)
}

func hostInfo() HostInfo {
	h := HostInfo{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				fmt.Sscanf(strings.TrimPrefix(line, "MemTotal:"), "%d", &kb)
			}
		}
		h.Memory = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return h
}
