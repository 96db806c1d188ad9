package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"flickrkillr/app"
	"flickrkillr/app/scalemodel"
	"flickrkillr/loadtest"
	"flickrkillr/loadtest/sweep"
	"flickrkillr/seed"
)

// loadtestFlags registers the options a run and a sweep share.
func loadtestFlags(fs *flag.FlagSet, o *loadtest.Options) {
	fs.DurationVar(&o.Duration, "duration", 30*time.Second, "how long to measure")
	fs.IntVar(&o.Concurrency, "concurrency", 32, "virtual users (closed loop) or requests in flight at most (open loop)")
	fs.Float64Var(&o.Rate, "rate", 0, "open loop: actions per second on a fixed schedule (0: closed loop)")
	fs.DurationVar(&o.ThinkTime, "think", 0, "closed loop: pause between a user's actions")
	fs.StringVar(&o.Scenario, "scenario", "browse", "browse (the photo-site mix), static (a trivial endpoint, for comparing with wrk),\nupload (12-megapixel JPEG uploads by seeded users, deleted at the end),\nwrites (the write-heavy mix: comments, favorite toggles and a few uploads, the uploads deleted at the end),\nsignin-storm (every user signs in in a loop: run it beside a browse run, scripts/signin-storm.sh), or connections (loadtest only, C10K: browse alone, beside --connections idle ones, alone again)")
	fs.StringVar(&o.Password, "password", seed.Password, "password of the seeded users")
	fs.Uint64Var(&o.Seed, "seed", 1, "random seed of the virtual users' choices")
	fs.Float64Var(&o.Anonymous, "anonymous", 0, "the share of virtual users (0 to 1) who browse without an account: the browse mix's reads\n(home, photos, users, tags and their older pages; routes anon-…), no log-in, no writes")
}

func cmdLoadtest(ctx context.Context, args []string, log *slog.Logger) error {
	if len(args) > 0 && args[0] == "sweep" {
		return cmdSweep(ctx, args[1:], log)
	}
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	o := loadtest.Options{}
	var jsonPath string
	fs.StringVar(&o.URL, "url", "http://127.0.0.1:8080", "the server to measure (http://, the tool speaks plain HTTP/1.1)")
	loadtestFlags(fs, &o)
	fs.StringVar(&jsonPath, "json", "", "also write the result as JSON to this file")
	fs.IntVar(&o.Connections, "connections", 0, "--scenario connections: idle keep-alive connections to hold beside the browse mix (C10K: 10000)")
	fs.Float64Var(&o.DialRate, "dial-rate", 1000, "--scenario connections: new connections per second at most")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: flickrkillr loadtest [flags]\n       flickrkillr loadtest sweep [flags]   (every stage in turn; sweep --help)")
		fs.PrintDefaults()
	}
	if err := app.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return &app.UsageError{Msg: err.Error()}
	}
	o.Progress = progressLine(o.Duration)
	if o.Scenario == "connections" {
		return runConnections(ctx, o, jsonPath)
	}
	res, err := loadtest.Run(ctx, o)
	clearProgress()
	if errors.Is(err, loadtest.ErrUnreachable) {
		return &app.UsageError{Msg: err.Error()}
	}
	if err != nil {
		return err
	}
	if err := loadtest.WriteText(os.Stdout, res); err != nil {
		return err
	}
	if jsonPath != "" {
		if err := loadtest.WriteJSON(jsonPath, res); err != nil {
			return err
		}
	}
	return nil
}

// runConnections is the C10K scenario: the browse mix alone, then beside
// o.Connections idle connections.
func runConnections(ctx context.Context, o loadtest.Options, jsonPath string) error {
	res, err := loadtest.RunConnections(ctx, o)
	clearProgress()
	var limit *loadtest.LimitError
	if errors.Is(err, loadtest.ErrUnreachable) || errors.As(err, &limit) {
		return &app.UsageError{Msg: err.Error()}
	}
	if res != nil && res.Baseline != nil {
		if werr := loadtest.WriteConnectionsText(os.Stdout, res); werr != nil {
			return werr
		}
		if jsonPath != "" {
			if werr := loadtest.WriteJSON(jsonPath, res); werr != nil {
				return werr
			}
		}
	}
	return err
}

var stderrIsTTY = term.IsTerminal(int(os.Stderr.Fd()))

// progressLine prints the live state once a second: redrawn on a terminal,
// a line every 5 seconds otherwise.
func progressLine(total time.Duration) func(loadtest.Progress) {
	return func(p loadtest.Progress) {
		line := fmt.Sprintf("  %5.0fs / %s  %9d requests  %8.1f req/s  %d errors", p.Elapsed.Seconds(), total, p.Requests, p.RPS, p.Errors)
		switch {
		case p.SigningIn:
			line = fmt.Sprintf("  signing in: %5.0fs  %d of %d users in, %d attempts, %d shed by the server, %d errors", p.Elapsed.Seconds(), p.SignedIn, p.SignInUsers, p.Requests, p.Shed, p.Errors)
		case p.Waiting > 0:
			line += fmt.Sprintf("  %d users still signing in", p.Waiting)
		}
		if stderrIsTTY {
			fmt.Fprintf(os.Stderr, "\r\033[K%s", line)
		} else if int(p.Elapsed.Seconds())%5 == 0 {
			fmt.Fprintln(os.Stderr, line)
		}
	}
}

func clearProgress() {
	if stderrIsTTY {
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
}

// cmdSweep reads the sweep's flags and the build's stages into plain
// options; package sweep measures and writes the report.
func cmdSweep(ctx context.Context, args []string, log *slog.Logger) error {
	cfg, fs, err := app.CommandConfig("loadtest sweep", "db", "redis", "data", "latency")
	if err != nil {
		return err
	}
	so := sweep.Options{}
	var stages, docs, from string
	loadtestFlags(fs, &so.Run)
	defaultLadder := "both"
	if !app.HasIndexSchema() {
		defaultLadder = sweep.LadderTagged // a workshop tag before stage 4: no index schema
	}
	fs.StringVar(&stages, "stages", fmt.Sprintf("0-%d", app.HighestStage()), "stages to measure: a range (0-4) or a list (1,3,4)")
	fs.StringVar(&so.Ladder, "ladder", defaultLadder, "tagged (each stage on its own schema), alone (stages before 4 with --indexes) or both")
	fs.DurationVar(&so.Warmup, "warmup", 10*time.Second, "unrecorded load before each measurement")
	fs.StringVar(&so.Addr, "addr", "127.0.0.1:18080", "where each stage's server listens")
	fs.DurationVar(&so.RetryPause, "retry-pause", 20*time.Second, "wait before measuring a failed run again (up to 3 attempts)")
	fs.StringVar(&so.Out, "out", "results", "directory for README.md, chart.svg and sweep.json")
	fs.StringVar(&docs, "docs", "", "also refresh the figure blocks (<!-- sweep: step N --> or ladders) of these docs: files or directories, comma-separated (make passes docs/stages,README.md)")
	fs.BoolVar(&so.RedisServer, "redis-server", false, "run the servers against a private redis-server (Debian's), emptied before each run, instead of each server's embedded miniredis")
	fs.StringVar(&from, "from", "", "measure nothing: write the report (and --docs) again from this sweep.json")
	fs.StringVar(&so.Note, "note", "", "a note for the report (say, what else ran on the machine)")
	var model string
	var instances int
	fs.StringVar(&model, "model", "", "run every server as a scale model with this spec (default, or e.g. app=0.15,db=0.6; the same for every stage;\nneeds root; docs/scale-model.md): the report (--out results/model unless given) adds each host's use and the bottleneck")
	fs.IntVar(&instances, "instances", 4, "with --model: the app hosts (`instances`) of the topology stages (7 and later)")
	var topologyMix float64
	fs.Float64Var(&topologyMix, "topology-anonymous", 0.9, "measure the topology stages (7 and later: a front server) once more with this share of anonymous visitors\n(as loadtest --anonymous); the same share as --anonymous measures them once")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: flickrkillr loadtest sweep [flags]\n\nFor each run (a stage, on its own schema or with --indexes): migrate, start the server, warm up,\nmeasure, stop. Then bring the schema back and write the report with both ladders.")
		fs.PrintDefaults()
	}
	if err := app.ParseFlags(fs, args); err != nil {
		return err
	}
	if docs != "" {
		so.Docs = strings.Split(docs, ",")
	}
	outSet := false
	fs.Visit(func(f *flag.Flag) { outSet = outSet || f.Name == "out" })
	if model != "" && !outSet {
		so.Out = filepath.Join("results", "model") // beside the unconstrained results/: what one box does
	}
	if from != "" {
		sr, err := sweep.ReadResult(from)
		if err != nil {
			return &app.UsageError{Msg: err.Error()}
		}
		return sweep.Write(sr, so.Out, so.Docs, log)
	}
	if err := cfg.Validate("db", "redis", "data", "latency"); err != nil {
		return err
	}
	so.Run.URL = "http://" + so.Addr
	if err := so.Run.Validate(); err != nil {
		return &app.UsageError{Msg: err.Error()}
	}
	// The docs' figure blocks quote the browse mix; another scenario's sweep
	// goes to its own --out.
	if so.Run.Scenario != "browse" && len(so.Docs) > 0 {
		return &app.UsageError{Msg: fmt.Sprintf("--docs refreshes the docs' figures, which are the browse mix's: leave it out with --scenario %s (and pass --out results/%s)", so.Run.Scenario, so.Run.Scenario)}
	}
	if !slices.Contains(sweep.Ladders, so.Ladder) {
		return &app.UsageError{Msg: fmt.Sprintf("--ladder must be tagged, alone or both (got %q)", so.Ladder)}
	}
	if so.Ladder != sweep.LadderTagged {
		if _, err := app.IndexSchema(); err != nil {
			return &app.ConfigError{Name: "--ladder", Msg: fmt.Sprintf("%s needs the index migration, which this build does not have (a workshop tag before stage 4): use --ladder tagged, or main", so.Ladder)}
		}
	}
	if !(topologyMix >= 0 && topologyMix <= 1) {
		return &app.UsageError{Msg: fmt.Sprintf("--topology-anonymous must be a share between 0 and 1 (got %g)", topologyMix)}
	}
	if _, err := exec.LookPath("redis-server"); so.RedisServer && err != nil {
		return &app.ConfigError{Name: "--redis-server", Msg: "redis-server is not installed (apt-get install redis-server)"}
	}
	if model != "" {
		if so.ModelSpec, err = sweepModel(model); err != nil {
			return err
		}
		so.Model = so.ModelSpec.String()
		if instances < 1 || instances > 32 {
			return &app.UsageError{Msg: fmt.Sprintf("--instances must be 1 to 32 (got %d)", instances)}
		}
	}
	numbers, err := parseStages(stages)
	if err != nil {
		return err
	}
	if so.Stages, err = stageSchemas(numbers); err != nil {
		return err
	}
	for i, st := range so.Stages {
		lookup, _ := app.LookupStage(st.Stage)
		// A stage's own data (stage 10: the ring and the shards), refused
		// before anything is measured when it is not there.
		if so.Stages[i].Env, err = app.SweepEnv(st.Stage); err != nil {
			return err
		}
		// The second mix is the browse mix's anonymous visitors: the other
		// scenarios (writes, upload) have none and measure each stage once.
		if lookup.Topology && topologyMix != so.Run.Anonymous && so.Run.Scenario == "browse" {
			so.Stages[i].Mixes = []float64{topologyMix}
		}
		if lookup.Topology && model != "" {
			so.Stages[i].Instances = instances
		}
	}
	if so.Exe, err = os.Executable(); err != nil {
		return err
	}
	if so.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return err
	}
	so.DatabaseURL, so.RedisURL, so.DBLatency = cfg.DatabaseURL, cfg.RedisURL, cfg.DBLatency.String()
	so.Command, so.Rerun = sweep.CommandLine(fs)
	so.Run.Progress = progressLine(so.Run.Duration)
	so.Log, so.Quiet = log, clearProgress
	return sweep.Measure(ctx, so)
}

// sweepModel reads --model and checks, before anything runs, that this
// machine can make the hosts (a trial model, made and removed): without the
// rights or the controller the sweep refuses in one line, as serve would,
// rather than measure servers that never start.
func sweepModel(text string) (scalemodel.Spec, error) {
	spec, err := scalemodel.ParseSpec(text)
	if err != nil {
		return spec, &app.ConfigError{Name: "--model", Msg: strings.TrimPrefix(err.Error(), "scalemodel: ")}
	}
	m, err := scalemodel.New(spec, scalemodel.Options{Prefix: fmt.Sprintf("flickrkillr-model-sweepcheck-%d", os.Getpid())})
	if err != nil {
		return spec, &app.ConfigError{Name: "--model", Msg: strings.TrimPrefix(err.Error(), "scalemodel: ")}
	}
	return spec, m.Close()
}

// stageSchemas reads, for each stage to measure, the schema versions it runs
// on from the build's registered stages: its own, and with --indexes.
func stageSchemas(numbers []int) ([]sweep.StageSchemas, error) {
	var list []sweep.StageSchemas
	for _, n := range numbers {
		st, _ := app.LookupStage(n)
		own, err := app.SchemaFor(n)
		if err != nil {
			return nil, err
		}
		s := sweep.StageSchemas{Stage: n, Name: st.Name, Note: st.Note, Own: own}
		if app.HasIndexSchema() {
			if s.Indexed, err = app.SchemaForRun(n, true); err != nil {
				return nil, err
			}
		}
		list = append(list, s)
	}
	return list, nil
}

// parseStages reads "0-4" or "1,3,4".
func parseStages(s string) ([]int, error) {
	var stages []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || b < a {
			return nil, &app.UsageError{Msg: fmt.Sprintf("--stages must look like 0-4 or 1,3,4 (got %q)", s)}
		}
		for n := a; n <= b; n++ {
			if _, ok := app.LookupStage(n); !ok {
				return nil, &app.ConfigError{Name: "--stages", Msg: fmt.Sprintf("%d is not a stage of this build (%s)", n, app.StageList())}
			}
			stages = append(stages, n)
		}
	}
	return stages, nil
}
