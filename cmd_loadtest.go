package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"flickrkillr/app"
	"flickrkillr/loadtest"
	"flickrkillr/seed"
)

// loadtestFlags registers the options a run and a sweep share.
func loadtestFlags(fs *flag.FlagSet, o *loadtest.Options) {
	fs.DurationVar(&o.Duration, "duration", 30*time.Second, "how long to measure")
	fs.IntVar(&o.Concurrency, "concurrency", 32, "virtual users (closed loop) or requests in flight at most (open loop)")
	fs.Float64Var(&o.Rate, "rate", 0, "open loop: actions per second on a fixed schedule (0: closed loop)")
	fs.DurationVar(&o.ThinkTime, "think", 0, "closed loop: pause between a user's actions")
	fs.StringVar(&o.Scenario, "scenario", "browse", "browse (the photo-site mix), static (a trivial endpoint, for comparing with wrk),\nor connections (loadtest only, C10K: browse alone, beside --connections idle ones, alone again)")
	fs.StringVar(&o.Password, "password", seed.Password, "password of the seeded users")
	fs.Uint64Var(&o.Seed, "seed", 1, "random seed of the virtual users' choices")
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
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return &usageError{err.Error()}
	}
	o.Progress = progressLine(o.Duration)
	if o.Scenario == "connections" {
		return runConnections(ctx, o, jsonPath)
	}
	res, err := loadtest.Run(ctx, o)
	clearProgress()
	if errors.Is(err, loadtest.ErrUnreachable) {
		return &usageError{err.Error()}
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
		return &usageError{err.Error()}
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
		if stderrIsTTY {
			fmt.Fprintf(os.Stderr, "\r%s", line)
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

func cmdSweep(ctx context.Context, args []string, log *slog.Logger) error {
	cfg, fs, err := configFor("loadtest sweep", "db", "redis", "data", "latency")
	if err != nil {
		return err
	}
	so := loadtest.SweepOptions{}
	var stages, out string
	loadtestFlags(fs, &so.Run)
	fs.StringVar(&stages, "stages", fmt.Sprintf("0-%d", app.DefaultStage()), "stages to measure: a range (0-4) or a list (1,3,4)")
	fs.DurationVar(&so.Warmup, "warmup", 5*time.Second, "unrecorded load before each measurement")
	fs.StringVar(&so.Addr, "addr", "127.0.0.1:18080", "where each stage's server listens")
	fs.StringVar(&out, "out", "results", "directory for README.md, chart.svg and sweep.json")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: flickrkillr loadtest sweep [flags]\n\nFor each stage: migrate, start the server, warm up, measure, stop. Then write the report.")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate("db", "redis", "data", "latency"); err != nil {
		return err
	}
	so.Run.URL = "http://" + so.Addr
	if err := so.Run.Validate(); err != nil {
		return &usageError{err.Error()}
	}
	if so.Stages, err = parseStages(stages); err != nil {
		return err
	}
	if so.Exe, err = os.Executable(); err != nil {
		return err
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	so.Env = []string{"DATABASE_URL=" + cfg.DatabaseURL, "REDIS_URL=" + cfg.RedisURL, "DATA_DIR=" + dataDir, "STAGE=", "ADDR="}
	so.Env = append(so.Env, "DB_LATENCY="+cfg.DBLatency.String()) // every server it starts: a simulation
	so.Command = "flickrkillr loadtest sweep " + strings.Join(args, " ")
	so.Run.Progress = progressLine(so.Run.Duration)
	so.Log = func(format string, a ...any) { clearProgress(); log.Info(fmt.Sprintf(format, a...)) }
	sr, err := loadtest.Sweep(ctx, so)
	clearProgress()
	if sr != nil && len(sr.Stages) > 0 {
		if werr := loadtest.WriteSweep(out, sr); werr != nil {
			return werr
		}
		log.Info("wrote the sweep report", "dir", out)
	}
	if err != nil {
		return err
	}
	if len(sr.Failed) > 0 {
		return fmt.Errorf("%d stage(s) failed; see %s/README.md", len(sr.Failed), out)
	}
	return nil
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
			return nil, &usageError{fmt.Sprintf("--stages must look like 0-4 or 1,3,4 (got %q)", s)}
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
