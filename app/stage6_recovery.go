package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"flickrkillr/app/jobqueue"
)

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
				known, err := w.queue.Known(ctx, p.JobID)
				if err != nil {
					return recovered, err
				}
				if known {
					continue
				}
			}
			job := jobqueue.NewJobID()
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
