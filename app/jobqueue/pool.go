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

	// Outage, when set with Ping, says whether a handler's error means that
	// a dependency did not answer (the database stopped, its circuit breaker
	// open) rather than that the job failed. Such an error is not an attempt:
	// the worker keeps the job (and its lease) and asks Ping, backing off,
	// until the dependency answers, then runs the job again. A job would
	// otherwise spend its attempts in the first seconds of an outage, with
	// the breaker failing each at once, and die with the whole waiting list.
	Outage func(error) bool
	// Ping asks the dependencies whether they answer (nil: they do).
	Ping func(ctx context.Context) error

	busy                atomic.Int64
	done, retried, dead atomic.Int64 // this process's jobs

	stop       chan struct{}   // closed by Shutdown: fetch no more
	stopped    context.Context // ends with stop: what waits for Redis or a died hook gives up
	endStopped context.CancelFunc
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
// it later, a Permanent one kills it), died hears of a job that went dead,
// with a context that ends when the pool stops (a hook that waits for a
// dependency waits until then).
// Start starts the workers; without it the pool runs jobs only when asked
// (RunQueued).
func NewPool(q *Queue, n int, handle func(context.Context, Job) error, died func(context.Context, Job, string), log *slog.Logger) *Pool {
	host, _ := os.Hostname()
	p := &Pool{q: q, n: n, handle: handle, died: died, log: log, stop: make(chan struct{}),
		running: map[string]*runningJob{}, id: host + ":" + strconv.Itoa(os.Getpid()) + ":" + NewJobID()[:8]}
	p.jobs, p.cancelJobs = context.WithCancel(context.Background())
	p.stopped, p.endStopped = context.WithCancel(context.Background())
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
	err := p.attempt(j)
	close(renewed)

	p.mu.Lock()
	if r.handedBack {
		p.mu.Unlock()
		return
	}
	r.finished = true
	p.mu.Unlock()
	if errors.Is(err, errStopping) {
		// The pool stopped while the job waited for a dependency: back to the
		// front of the queue, no attempt counted, as Shutdown would.
		p.untilRedisAnswers("hand back job", j.ID, func(ctx context.Context) error { return p.q.HandBack(ctx, j.ID) })
		return
	}
	if err == nil {
		// Redis may be away too: the worker keeps trying, rather than leave
		// the job to the reaper, which would count an attempt.
		p.untilRedisAnswers("ack job", j.ID, func(ctx context.Context) error { return p.q.Ack(ctx, j.ID) })
		p.done.Add(1)
		return
	}
	var dead bool
	if !p.untilRedisAnswers("record failed job", j.ID, func(ctx context.Context) (ferr error) {
		dead, ferr = p.q.Fail(ctx, j.ID, err, errors.As(err, new(permanentError)))
		return ferr
	}) {
		return
	}
	if !dead {
		p.retried.Add(1)
		p.log.Warn("image job failed; it will be retried", "job", j.ID, "photo", j.Photo, "err", err)
		return
	}
	p.dead.Add(1)
	p.died(p.stopped, j, err.Error())
}

// errStopping is a job that waited for a dependency when the pool stopped.
var errStopping = errors.New("jobqueue: the pool stopped while the job waited for a dependency")

// Backoff of a worker that waits for a dependency (Ping) or for Redis.
const (
	waitFirst = 100 * time.Millisecond
	waitMax   = 2 * time.Second
	pingLimit = 2 * time.Second // a ping that hangs (a paused server) counts as no answer
	// blips: reruns of a job whose outage error met a dependency that
	// answered the very next ping (a dropped connection, a restart's first
	// statement). Past them the error is the job's own (a statement of its
	// own that times out each time): it counts as an attempt, so that such a
	// job cannot hold its worker, or the head of the queue, forever.
	maxBlips = 3
)

// attempt runs the job until it succeeds or fails for a reason of its own.
// An outage of a dependency (Outage) is not a reason of the job's: the
// worker waits for the dependency and runs the job again, with no attempt
// counted. errStopping: the pool stopped meanwhile.
func (p *Pool) attempt(j Job) error {
	blips := 0
	for {
		err := p.call(j)
		if err == nil || p.Outage == nil || p.Ping == nil || !p.Outage(err) {
			return err
		}
		waited, ok := p.awaitDependencies(j, err)
		switch {
		case !ok:
			return errStopping
		case waited:
			blips = 0
		default:
			if blips++; blips > maxBlips {
				return err
			}
			p.pause(time.Duration(blips) * waitFirst)
		}
	}
}

// awaitDependencies pings until the dependencies answer, backing off from
// waitFirst to waitMax; waited says whether any ping went unanswered (an
// outage, not a blip), ok is false when the pool stopped first.
func (p *Pool) awaitDependencies(j Job, cause error) (waited, ok bool) {
	wait := waitFirst
	for {
		ctx, cancel := context.WithTimeout(p.stopped, pingLimit)
		err := p.Ping(ctx)
		cancel()
		if err == nil {
			if waited {
				p.log.Info("the dependency answers again; the job runs again", "job", j.ID, "photo", j.Photo)
			}
			return waited, true
		}
		if !waited {
			p.log.Warn("a dependency is unavailable: the job waits for it, no attempt counted", "job", j.ID, "photo", j.Photo, "err", cause)
			waited = true
		}
		p.pause(wait)
		if p.stopping() {
			return waited, false
		}
		wait = min(2*wait, waitMax)
	}
}

// untilRedisAnswers runs settle (an ack, a failed attempt, a hand-back) until
// Redis answers it, backing off, or until the pool stops (the reaper then
// finds the job when its lease ends). ok says whether it ran.
func (p *Pool) untilRedisAnswers(what, id string, settle func(ctx context.Context) error) (ok bool) {
	wait := waitFirst
	for {
		err := settle(context.Background())
		if err == nil {
			return true
		}
		p.log.Error(what, "job", id, "err", err)
		if p.stopping() {
			return false
		}
		p.pause(wait)
		wait = min(2*wait, waitMax)
	}
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
			p.died(p.stopped, j, "its worker died too often")
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
	p.stopOnce.Do(func() { close(p.stop); p.endStopped() })
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
