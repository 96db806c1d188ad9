package jobqueue

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
)

// permanentError is a job that cannot succeed however often it runs.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// Permanent marks err as a failure that no retry can fix (a corrupt
// upload): the job goes dead at once.
func Permanent(err error) error { return permanentError{err} }

// Pool runs n workers on a queue, and the queue's upkeep (the reaper, due
// retries) once a second. Its handler must be idempotent: delivery is at
// least once.
type Pool struct {
	q      *Queue
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

// NewPool is a pool of n workers on q: handle runs a job (an error retries
// it later, a Permanent one kills it), died hears of a job that went dead.
// Start starts the workers; without it the pool runs jobs only when asked
// (RunQueued).
func NewPool(q *Queue, n int, handle func(context.Context, Job) error, died func(context.Context, Job, string), log *slog.Logger) *Pool {
	host, _ := os.Hostname()
	p := &Pool{q: q, n: n, handle: handle, died: died, log: log, stop: make(chan struct{}),
		running: map[string]*runningJob{}, id: host + ":" + strconv.Itoa(os.Getpid()) + ":" + NewJobID()[:8]}
	p.jobs, p.cancelJobs = context.WithCancel(context.Background())
	return p
}

// Start starts the workers and the upkeep.
func (p *Pool) Start() {
	for range p.n {
		p.wg.Add(1)
		go p.work()
	}
	p.wg.Add(1)
	go p.upkeep(time.Second)
}

func (p *Pool) stopping() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// pause waits d, or less if the pool stops.
func (p *Pool) pause(d time.Duration) {
	select {
	case <-p.stop:
	case <-time.After(d):
	}
}

// work is one worker: fetch, run, settle, until the pool stops.
func (p *Pool) work() {
	defer p.wg.Done()
	for !p.stopping() {
		j, ok, err := p.q.Fetch(context.Background(), time.Second)
		if err != nil {
			p.log.Error("queue fetch failed", "err", err)
			p.pause(time.Second)
			continue
		}
		if !ok {
			if p.q.Poll > 0 {
				p.pause(p.q.Poll)
			}
			continue
		}
		if p.stopping() {
			p.q.HandBack(context.Background(), j.ID)
			return
		}
		p.run(j)
	}
}

// run runs one job, renewing its lease while it runs, and settles it: ack,
// retry later or dead.
func (p *Pool) run(j Job) {
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
		t := time.NewTicker(p.q.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-renewed:
				return
			case <-t.C:
				p.q.Renew(context.Background(), j.ID)
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
		if err := p.q.Ack(ctx, j.ID); err != nil {
			p.log.Error("ack job", "job", j.ID, "err", err) // the reaper will run it again
		}
		p.done.Add(1)
		return
	}
	dead, ferr := p.q.Fail(ctx, j.ID, err, errors.As(err, new(permanentError)))
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
func (p *Pool) call(j Job) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("jobqueue: job %s panicked: %v", j.ID, v)
		}
	}()
	return p.handle(p.jobs, j)
}

// upkeep reaps the jobs of dead workers, moves due retries to the queue and
// says in the queue's worker table how many of this pool's workers are busy.
func (p *Pool) upkeep(every time.Duration) {
	defer p.wg.Done()
	for !p.stopping() {
		ctx := context.Background()
		died, err := p.q.Maintain(ctx)
		if err != nil {
			p.log.Error("queue upkeep failed", "err", err)
		}
		for _, j := range died {
			p.died(ctx, j, "its worker died too often")
		}
		p.q.ReportWorkers(ctx, p.id, p.n, int(p.busy.Load()))
		p.pause(every)
	}
	p.q.ReportWorkers(context.Background(), p.id, 0, 0)
}

// Shutdown stops fetching and waits for the running jobs until ctx ends;
// the jobs still running then are handed back to the queue (to the front,
// with no attempt counted) and their contexts cancelled.
func (p *Pool) Shutdown(ctx context.Context) error {
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
			errs = append(errs, p.q.HandBack(context.Background(), id))
		}
	}
	return errors.Join(errs...)
}

// RunQueued runs the waiting jobs in this goroutine, one after the other,
// until none waits, and says how many ran (`flickrkillr worker --drain`;
// the tests run uploads' jobs with it).
func (p *Pool) RunQueued(ctx context.Context) (int, error) {
	n := 0
	for ctx.Err() == nil {
		j, ok, err := p.q.Fetch(ctx, 0)
		if err != nil || !ok {
			return n, err
		}
		p.run(j)
		n++
	}
	return n, ctx.Err()
}
