package sweep

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"flickrkillr/app/scalemodel"
	"flickrkillr/loadtest"
	"flickrkillr/models"
)

// Options are the sweep's settings as the command reads them from its flags
// and the build's stages.
type Options struct {
	Run        loadtest.Options // the measurement of each stage (URL is set by the sweep)
	Stages     []StageSchemas   // the stages to measure, in order, with their schemas
	Ladder     string           // tagged, alone or both
	Warmup     time.Duration    // unrecorded load before each measurement
	RetryPause time.Duration    // the wait before measuring a failed run again
	Addr       string           // where each stage's server listens
	Out        string           // the report's directory
	Docs       []string         // docs whose figure blocks to refresh (files or directories)
	Note       string           // the operator's note for the report (say, a shared machine)
	Command    string           // how the sweep was started, for the report (CommandLine)
	Rerun      string           // the one command that repeats it
	Exe        string           // the flickrkillr binary that migrates and serves
	// What every server it starts is given: DataDir absolute, DBLatency as
	// --db-latency reads it (every server a simulation of that distance).
	DatabaseURL, RedisURL, DataDir, DBLatency string
	// RedisServer runs the servers against a private redis-server, emptied
	// before each run, instead of each server's embedded miniredis.
	RedisServer bool
	// Model, when set, is the scale model's spec (its canonical text) that
	// every server runs with (`serve --model`), and ModelSpec the same
	// parsed: the sweep reads each host over each measured window.
	Model     string
	ModelSpec scalemodel.Spec
	Log       *slog.Logger
	// Quiet, when set, clears the live progress line before a log line.
	Quiet func()
}

// sweeper is a sweep under way: its options and what it found before
// measuring.
type sweeper struct {
	Options
	current int64    // the schema version the database is at: measured first, restored at the end
	env     []string // DATABASE_URL, DATA_DIR, REDIS_URL… for migrate and serve
	redis   string   // which Redis the servers use, for the report
	// beforeRun, when set, runs before each server starts (it empties a
	// private Redis, so that no run finds the cache of the one before).
	beforeRun func(ctx context.Context) error
	// postgresPID is the cluster's postmaster, whose process tree's CPU the
	// sweep reports; 0 with postgresNote saying why it is not measured.
	postgresPID  int
	postgresNote string
	logf         func(format string, args ...any)
}

// Measure measures every run, writes the report (and the docs' blocks) of
// what it measured, and fails when a run did. Interrupted (Ctrl-C, a kill),
// it writes what it measured into a directory of its own and leaves out
// and the docs as they were: a sweep stopped after one run wrote its
// one-run report over results/ and the figure blocks of every stage doc
// (7 Dec), the full sweep they held lost but for git.
func Measure(ctx context.Context, o Options) error {
	quiet := o.Quiet
	if quiet == nil {
		quiet = func() {}
	}
	s := &sweeper{Options: o, logf: func(format string, a ...any) { quiet(); o.Log.Info(fmt.Sprintf(format, a...)) }}
	var err error
	if s.current, s.postgresPID, s.postgresNote, err = probeDatabase(ctx, o.DatabaseURL); err != nil {
		return err
	}
	redisURL := o.RedisURL
	s.redis = "each server's embedded miniredis"
	if redisURL != "" {
		s.redis = "REDIS_URL (shared by the runs, not emptied)"
	}
	if o.RedisServer {
		url, flush, stop, err := privateRedis(ctx)
		if err != nil {
			return err
		}
		defer stop()
		redisURL, s.beforeRun = url, flush
		s.redis = "a private redis-server (--redis-server), emptied before each run"
	}
	s.env = []string{"DATABASE_URL=" + o.DatabaseURL, "REDIS_URL=" + redisURL, "DATA_DIR=" + o.DataDir, "STAGE=", "ADDR=", "INDEXES="}
	s.env = append(s.env, "DB_LATENCY="+o.DBLatency) // every server it starts: a simulation
	s.env = append(s.env, "MODEL=", "INSTANCES=")    // --model and --instances are passed per run
	sr, err := s.measure(ctx)
	quiet()
	if sr != nil && len(sr.Runs) > 0 {
		out, docs := o.Out, o.Docs
		if ctx.Err() != nil {
			var terr error
			if out, terr = os.MkdirTemp("", "flickrkillr-sweep-interrupted-*"); terr != nil {
				return terr
			}
			docs = nil
			o.Log.Warn("interrupted: the report of what was measured is written apart; "+o.Out+" and the docs are left as they were", "dir", out)
		}
		if werr := Write(sr, out, docs, o.Log); werr != nil {
			return werr
		}
	}
	if err != nil {
		return err
	}
	if failed := sr.Failed(); len(failed) > 0 {
		return fmt.Errorf("%d run(s) failed; see %s/README.md", len(failed), o.Out)
	}
	return nil
}

// measure migrates, starts, warms up, measures and stops each run in turn,
// measures the control pair's repeat, then brings the schema back to where
// it was.
func (s *sweeper) measure(ctx context.Context) (*Result, error) {
	runs, ladders, err := planSweep(s.Stages, s.Ladder, s.current)
	if err != nil {
		return nil, err
	}
	for _, r := range runs {
		if !r.SecondMix {
			r.Anonymous = s.Run.Anonymous
		}
	}
	sr := &Result{Command: s.Command, Rerun: s.Rerun, Note: s.Note, Warmup: s.Warmup.String(), Redis: s.redis, Host: hostInfo(), Started: time.Now().UTC(),
		PostgresNote: s.postgresNote, Runs: runs, Ladders: ladders, Model: s.Model}
	for _, run := range runs {
		s.measureRun(ctx, run)
		if ctx.Err() != nil {
			return sr, ctx.Err()
		}
	}
	// The pair's repeat comes after every other run, with the machine and
	// the database as the whole sweep left them.
	s.measureControl(ctx, sr)
	if ctx.Err() != nil {
		return sr, ctx.Err()
	}
	restore := len(runs) > 0 && runs[len(runs)-1].Schema != s.current
	if c := sr.Control; c != nil {
		// The repeat migrated last (to the schema of the first run, which
		// is the one the database was at whenever a run is on it); one
		// that failed may have stopped anywhere.
		restore = runs[c.Run].Schema != s.current || c.Repeat.Error != ""
	}
	if args := restoreArgs(s.Stages, s.current); args != nil && restore {
		s.logf("bringing the schema back to version %d", s.current)
		if err := s.migrate(ctx, -1, args...); err != nil {
			return sr, err
		}
	}
	return sr, nil
}

// measureRun measures one run, up to three times: a shared machine can
// stall a server long enough for one request to fail (a Redis timeout
// during the logins); two more attempts after a pause keep the ladder
// whole, and the report lists every failed attempt. A run that still fails
// keeps its error.
func (s *sweeper) measureRun(ctx context.Context, run *Run) error {
	err := s.runOne(ctx, run)
	for attempt := 2; err != nil && ctx.Err() == nil && attempt <= 3; attempt++ {
		run.Retried = append(run.Retried, err.Error())
		s.logf("%s failed (%v); attempt %d of 3 in %s", run.Label(), err, attempt, s.RetryPause)
		if !sleep(ctx, s.RetryPause) {
			break
		}
		run.Result, run.CPU, run.Model = nil, nil, nil
		err = s.runOne(ctx, run)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		s.logf("%s failed: %v", run.Label(), err)
		run.Error = err.Error()
		return err
	}
	if m := run.Model; m != nil && m.Invalid != "" {
		// The machine or the tool, not a host, may have been the limit:
		// measured again once; a second invalid one stays marked so.
		s.logf("%s: invalid (%s): measuring it once more", run.Label(), m.Invalid)
		run.Result, run.CPU, run.Model = nil, nil, nil
		if err := s.runOne(ctx, run); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.logf("%s failed: %v", run.Label(), err)
			run.Error = err.Error()
			return err
		}
		run.Model.Discarded = m.Invalid
	}
	if m := run.Model; m != nil {
		verdict := "valid"
		if m.Invalid != "" {
			verdict = "INVALID: " + m.Invalid
		}
		s.logf("%s: model: bottleneck %s, predicted %.1f req/s; tool %.2f CPU, machine %.0f%% idle; %s", run.Label(), m.Bottleneck, m.PredictedRPS,
			m.ToolCPUs, 100*m.IdleShare, verdict)
	}
	s.logf("%s: %.1f req/s, p99 %.1f ms, %d errors%s; CPU s: tool %.1f, server %.1f, PostgreSQL %.1f",
		run.Label(), run.Result.Total.RPS, run.Result.Total.P99, run.Result.Total.Errors, shedText(run.Result.SignIn), run.CPU.ToolS, run.CPU.ServerS, run.CPU.PostgresS)
	return nil
}

// sleep waits d, or less when ctx ends (then it returns false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// shedText is ", N sign-ins shed, M users still waiting" when the server
// shed sign-ins, or "".
func shedText(s *loadtest.SignInResult) string {
	if s == nil || s.Shed == 0 && s.Waiting == 0 {
		return ""
	}
	return fmt.Sprintf(", %d sign-ins shed, %d users still waiting at the end", s.Shed, s.Waiting)
}

func (s *sweeper) migrate(ctx context.Context, stage int, args ...string) error {
	cmd := exec.CommandContext(ctx, s.Exe, append([]string{"migrate"}, args...)...)
	cmd.Env = s.envOf(stage)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("migrate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// envOf is the environment of stage's migrate and serve: the sweep's, and
// the stage's own on top (StageSchemas.Env; -1: none).
func (s *sweeper) envOf(stage int) []string {
	env := append(os.Environ(), s.env...)
	for _, st := range s.Stages {
		if st.Stage == stage {
			env = append(env, st.Env...)
		}
	}
	return env
}

// runOne measures one run: migrate, start its server, warm up, measure
// with the CPU of each side, stop.
func (s *sweeper) runOne(ctx context.Context, run *Run) error {
	args := []string{"--stage", fmt.Sprint(run.Stage)}
	if run.Indexes {
		args = append(args, "--indexes")
	}
	s.logf("%s: migrating to schema %d", run.Label(), run.Schema)
	if err := s.migrate(ctx, run.Stage, args...); err != nil {
		return err
	}
	if s.beforeRun != nil {
		if err := s.beforeRun(ctx); err != nil {
			return err
		}
	}
	// Every run reads the same data: what this one adds goes after it
	// (models.RunMark), once its server has stopped.
	restore, err := s.markData(ctx, run)
	if err != nil {
		return err
	}
	defer restore()
	// Another server on the address (another checkout's sweep) would answer
	// our health check and be measured in our server's place.
	if ln, err := net.Listen("tcp", s.Addr); err != nil {
		return fmt.Errorf("%s is taken (another server or sweep?): pass --addr: %w", s.Addr, err)
	} else {
		ln.Close()
	}
	s.logf("%s: starting the server on %s", run.Label(), s.Addr)
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
	serveArgs := append([]string{"serve", "--addr", s.Addr}, args...)
	if s.Model != "" {
		serveArgs = append(serveArgs, "--model", s.Model)
		if n := s.instances(run.Stage); n > 0 {
			serveArgs = append(serveArgs, "--instances", fmt.Sprint(n))
		}
	}
	srv := exec.Command(s.Exe, serveArgs...)
	srv.Env = s.envOf(run.Stage)
	srv.Stdout, srv.Stderr = logFile, logFile
	if err := srv.Start(); err != nil {
		return err
	}
	defer stopServer(srv)
	url := "http://" + s.Addr
	if err := loadtest.WaitHealthy(ctx, url, 30*time.Second); err != nil {
		return fmt.Errorf("%w (server log: %s)", err, logPath)
	}
	o := s.Run
	o.URL, o.Anonymous = url, run.Anonymous
	if s.Warmup > 0 {
		s.logf("%s: warming up for %s", run.Label(), s.Warmup)
		w := o
		w.Duration, w.Progress = s.Warmup, nil
		if _, err := loadtest.Run(ctx, w); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	// The warm-up's last requests were cut off, not their work on the
	// server (stage 0's processes scanning tables): let it answer again first.
	if err := loadtest.WaitHealthy(ctx, url, 60*time.Second); err != nil {
		return fmt.Errorf("after the warm-up: %w (server log: %s)", err, logPath)
	}
	s.logf("%s: measuring for %s", run.Label(), o.Duration)
	var hosts *hostsWindow
	if s.Model != "" {
		hosts = &hostsWindow{prefix: modelPrefix(s.Addr)}
		o.OnWindow = hosts.onWindow
	}
	res, cpu, err := loadtest.RunWithCPU(ctx, o, srv.Process.Pid, s.postgresPID)
	run.CPU = cpu
	if err != nil {
		return err
	}
	if hosts != nil {
		if run.Model, err = modelRun(s.ModelSpec, hosts, cpu, res.Total.Requests); err != nil {
			return err
		}
	}
	run.Result = res
	return nil
}

// markData marks the data set before run, and returns what takes it back
// to the mark afterwards, noting on run what it removed.
func (s *sweeper) markData(ctx context.Context, run *Run) (restore func(), err error) {
	db, err := models.Open(ctx, s.DatabaseURL, models.Options{MaxOpenConns: 1})
	if err != nil {
		return nil, err
	}
	mark, err := models.MarkRun(ctx, db)
	if err != nil {
		models.Close(db)
		return nil, err
	}
	return func() {
		defer models.Close(db)
		c, f, err := mark.Restore(context.WithoutCancel(ctx), db)
		if err != nil {
			s.logf("%s: %v", run.Label(), err)
			return
		}
		run.Removed = &Removed{Comments: c, Favorites: f}
	}, nil
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

// instances is the number of app hosts the sweep gives a stage in model
// mode (its StageSchemas.Instances; 0: the stage's own default).
func (s *sweeper) instances(stage int) int {
	for _, st := range s.Stages {
		if st.Stage == stage {
			return st.Instances
		}
	}
	return 0
}
