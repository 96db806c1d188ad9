package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"flickrkillr/models"
)

// Stage 6: a queue. Until now an upload decoded, re-encoded and scaled a
// 12-megapixel image inside the request, so an upload took as long as the
// CPU work and a burst of uploads held as many requests. Now the request
// checks what is cheap (the type sniffed, the size, the pixels from the
// header), keeps the file privately, creates the photo "processing",
// enqueues a job and answers 303 at once; a pool of workers makes the
// images (the same processImage the request used) and marks the photo ready.
// Pages show a placeholder until then. The queue is stage6_jobs.go.
func init() {
	register(Stage{
		Number:  6,
		Name:    "queue",
		Summary: "uploads answer at once; a worker pool makes the images from a Redis-list queue",
		Schema:  4, // migrations/00003_photo_states.sql, 00004_photo_jobs.sql
		Uploads: newQueuedUploads,
	})
}

// queuedUploads keeps uploads for the workers and is the workers' handler.
type queuedUploads struct {
	a      *App
	states models.PhotoStates
	queue  *jobQueue
	pool   *workerPool

	recoverGrace time.Duration // stage6_recovery.go
}

func newQueuedUploads(a *App, d *Deps) (Uploads, error) {
	states, ok := a.gallery.(models.PhotoStates)
	if !ok {
		return nil, fmt.Errorf("app: the gallery %T has no photo states", a.gallery)
	}
	rdb, err := redisClient(d)
	if err != nil {
		return nil, err
	}
	u := &queuedUploads{a: a, states: states, queue: newJobQueue(rdb, "images"), recoverGrace: recoverGrace}
	if d.Config.RedisURL == "" {
		u.queue.poll = 250 * time.Millisecond // the embedded miniredis: see jobQueue.poll
	}
	u.pool = newWorkerPool(u.queue, d.Config.Workers, u.makeImages, u.jobDied, a.log)
	if a.metrics != nil {
		a.metrics.reg.MustRegister(queueCollector{u})
	}
	if d.Config.Workers > 0 {
		// Blocking fetches get their own connections (the shared client's
		// are for requests, with a 200 ms read timeout).
		opt := *rdb.Options()
		opt.PoolSize = d.Config.Workers + 2
		blocking := redis.NewClient(&opt)
		u.queue.blocking = blocking
		u.pool.start()
		recovering, stopRecovering := context.WithCancel(context.Background())
		recovered := make(chan struct{})
		go func() { defer close(recovered); u.keepRecovering(recovering) }() // stage6_recovery.go
		d.OnClose(func() error {
			stopRecovering()
			<-recovered
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			u.pool.Shutdown(ctx)
			return blocking.Close()
		})
	}
	return u, nil
}

// Store keeps the upload as it came, creates the photo in state processing
// and enqueues its job. If the job cannot be enqueued, the photo and the
// file go again and the upload is a 503: a photo without a job would stay
// "processing" forever.
func (u *queuedUploads) Store(c echo.Context, up checkedUpload) (int64, string, error) {
	ctx := c.Request().Context()
	a := u.a
	key := models.NewImageKey()
	if err := a.files.PutUpload(key, up.File); err != nil {
		return 0, "", err
	}
	f := up.Form
	job := newJobID() // on the row first: a photo whose job is lost is found again (stage6_recovery.go)
	id, err := a.gallery.CreatePhoto(ctx, models.NewPhoto{
		Owner: up.Owner, Title: f.Title, Description: f.Description, Tags: f.Tags,
		ImageKey: key, Width: up.Header.Width, Height: up.Header.Height, State: models.PhotoProcessing, JobID: job,
	})
	if err != nil {
		u.removeFiles(key)
		return 0, "", err
	}
	if err := u.queue.Enqueue(ctx, Job{ID: job, Photo: id, Key: key, Enqueued: time.Now()}); err != nil {
		if _, derr := a.gallery.DeletePhoto(context.WithoutCancel(ctx), id, up.Owner.ID); derr != nil {
			a.log.Error("delete the photo of an upload that could not be queued", "photo", id, "err", derr)
		}
		u.removeFiles(key)
		return 0, "", unavailable(c, 5, "We cannot take uploads right now. Please try again in a few seconds.", err)
	}
	return id, "Your photo is up. Its image will be ready in a moment.", nil
}

// RunQueued runs the waiting jobs in this goroutine, one after the other,
// until none waits, and says how many ran (`flickrkillr worker --drain`;
// the tests run uploads' jobs with it).
func (u *queuedUploads) RunQueued(ctx context.Context) (int, error) {
	n := 0
	for ctx.Err() == nil {
		j, ok, err := u.queue.fetch(ctx, 0)
		if err != nil || !ok {
			return n, err
		}
		u.pool.run(j)
		n++
	}
	return n, ctx.Err()
}

func (u *queuedUploads) removeFiles(key string) {
	if err := u.a.files.Remove(key); err != nil {
		u.a.log.Error("remove files of failed upload", "key", key, "err", err)
	}
}

// makeImages is the workers' handler. It is idempotent: a ready photo (a job
// delivered twice) is done; a deleted photo (while the job waited or ran)
// leaves no files; the files are written atomically under the photo's own
// key, so a second run rewrites the same bytes. A corrupt upload is a
// permanent error: the job goes dead and the photo shows "failed".
func (u *queuedUploads) makeImages(ctx context.Context, j Job) error {
	files := u.a.files
	state, err := u.states.PhotoState(ctx, j.Photo)
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
		return permanent(fmt.Errorf("app: photo %d: the upload is gone", j.Photo))
	}
	if err != nil {
		return err
	}
	defer f.Close()
	hdr, err := models.ReadImageHeader(f)
	if err != nil {
		return permanent(err)
	}
	img, err := u.a.processImage(ctx, hdr, f)
	if isImageError(err) {
		return permanent(err)
	}
	if err != nil {
		return err
	}
	if err := files.Put(j.Key, img); err != nil {
		return err
	}
	_, err = u.states.FinishPhoto(ctx, j.Photo, models.PhotoReady, img.Width, img.Height)
	if errors.Is(err, models.ErrNotFound) {
		return files.Remove(j.Key) // deleted while it ran
	}
	if err != nil {
		return err
	}
	return files.RemoveUpload(j.Key)
}

// jobDied marks a dead job's photo failed. The upload is kept, so that
// `flickrkillr queue --retry` can try again.
func (u *queuedUploads) jobDied(ctx context.Context, j Job, cause string) {
	u.a.log.Warn("image job is dead", "job", j.ID, "photo", j.Photo, "cause", cause)
	_, err := u.states.FinishPhoto(ctx, j.Photo, models.PhotoFailed, 0, 0)
	if errors.Is(err, models.ErrNotFound) {
		err = u.a.files.Remove(j.Key)
	}
	if err != nil {
		u.a.log.Error("mark photo failed", "photo", j.Photo, "err", err)
	}
}

// permanentError is a job that cannot succeed however often it runs.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

func permanent(err error) error { return permanentError{err} }

// workerPool runs n workers on a queue, and the queue's upkeep (the reaper,
// due retries) once a second.
type workerPool struct {
	q      *jobQueue
	n      int
	handle func(ctx context.Context, j Job) error
	died   func(ctx context.Context, j Job, cause string)
	log    *slog.Logger
	id     string // this pool, in the queue's worker table

	busy                atomic.Int64
	done, retried, dead atomic.Int64 // this process's jobs

	stop       chan struct{} // closed by Shutdown: fetch no more
	stopOnce   sync.Once
	jobs       context.Context // cancelled when Shutdown gives up waiting
	cancelJobs context.CancelFunc
	wg         sync.WaitGroup

	mu      sync.Mutex
	running map[string]*runningJob
}

// runningJob is a job a worker runs: finished once the worker settles it,
// handedBack once Shutdown has returned it to the queue (then the worker
// settles nothing).
type runningJob struct{ finished, handedBack bool }

func newWorkerPool(q *jobQueue, n int, handle func(context.Context, Job) error, died func(context.Context, Job, string), log *slog.Logger) *workerPool {
	host, _ := os.Hostname()
	p := &workerPool{q: q, n: n, handle: handle, died: died, log: log, stop: make(chan struct{}),
		running: map[string]*runningJob{}, id: host + ":" + strconv.Itoa(os.Getpid()) + ":" + newJobID()[:8]}
	p.jobs, p.cancelJobs = context.WithCancel(context.Background())
	return p
}

func (p *workerPool) start() {
	for range p.n {
		p.wg.Add(1)
		go p.work()
	}
	p.wg.Add(1)
	go p.upkeep(time.Second)
}

func (p *workerPool) stopping() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// pause waits d, or less if the pool stops.
func (p *workerPool) pause(d time.Duration) {
	select {
	case <-p.stop:
	case <-time.After(d):
	}
}

// work is one worker: fetch, run, settle, until the pool stops.
func (p *workerPool) work() {
	defer p.wg.Done()
	for !p.stopping() {
		j, ok, err := p.q.fetch(context.Background(), time.Second)
		if err != nil {
			p.log.Error("queue fetch failed", "err", err)
			p.pause(time.Second)
			continue
		}
		if !ok {
			if p.q.poll > 0 {
				p.pause(p.q.poll)
			}
			continue
		}
		if p.stopping() {
			p.q.handBack(context.Background(), j.ID)
			return
		}
		p.run(j)
	}
}

// run runs one job, renewing its lease while it runs, and settles it: ack,
// retry later or dead.
func (p *workerPool) run(j Job) {
	p.busy.Add(1)
	defer p.busy.Add(-1)
	r := &runningJob{}
	p.mu.Lock()
	p.running[j.ID] = r
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.running, j.ID)
		p.mu.Unlock()
	}()

	renewed := make(chan struct{})
	go func() {
		t := time.NewTicker(p.q.lease / 3)
		defer t.Stop()
		for {
			select {
			case <-renewed:
				return
			case <-t.C:
				p.q.renew(context.Background(), j.ID)
			}
		}
	}()
	err := p.call(j)
	close(renewed)

	p.mu.Lock()
	if r.handedBack {
		p.mu.Unlock()
		return
	}
	r.finished = true
	p.mu.Unlock()
	ctx := context.Background()
	if err == nil {
		if err := p.q.ack(ctx, j.ID); err != nil {
			p.log.Error("ack job", "job", j.ID, "err", err) // the reaper will run it again
		}
		p.done.Add(1)
		return
	}
	dead, ferr := p.q.fail(ctx, j.ID, err, errors.As(err, new(permanentError)))
	if ferr != nil {
		p.log.Error("record failed job", "job", j.ID, "err", ferr)
		return
	}
	if !dead {
		p.retried.Add(1)
		p.log.Warn("image job failed; it will be retried", "job", j.ID, "photo", j.Photo, "err", err)
		return
	}
	p.dead.Add(1)
	p.died(ctx, j, err.Error())
}

// call runs the handler; a panic is a failed attempt, not a dead process.
func (p *workerPool) call(j Job) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("app: job %s panicked: %v", j.ID, v)
		}
	}()
	return p.handle(p.jobs, j)
}

// upkeep reaps the jobs of dead workers, moves due retries to the queue and
// says in the queue's worker table how many of this pool's workers are busy.
func (p *workerPool) upkeep(every time.Duration) {
	defer p.wg.Done()
	for !p.stopping() {
		ctx := context.Background()
		died, err := p.q.maintain(ctx)
		if err != nil {
			p.log.Error("queue upkeep failed", "err", err)
		}
		for _, j := range died {
			p.died(ctx, j, "its worker died too often")
		}
		p.q.reportWorkers(ctx, p.id, p.n, int(p.busy.Load()))
		p.pause(every)
	}
	p.q.reportWorkers(context.Background(), p.id, 0, 0)
}

// Shutdown stops fetching and waits for the running jobs until ctx ends;
// the jobs still running then are handed back to the queue (to the front,
// with no attempt counted) and their contexts cancelled.
func (p *workerPool) Shutdown(ctx context.Context) error {
	p.stopOnce.Do(func() { close(p.stop) })
	idle := make(chan struct{})
	go func() { p.wg.Wait(); close(idle) }()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
	}
	p.cancelJobs()
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for id, r := range p.running {
		if !r.finished {
			r.handedBack = true
			errs = append(errs, p.q.handBack(context.Background(), id))
		}
	}
	return errors.Join(errs...)
}
