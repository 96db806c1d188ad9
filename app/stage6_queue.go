package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/semaphore"

	"flickrkillr/app/jobqueue"
	"flickrkillr/app/obs"
	"flickrkillr/models"
)

// Stage 6: uploads go through jobqueue. Until now an upload decoded,
// re-encoded and scaled a 12-megapixel image inside the request, so an
// upload took as long as the CPU work and a burst of uploads held as many
// requests. Now the request checks what is cheap (the type sniffed, the
// size, the pixels from the header), keeps the file privately, creates the
// photo "processing", enqueues a job and answers 303 at once; a pool of
// workers makes the images (the same processImage the request used) and
// marks the photo ready. Pages show a placeholder until then. The queue and
// its pool are package jobqueue.
func init() {
	register(Stage{
		Number:  6,
		Name:    "queue",
		Summary: "uploads answer at once; a worker pool makes the images from a Redis-list queue",
		Note:    "**Buys:** uploads answer at once; workers make the images. **Shows:** not in the browse mix, which has no uploads (expect the noise: the grids read one more column); the upload p99 and the drain are measured by `--scenario upload` (docs/stages/06-queue.md).",
		Schema:  4, // migrations/00003_photo_states.sql, 00004_photo_jobs.sql
		Uploads: newQueuedUploads,
		Panels:  queuePanels,
		Flags: []Flag{intFlag(queueConfig, func(s *queueSettings) *int { return &s.Workers }, "workers", "WORKERS",
			func() int { return runtime.GOMAXPROCS(0) }, 0, 256, "workers",
			"stage 6: workers that make upload images in this process; 0: none, run `flickrkillr worker` (env WORKERS)", "serve", "worker")},
		Commands: []Command{
			{"worker", "make upload images from the queue (stage 6; REDIS_URL, or make run's embedded Redis)", cmdWorker},
			{"queue", "show the upload queue; retry or drop dead jobs (stage 6; REDIS_URL, or make run's embedded Redis)", cmdQueue},
		},
	})
}

// queueSettings are the stage's own settings.
type queueSettings struct {
	// Workers (WORKERS, --workers): how many workers make upload images in
	// this process; 0 leaves them to `flickrkillr worker` processes.
	Workers int
}

var queueConfig = &setting[queueSettings]{"stage 6"}

// queuePanels are the stage's dashboard panels ("the dashboard: turning
// point"): what piles up, how long the oldest job waits, whether the
// workers keep up.
func queuePanels(m *obs.Metrics) []obs.Panel {
	const jobs, total, workers = "flickrkillr_queue_jobs", "flickrkillr_queue_jobs_total", "flickrkillr_queue_workers"
	gauge := func(name, label, value string) func(s *obs.Sample) float64 {
		return func(s *obs.Sample) float64 { return s.Gauge(name, obs.Label(label, value)) }
	}
	rate := func(outcome string) func(s *obs.Sample) float64 {
		return func(s *obs.Sample) float64 { return s.Rate(total, obs.Label("outcome", outcome)) }
	}
	return []obs.Panel{
		{ID: "queue", Title: "Image queue", Unit: "jobs", Note: "every process's queue, from Redis", Series: []obs.Series{
			{Label: "waiting", Value: gauge(jobs, "state", "ready")},
			{Label: "processing", Value: gauge(jobs, "state", "processing")},
			{Label: "retrying", Value: gauge(jobs, "state", "delayed")},
			{Label: "dead", Value: gauge(jobs, "state", "dead")},
		}},
		{ID: "queuewait", Title: "Oldest waiting job", Unit: "s", Series: []obs.Series{
			{Label: "waited", Value: func(s *obs.Sample) float64 { return s.Gauge("flickrkillr_queue_oldest_job_seconds", nil) }},
		}},
		{ID: "workers", Title: "Image workers", Unit: "workers", Note: "all processes", Series: []obs.Series{
			{Label: "busy", Value: gauge(workers, "state", "busy")},
			{Label: "total", Value: gauge(workers, "state", "total")},
		}},
		{ID: "jobrate", Title: "Image jobs per second", Unit: "jobs/s", Series: []obs.Series{
			{Label: "done", Value: rate("done")}, {Label: "retried", Value: rate("retried")}, {Label: "reaped", Value: rate("reaped")}, {Label: "dead", Value: rate("dead")},
		}},
	}
}

// queuedUploads keeps uploads for the workers.
type queuedUploads struct {
	*imageWorkers
	gallery models.Gallery
}

func newQueuedUploads(a *App, d *Deps) (Uploads, error) {
	states, ok := a.gallery.(models.PhotoStates)
	if !ok {
		return nil, fmt.Errorf("app: the gallery %T has no photo states", a.gallery)
	}
	w, err := startImageWorkers(d, imageJobs{files: a.files, states: states, budget: a.lim.decode, log: a.log}, queueConfig.of(d.Config).Workers)
	if err != nil {
		return nil, err
	}
	if a.metrics != nil {
		a.metrics.Registry().MustRegister(jobqueue.Collector(w.queue))
	}
	return &queuedUploads{imageWorkers: w, gallery: a.gallery}, nil
}

// Store keeps the upload as it came, creates the photo in state processing
// and enqueues its job. If the job cannot be enqueued, the photo and the
// file go again and the upload is a 503: a photo without a job would stay
// "processing" forever.
func (u *queuedUploads) Store(c echo.Context, up checkedUpload) (int64, string, error) {
	ctx := c.Request().Context()
	key := models.NewImageKey()
	if err := u.files.PutUpload(key, up.File); err != nil {
		return 0, "", err
	}
	f := up.Form
	// The job is named on the row first, so that a photo whose job is lost is
	// found again (recoverUploads below), and reserved before that, as
	// recovery reserves its own: recovery in another process that reads the
	// row before the job is enqueued (a slow transaction, another host's
	// clock past the grace) must not take the job for lost and enqueue a second.
	job := jobqueue.NewJobID()
	if err := u.queue.Reserve(ctx, job, jobReservation); err != nil {
		u.removeFiles(key)
		return 0, "", unavailable(c, 5, "We cannot take uploads right now. Please try again in a few seconds.", err)
	}
	id, err := u.gallery.CreatePhoto(ctx, models.NewPhoto{
		Owner: up.Owner, Title: f.Title, Description: f.Description, Tags: f.Tags,
		ImageKey: key, Width: up.Header.Width, Height: up.Header.Height, State: models.PhotoProcessing, JobID: job,
	})
	if err != nil {
		u.removeFiles(key)
		return 0, "", err
	}
	if err := u.queue.Enqueue(ctx, jobqueue.Job{ID: job, Photo: id, Key: key, Enqueued: time.Now()}); err != nil {
		if _, derr := u.gallery.DeletePhoto(context.WithoutCancel(ctx), id, up.Owner.ID); derr != nil {
			u.log.Error("delete the photo of an upload that could not be queued", "photo", id, "err", derr)
		}
		u.removeFiles(key)
		return 0, "", unavailable(c, 5, "We cannot take uploads right now. Please try again in a few seconds.", err)
	}
	return id, "Your photo is up. Its image will be ready in a moment.", nil
}

func (u *queuedUploads) removeFiles(key string) {
	if err := u.files.Remove(key); err != nil {
		u.log.Error("remove files of failed upload", "key", key, "err", err)
	}
}

// imageWorkers is the queue of image jobs ("images" in Redis) and the pool
// of workers that runs them: in the serve process (--workers) or in
// `flickrkillr worker` processes, which need no web App.
type imageWorkers struct {
	imageJobs
	queue *jobqueue.Queue
	pool  *jobqueue.Pool
	// handle runs a job: makeImages (a test wraps it).
	handle func(ctx context.Context, j jobqueue.Job) error

	recoverGrace time.Duration // recoverUploads
	running      int           // the workers started in this process (--workers)
}

// startImageWorkers makes the queue in d's Redis and starts n workers on it
// (0: none; the jobs wait for RunQueued or another process's workers).
// d.Close stops them: running jobs finish or go back to the queue.
func startImageWorkers(d *Deps, jobs imageJobs, n int) (*imageWorkers, error) {
	rdb, err := d.Redis()
	if err != nil {
		return nil, err
	}
	w := &imageWorkers{imageJobs: jobs, queue: jobqueue.New(rdb, "images"), recoverGrace: recoverGrace, running: n}
	w.handle = w.makeImages
	if d.Config.RedisURL == "" || embeddedRedisAt(d.Config.DataDir, d.Config.RedisURL) {
		w.queue.Poll = 250 * time.Millisecond // the embedded miniredis (ours, or serve's for a worker): see Queue.Poll
	}
	handle := func(ctx context.Context, j jobqueue.Job) error { return w.handle(ctx, j) }
	w.pool = jobqueue.NewPool(w.queue, n, handle, w.jobDied, jobs.log)
	// An outage of the database or Redis is not a job's failure: the worker
	// waits for them with the job in hand (jobqueue's Pool.Outage), and the
	// job keeps its attempts for its own faults (a corrupt image).
	w.pool.Outage = isUnavailable
	w.pool.Ping = func(ctx context.Context) error {
		if err := d.DB.WithContext(ctx).Exec("SELECT 1").Error; err != nil {
			return err
		}
		return rdb.Ping(ctx).Err()
	}
	if n > 0 {
		// Blocking fetches get their own connections (the shared client's
		// are for requests, with a 200 ms read timeout).
		opt := *rdb.Options()
		opt.PoolSize = n + 2
		blocking := redis.NewClient(&opt)
		w.queue.Blocking = blocking
		w.pool.Start()
		// A process with workers also finds the uploads whose jobs were lost.
		recovering, stopRecovering := context.WithCancel(context.Background())
		recovered := make(chan struct{})
		go func() { defer close(recovered); w.keepRecovering(recovering) }()
		d.OnClose(func() error {
			stopRecovering()
			<-recovered
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			w.pool.Shutdown(ctx)
			return blocking.Close()
		})
	}
	return w, nil
}

// RunQueued runs the waiting jobs in this goroutine until none waits, and
// says how many ran (`flickrkillr worker --drain`; the tests run uploads'
// jobs with it).
func (w *imageWorkers) RunQueued(ctx context.Context) (int, error) { return w.pool.RunQueued(ctx) }

// Workers is how many workers run in this process (--workers).
func (w *imageWorkers) Workers() int { return w.running }

// imageJobs is what a worker makes images with: the photo files, the
// photos' states and the decode budget.
type imageJobs struct {
	files  *models.ImageStore
	states models.PhotoStates
	budget *semaphore.Weighted // shared with the uploads decoded in requests
	log    *slog.Logger
}

// makeImages is the workers' handler. It is idempotent: a ready photo (a job
// delivered twice) is done; a deleted photo (while the job waited or ran)
// leaves no files; the files are written atomically under the photo's own
// key, so a second run rewrites the same bytes. A corrupt upload is a
// permanent error: the job goes dead and the photo shows "failed".
func (w imageJobs) makeImages(ctx context.Context, j jobqueue.Job) error {
	files := w.files
	state, err := w.states.PhotoState(ctx, j.Photo)
	switch {
	case errors.Is(err, models.ErrNotFound):
		return files.Remove(j.Key)
	case err != nil:
		return err
	case state == models.PhotoReady:
		return files.RemoveUpload(j.Key)
	}
	f, err := files.Open(j.Key, models.Upload)
	if errors.Is(err, models.ErrNotFound) {
		return jobqueue.Permanent(fmt.Errorf("app: photo %d: the upload is gone", j.Photo))
	}
	if err != nil {
		return err
	}
	defer f.Close()
	hdr, err := models.ReadImageHeader(f)
	if err != nil {
		return jobqueue.Permanent(err)
	}
	img, err := processImage(ctx, w.budget, hdr, f)
	if isImageError(err) {
		return jobqueue.Permanent(err)
	}
	if err != nil {
		return err
	}
	if err := files.Put(j.Key, img); err != nil {
		return err
	}
	_, err = w.states.FinishPhoto(ctx, j.Photo, models.PhotoReady, img.Width, img.Height)
	if errors.Is(err, models.ErrNotFound) {
		return files.Remove(j.Key) // deleted while it ran
	}
	if err != nil {
		return err
	}
	return files.RemoveUpload(j.Key)
}

// jobDied marks a dead job's photo failed. The upload is kept, so that
// `flickrkillr queue --retry` can try again. A database that does not answer
// is waited for (backing off, until the pool stops): a dead job whose photo
// stays "processing" would otherwise wait for recovery to find it.
func (w imageJobs) jobDied(ctx context.Context, j jobqueue.Job, cause string) {
	w.log.Warn("image job is dead", "job", j.ID, "photo", j.Photo, "cause", cause)
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := w.markFailed(ctx, j)
		if err == nil {
			return
		}
		w.log.Error("mark photo failed", "photo", j.Photo, "err", err)
		if !isUnavailable(err) {
			return
		}
		select {
		case <-ctx.Done():
			return // recovery marks it (recoverUploads)
		case <-time.After(wait):
		}
	}
}

// markFailed marks the photo of dead job j failed; a deleted photo's files go.
func (w imageJobs) markFailed(ctx context.Context, j jobqueue.Job) error {
	_, err := w.states.FinishPhoto(ctx, j.Photo, models.PhotoFailed, 0, 0)
	if errors.Is(err, models.ErrNotFound) {
		return w.files.Remove(j.Key)
	}
	return err
}

// Stage 6: the database, not the queue, is the record of what must be
// processed. A photo in state processing names its job (photos.job_id); a
// job can be lost with the queue that held it (the embedded miniredis dies
// with its process at Ctrl-C or SIGKILL, a redis-server can lose its last
// second). So every process that runs workers looks, at start and then every
// recoverEvery, for processing photos whose job the queue does not know, and
// enqueues a new job for each. The handler is idempotent (makeImages), so a
// job that was not lost after all and now runs twice ends the photo ready
// once, with the same files.
const (
	// recoverEvery is how often a running process looks again.
	recoverEvery = 30 * time.Second
	recoverBatch = 200
)

// jobReservation is how long a job named on a photo's row counts as known
// before it is enqueued (jobqueue's Reserve): longer than an upload's
// request deadline (40 s), so an upload that is still running keeps its job.
const jobReservation = time.Minute

// recoverGrace skips photos younger than this (each imageWorkers takes its
// own copy): an upload creates its row a moment before it enqueues the job,
// and a job found missing in that moment would only run twice.
var recoverGrace = 10 * time.Second

// recoverUploads enqueues a new job for every processing photo older than
// recoverGrace whose job is lost, and says how many. Several processes may
// run it at once: the row claim (ClaimPhotoJob, a compare-and-set of the
// job id in one UPDATE, which PgBouncer's transaction pooling keeps) lets
// exactly one of them enqueue each photo.
func (w *imageWorkers) recoverUploads(ctx context.Context) (int, error) {
	before := time.Now().Add(-w.recoverGrace)
	recovered := 0
	defer func() {
		if recovered > 0 {
			w.queue.CountRecovered(context.WithoutCancel(ctx), recovered)
		}
	}()
	for after := int64(0); ; {
		list, err := w.states.UnfinishedPhotos(ctx, before, after, recoverBatch)
		if err != nil {
			return recovered, err
		}
		for _, p := range list {
			after = p.ID
			if p.JobID != "" {
				known, dead, err := w.queue.Known(ctx, p.JobID)
				if err != nil {
					return recovered, err
				}
				if dead {
					// Its worker could not mark it failed (the database was
					// away, the process ended): the photo must not show
					// "processing" with no job that will finish it.
					if err := w.markFailed(ctx, jobqueue.Job{ID: p.JobID, Photo: p.ID, Key: p.ImageKey}); err != nil {
						return recovered, err
					}
					continue
				}
				if known {
					continue
				}
			}
			// Reserved before it goes on the row: another process that reads
			// the new name before the job is enqueued knows it is not lost.
			job := jobqueue.NewJobID()
			if err := w.queue.Reserve(ctx, job, jobReservation); err != nil {
				return recovered, err
			}
			claimed, err := w.states.ClaimPhotoJob(ctx, p.ID, p.JobID, job)
			if err != nil {
				return recovered, err
			}
			if !claimed {
				continue // finished, deleted, or claimed by another process
			}
			// Should this fail, the row names a job the queue does not
			// know, and the next pass claims the photo again.
			if err := w.queue.Enqueue(ctx, jobqueue.Job{ID: job, Photo: p.ID, Key: p.ImageKey, Enqueued: time.Now()}); err != nil {
				return recovered, err
			}
			recovered++
		}
		if len(list) < recoverBatch {
			return recovered, nil
		}
	}
}

// keepRecovering runs recoverUploads now and every recoverEvery until ctx
// ends, logging what it did.
func (w *imageWorkers) keepRecovering(ctx context.Context) {
	t := time.NewTicker(recoverEvery)
	defer t.Stop()
	for {
		n, err := w.recoverUploads(ctx)
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			w.log.Warn("upload recovery failed; trying again later", "err", err, "recovered", n)
		case n > 0:
			w.log.Info(fmt.Sprintf("recovered %d uploads whose jobs were lost", n), "recovered", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
