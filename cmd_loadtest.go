package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/term"

	"flickrkillr/loadtest"
	"flickrkillr/seed"
)

// loadtestFlags registers the options a run and a sweep share.
func loadtestFlags(fs *flag.FlagSet, o *loadtest.Options) {
	fs.DurationVar(&o.Duration, "duration", 30*time.Second, "how long to measure")
	fs.IntVar(&o.Concurrency, "concurrency", 32, "virtual users (closed loop) or requests in flight at most (open loop)")
	fs.Float64Var(&o.Rate, "rate", 0, "open loop: actions per second on a fixed schedule (0: closed loop)")
	fs.DurationVar(&o.ThinkTime, "think", 0, "closed loop: pause between a user's actions")
	fs.StringVar(&o.Scenario, "scenario", "browse", "browse (the photo-site mix) or static (a trivial endpoint, for comparing with wrk)")
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
	fs.StringVar(&o.URL, "url", "http://127.0.0.1:8080", "the server to measure")
	loadtestFlags(fs, &o)
	fs.StringVar(&jsonPath, "json", "", "also write the result as JSON to this file")
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
	return errors.New("sweep: not built yet")
}
