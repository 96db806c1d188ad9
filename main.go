// Command flickrkillr is the FlickrKillr photo-sharing app and its tools:
//
//	flickrkillr serve    [--addr 127.0.0.1:8080] [--stage N] [--indexes] [--admin-addr 127.0.0.1:6060] [--workers N (stage 6)] [--instances N (stage 7)]
//	flickrkillr migrate  [--stage N] [--indexes]
//	flickrkillr seed     [--users N] [--photos-per-user A-B] [--seed S] [--reset]
//	flickrkillr loadtest [--url U] [--duration D] [--concurrency C] [--rate R] [--json FILE]
//	flickrkillr bench concurrency [--sizes 100,1000,10000,100000]
//	flickrkillr worker   [--workers N] [--drain] [--admin-addr 127.0.0.1:6061] (stage 6; needs REDIS_URL)
//	flickrkillr queue    [--retry ID|all] [--drop ID|all] (stage 6; needs REDIS_URL)
//
// Configuration comes from the environment (DATABASE_URL, REDIS_URL,
// DATA_DIR, ADDR, STAGE, INDEXES, DB_LATENCY, DRAIN_DELAY, ADMIN_ADDR, METRICS,
// WORKERS, INSTANCES); flags override it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"flickrkillr/app"
	"flickrkillr/app/netdelay"
)

// command is one subcommand: its one-line help and what it runs.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, log *slog.Logger) error
	hidden  bool
}

// commands are the subcommands: main's own, and those the stages of this
// build bring (Stage.Commands: stage 6's worker and queue), so that a
// workshop tag without the stage builds and does not list them.
var commands = map[string]command{}

func init() {
	for name, c := range map[string]command{
		"serve":    {"serve the web app at one stage", cmdServe, false},
		"migrate":  {"bring the database schema to a stage", cmdMigrate, false},
		"seed":     {"fill the database with the demo data set", cmdSeed, false},
		"loadtest": {"measure a running server", cmdLoadtest, false},
		"bench":    {"benchmark this machine: `bench concurrency`, goroutines vs OS threads", cmdBench, false},
		"cgi":      {"answer one CGI request (stage 0 runs this per request)", cmdCGI, true},
		"netdelay": {"forward to the database with a delay (serve --db-latency runs this)", cmdLatencyProxy, true},
		"instance": {"serve as one instance of stage 7's topology (serve --stage 7 runs this)", cmdInstance, true},
	} {
		commands[name] = c
	}
	for _, c := range app.Commands() { // the stages' (stage 6: worker, queue)
		commands[c.Name] = command{c.Summary, c.Run, false}
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	level := slog.LevelInfo
	if os.Getenv("LOG_LEVEL") == "debug" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "flickrkillr: unknown command %q (try: flickrkillr help)\n", args[0])
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	err := cmd.run(ctx, args[1:], log)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case app.IsConfigError(err), app.IsUsageError(err):
		fmt.Fprintf(stderr, "flickrkillr %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "flickrkillr %s: %v\n", args[0], err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "FlickrKillr: a photo-sharing app for learning how web apps scale.")
	fmt.Fprintln(w, "\nUsage: flickrkillr <command> [flags]   (flickrkillr <command> --help for its flags)")
	fmt.Fprintln(w, "\nCommands:")
	for _, name := range []string{"serve", "migrate", "seed", "loadtest", "bench", "worker", "queue"} {
		if c, ok := commands[name]; ok {
			fmt.Fprintf(w, "  %-9s %s\n", name, c.summary)
		}
	}
	fmt.Fprintln(w, "\nEnvironment: DATABASE_URL, REDIS_URL (empty: embedded miniredis), DATA_DIR, ADDR, STAGE, INDEXES,\nDB_LATENCY (a simulation: the database and Redis this far away each way), DRAIN_DELAY,")
	fmt.Fprintln(w, "ADMIN_ADDR (the operator listener: /dashboard, /metrics, /debug/pprof/; empty: none), METRICS, WORKERS (stage 6).")
	fmt.Fprintf(w, "Stages: %s (default %d", app.StageList(), app.DefaultStage())
	if app.HighestStage() != app.DefaultStage() {
		fmt.Fprintf(w, "; stage %d runs several processes: serve --stage %d", app.HighestStage(), app.HighestStage())
	}
	fmt.Fprintln(w, ").")
}

func cmdServe(ctx context.Context, args []string, log *slog.Logger) error {
	ownFlags := app.StageFlags("serve") // --workers (stage 6), --instances (stage 7), where this build has them
	cfg, fs, err := app.CommandConfig("serve", append([]string{"db", "redis", "data", "addr", "stage", "indexes", "latency", "drain", "admin", "model"}, ownFlags...)...)
	if err != nil {
		return err
	}
	if err := app.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate(append([]string{"db", "redis", "data", "addr", "stage", "indexes", "latency", "admin", "model"}, ownFlags...)...); err != nil {
		return err
	}
	return app.Serve(ctx, *cfg, log)
}

func cmdCGI(ctx context.Context, args []string, log *slog.Logger) error {
	cfg, err := app.ConfigFromEnv()
	if err != nil {
		return err
	}
	if err := cfg.Validate("db", "data", "stage", "indexes"); err != nil {
		return err
	}
	return app.ServeCGIChild(ctx, cfg, log)
}

func cmdInstance(ctx context.Context, args []string, log *slog.Logger) error {
	cfg, err := app.ConfigFromEnv()
	if err != nil {
		return err
	}
	if err := cfg.Validate("db", "redis", "data", "addr", "stage", "indexes", "latency", "admin"); err != nil {
		return err
	}
	return app.ServeInstance(ctx, cfg, log)
}

func cmdLatencyProxy(ctx context.Context, args []string, log *slog.Logger) error {
	return netdelay.ServeChild(args, os.Stdin, os.Stdout)
}
