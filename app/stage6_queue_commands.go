package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/semaphore"

	"flickrkillr/app/jobqueue"
	"flickrkillr/app/obs"
	"flickrkillr/models"
)

// Stage 6: `flickrkillr worker` and `flickrkillr queue` (Stage.Commands).

// cmdWorker is `flickrkillr worker`: workers make upload images from the
// queue in their own process.
func cmdWorker(ctx context.Context, args []string, log *slog.Logger) error {
	cfg, fs, err := CommandConfig("worker", "db", "redis", "data", "stage", "workers", "admin")
	if err != nil {
		return err
	}
	if _, set := os.LookupEnv("ADMIN_ADDR"); !set {
		cfg.AdminAddr = "127.0.0.1:6061" // beside a serve's 6060
	}
	drain := fs.Bool("drain", false, "run the jobs that wait, print how long they took, and exit")
	if err := ParseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate("db", "redis", "data", "stage", "workers", "admin"); err != nil {
		return err
	}
	return RunWorkers(ctx, *cfg, *drain, os.Stdout, log)
}

// cmdQueue is `flickrkillr queue`: the queue's figures; retry or drop dead jobs.
func cmdQueue(ctx context.Context, args []string, log *slog.Logger) error {
	cfg, fs, err := CommandConfig("queue", "redis", "data")
	if err != nil {
		return err
	}
	var op QueueOp
	fs.StringVar(&op.Retry, "retry", "", "put a dead job (its id, or all) back in the queue")
	fs.StringVar(&op.Drop, "drop", "", "forget a dead job (its id, or all) and its kept upload; the photo stays failed")
	if err := ParseFlags(fs, args); err != nil {
		return err
	}
	if op.Retry != "" && op.Drop != "" {
		return &UsageError{Msg: "--retry and --drop go one at a time"}
	}
	if err := cfg.Validate("redis", "data"); err != nil {
		return err
	}
	return QueueCommand(ctx, *cfg, op, os.Stdout)
}

// queueRedisURL is the Redis of the queue for a command run beside serve
// (worker, queue): REDIS_URL, or else the embedded miniredis of the serve
// process (make run) whose DATA_DIR is cfg's, which writes its address there
// (embeddedRedisFile) and must answer. pid is that process's id (0: REDIS_URL).
// One function for both commands, so that they find the same queue.
func queueRedisURL(ctx context.Context, cfg Config) (url string, pid int, err error) {
	if cfg.RedisURL != "" {
		return cfg.RedisURL, 0, nil
	}
	file := filepath.Join(cfg.DataDir, embeddedRedisFile)
	url, pid, err = embeddedRedisURL(cfg.DataDir)
	if err != nil {
		return "", 0, &ConfigError{"REDIS_URL", "is not set, and no `serve` process with the embedded miniredis has written its address to " +
			file + " (is `make run` running, with this DATA_DIR?); with a redis-server, give serve and this command the same REDIS_URL"}
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return "", 0, fmt.Errorf("app: %s names %q, not a redis:// URL: %w", file, url, err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		return "", 0, fmt.Errorf("app: the embedded miniredis named in %s does not answer (the serve process that wrote it has ended?): %w", file, err)
	}
	return url, pid, nil
}

// embeddedRedisAt says whether url is the embedded miniredis of the serve
// process on dataDir (queueRedisURL found it): there the workers poll
// instead of blocking (jobqueue's Queue.Poll).
func embeddedRedisAt(dataDir, url string) bool {
	embedded, _, err := embeddedRedisURL(dataDir)
	return err == nil && embedded == url
}

// RunWorkers runs --workers workers in this process until ctx ends (then
// running jobs finish or go back to the queue); with drain it runs the jobs
// that wait, reports how long they took, and returns. It builds no web App:
// the database, the stage's gallery (whose writes invalidate stage 3's
// cache), the photo files and the queue are all a worker needs.
func RunWorkers(ctx context.Context, cfg Config, drain bool, out io.Writer, log *slog.Logger) error {
	url, pid, err := queueRedisURL(ctx, cfg)
	if err != nil {
		return err
	}
	if pid != 0 {
		// The workers live as long as that serve process: its queue goes
		// with it (recovery, in the next serve, finds the photos again).
		log.Info("workers use the queue in the embedded miniredis of serve", "pid", pid, "redis", url)
		cfg.RedisURL = url
	}
	s, err := resolveRun(cfg)
	if err != nil || s.Uploads == nil {
		return &ConfigError{"STAGE", fmt.Sprintf("%d makes upload images in the request; workers run from stage 6 on (stages: %s)", cfg.Stage, StageList())}
	}
	if queueConfig.of(cfg).Workers == 0 {
		return &ConfigError{"WORKERS", "is 0: a worker process with no workers would do nothing"}
	}
	d, done, err := Bootstrap(ctx, cfg, log, models.Options{})
	if err != nil {
		return err
	}
	defer done()
	jobs, err := newImageJobs(s, d)
	if err != nil {
		return err
	}
	workers := queueConfig.of(cfg).Workers
	n := workers
	if drain {
		n = 0 // the drain runs its own
	}
	u, err := startImageWorkers(d, jobs, n)
	if err != nil {
		return err
	}
	if !drain {
		defer startWorkerOperator(ctx, cfg, s, d, u, log)()
		log.Info("workers are making upload images", "workers", workers, "stage", cfg.Stage)
		<-ctx.Done()
		log.Info("stopping: running jobs finish or go back to the queue")
		return nil
	}
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int
	var errs []error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := u.RunQueued(ctx)
			mu.Lock()
			total, errs = total+n, append(errs, err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	took := time.Since(start)
	fmt.Fprintf(out, "drained %d jobs in %s with %d workers: %.2f jobs/s, %.2f jobs/s per worker\n",
		total, took.Round(time.Millisecond), workers, float64(total)/took.Seconds(), float64(total)/took.Seconds()/float64(workers))
	return errors.Join(errs...)
}

// startWorkerOperator starts a worker process's operator listener at
// cfg.AdminAddr, as a serve process has (obs.StartOperator): /metrics
// (the queue's figures, the database pool, the process's CPU and memory),
// /debug/pprof/ and a dashboard of the queue's and the process's panels.
// Stage 7's supervisor reads its /metrics for its own dashboard.
func startWorkerOperator(ctx context.Context, cfg Config, s Stage, d *Deps, u *imageWorkers, log *slog.Logger) (stop func()) {
	o := obs.Operator{Addr: cfg.AdminAddr, Log: log}
	if !cfg.NoMetrics {
		sqlDB, _ := d.DB.DB()
		m := obs.NewMetrics(sqlDB)
		m.Registry().MustRegister(jobqueue.Collector(u.queue))
		o.Metrics = m.Registry()
		o.Panels = append(o.Panels, queuePanels(m)...) // the queue's: the stage that brought workers
		o.Panels = append(o.Panels, processPanels()...)
		o.Info = dashboardInfo(s, fmt.Sprintf("migration %d expected", s.Schema), "A worker process: it makes upload images from the queue and answers no requests.")
	}
	return obs.StartOperator(ctx, o)
}

// QueueOp is what `flickrkillr queue` does besides printing: retry or drop
// a dead job (an id, or "all").
type QueueOp struct{ Retry, Drop string }

// QueueCommand applies op, then prints the queue's figures (jobs/s over one
// second) and its dead jobs.
//
// Without REDIS_URL it reads the queue in the embedded miniredis of the
// `serve` process (make run) whose DATA_DIR is cfg's (queueRedisURL).
func QueueCommand(ctx context.Context, cfg Config, op QueueOp, out io.Writer) error {
	url, pid, err := queueRedisURL(ctx, cfg)
	if err != nil {
		return err
	}
	if pid != 0 {
		fmt.Fprintf(out, "the queue in the embedded miniredis of serve (pid %d, %s)\n\n", pid, url)
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return &ConfigError{"REDIS_URL", "is not a valid redis:// URL"}
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	q := jobqueue.New(rdb, "images")
	if err := reviveDead(ctx, q, cfg, op, out); err != nil {
		return err
	}
	before, err := q.Stats(ctx)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Second):
	}
	s, err := q.Stats(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "waiting\t%d\t(the oldest for %s)\n", s.Ready, s.Oldest.Round(time.Millisecond))
	fmt.Fprintf(tw, "processing\t%d\n", s.Processing)
	fmt.Fprintf(tw, "retrying\t%d\t(waiting for their backoff)\n", s.Delayed)
	fmt.Fprintf(tw, "dead\t%d\n", s.Dead)
	fmt.Fprintf(tw, "workers\t%d\t(%d busy, every process)\n", s.Workers, s.Busy)
	fmt.Fprintf(tw, "jobs/s\t%d\t(done in the last second)\n", s.Done-before.Done)
	fmt.Fprintf(tw, "since the queue began\t\t%d done, %d retried, %d reaped, %d dead, %d recovered\n", s.Done, s.Retried, s.Reaped, s.Died, s.Recovered)
	tw.Flush()
	dead, err := q.Dead(ctx)
	if err != nil || len(dead) == 0 {
		return err
	}
	fmt.Fprintln(out, "\ndead jobs (newest first; --retry ID|all, --drop ID|all):")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "job\tphoto\tattempts\terror")
	for _, d := range dead {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", d.ID, d.Photo, d.Attempts, d.Error)
	}
	return tw.Flush()
}

// reviveDead retries or drops the dead jobs op names; a drop also removes
// the job's kept upload.
func reviveDead(ctx context.Context, q *jobqueue.Queue, cfg Config, op QueueOp, out io.Writer) error {
	target, retry := op.Retry, true
	if op.Drop != "" {
		target, retry = op.Drop, false
	}
	if target == "" {
		return nil
	}
	ids := []string{target}
	if target == "all" {
		dead, err := q.Dead(ctx)
		if err != nil {
			return err
		}
		ids = ids[:0]
		for _, d := range dead {
			ids = append(ids, d.ID)
		}
	}
	files, err := models.NewImageStore(cfg.DataDir)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if retry {
			if err := q.RetryDead(ctx, id); err != nil {
				return err
			}
			fmt.Fprintf(out, "retrying %s\n", id)
			continue
		}
		j, _ := q.Job(ctx, id)
		if err := q.DropDead(ctx, id); err != nil {
			return err
		}
		if j.Key != "" {
			if err := files.RemoveUpload(j.Key); err != nil {
				return err
			}
		}
		fmt.Fprintf(out, "dropped %s (photo %d stays failed)\n", id, j.Photo)
	}
	return nil
}

// newImageJobs is what a worker process makes images with: the photo files,
// stage s's gallery as the photos' states, and a decode budget of its own.
func newImageJobs(s Stage, d *Deps) (imageJobs, error) {
	files, err := models.NewImageStore(d.Config.DataDir)
	if err != nil {
		return imageJobs{}, err
	}
	db, err := storesDB(s, d)
	if err != nil {
		return imageJobs{}, err
	}
	// The stages' Gallery hooks wrap it as an instance's: its writes
	// invalidate stage 3's cache and delete stage 8's front pages.
	gallery, err := galleryFor(s, d, db, models.Sequential{})
	if err != nil {
		return imageJobs{}, err
	}
	states, ok := gallery.(models.PhotoStates)
	if !ok {
		return imageJobs{}, fmt.Errorf("app: the gallery %T has no photo states", gallery)
	}
	return imageJobs{files: files, states: states, budget: semaphore.NewWeighted(decodeBudget), log: d.Log}, nil
}
