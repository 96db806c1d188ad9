package main

import (
	"context"
	"log/slog"
	"os"

	"flickrkillr/app"
)

// Stage 6: the queue's commands. A worker makes upload images from the
// queue in its own process; queue prints the queue's figures and retries or
// drops dead jobs. Both need the Redis that `serve --stage 6` uses; queue
// also finds the embedded miniredis of a serve process on the same DATA_DIR.
func init() {
	commands["worker"] = command{"make upload images from the queue (stage 6; REDIS_URL, or make run's embedded Redis)", cmdWorker, false}
	commands["queue"] = command{"show the upload queue; retry or drop dead jobs (stage 6; REDIS_URL, or make run's embedded Redis)", cmdQueue, false}
}

func cmdWorker(ctx context.Context, args []string, log *slog.Logger) error {
	cfg, fs, err := configFor("worker", "db", "redis", "data", "stage", "workers", "admin")
	if err != nil {
		return err
	}
	if _, set := os.LookupEnv("ADMIN_ADDR"); !set {
		cfg.AdminAddr = "127.0.0.1:6061" // beside a serve's 6060
	}
	drain := fs.Bool("drain", false, "run the jobs that wait, print how long they took, and exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate("db", "redis", "data", "stage", "workers", "admin"); err != nil {
		return err
	}
	return app.RunWorkers(ctx, *cfg, *drain, os.Stdout, log)
}

func cmdQueue(ctx context.Context, args []string, log *slog.Logger) error {
	cfg, fs, err := configFor("queue", "redis", "data")
	if err != nil {
		return err
	}
	var op app.QueueOp
	fs.StringVar(&op.Retry, "retry", "", "put a dead job (its id, or all) back in the queue")
	fs.StringVar(&op.Drop, "drop", "", "forget a dead job (its id, or all) and its kept upload; the photo stays failed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if op.Retry != "" && op.Drop != "" {
		return &usageError{"--retry and --drop go one at a time"}
	}
	if err := cfg.Validate("redis", "data"); err != nil {
		return err
	}
	return app.QueueCommand(ctx, *cfg, op, os.Stdout)
}
