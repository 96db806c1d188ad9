// Package jobqueue is a job queue that loses nothing, on Redis lists (stage
// 6: uploads' images are made by workers after the request), its worker
// pool, and a Prometheus collector of its figures. It knows nothing of the
// app: a handler and a "died" callback are all a pool is told.
package jobqueue

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// A job queue that loses nothing, on Redis lists (one file of our own,
// about 370 lines with comments; docs/stages/06-queue.md says why not a
// library). A job's id moves between these keys, its body stays in one
// hash:
//
//	ready       list  waiting, FIFO: LPUSH in, BLMOVE out from the right
//	processing  list  taken by a worker (BLMOVE moves it here atomically)
//	leases      zset  id → when its worker's lease ends (ms); renewed while it runs
//	delayed     zset  id → when its retry is due (ms): exponential backoff
//	dead        list  failed too often, or cannot succeed; retried or dropped by hand
//	jobs, attempts, errors  hashes by id; stats  hash of counters
//
// Every time is the client's clock written as a score, never a Redis TTL:
// the reaper works the same on the embedded miniredis, whose TTLs do not
// run by themselves. Delivery is at least once (a job runs again when its
// worker dies after the work but before the ack), so handlers are idempotent.

// Job is one piece of work: an upload whose images a worker makes.
type Job struct {
	ID       string    `json:"id"` // unique: 128 random bits
	Photo    int64     `json:"photo"`
	Key      string    `json:"key"` // the photo's image key; the upload waits under it
	Enqueued time.Time `json:"enqueued"`
}

// Queue is one named queue in Redis. Its exported fields are options, set
// before the first use.
type Queue struct {
	rdb *redis.Client
	// Blocking is the client for BLMOVE (the shared one's connections have
	// short read timeouts); rdb when nil.
	Blocking *redis.Client
	// Poll, when set, makes Fetch never block: the workers ask every Poll.
	// The embedded miniredis wakes every blocked client on every command
	// (under its one lock), so there a blocked worker costs each request.
	Poll        time.Duration
	prefix      string
	Lease       time.Duration // a worker that has not renewed its lease this long is dead
	MaxAttempts int           // failures (and dead workers) before a job is dead
	Backoff     time.Duration // before the first retry; doubled each time, up to MaxBackoff
	MaxBackoff  time.Duration
	Now         func() time.Time // tests move it forward instead of sleeping
}

// New is the queue name in rdb: leases of 30 s, five attempts, backoff from
// 1 s to 5 min.
func New(rdb *redis.Client, name string) *Queue {
	return &Queue{rdb: rdb, prefix: "queue:" + name + ":", Lease: 30 * time.Second, MaxAttempts: 5,
		Backoff: time.Second, MaxBackoff: 5 * time.Minute, Now: time.Now}
}

// Client is the Redis client the queue uses.
func (q *Queue) Client() *redis.Client { return q.rdb }

func (q *Queue) key(part string) string { return q.prefix + part }

func (q *Queue) ms(t time.Time) float64 { return float64(t.UnixMilli()) }

// NewJobID is 128 random bits in hex.
func NewJobID() string {
	var b [16]byte
	crand.Read(b[:]) // never fails on Linux
	return hex.EncodeToString(b[:])
}

// Enqueue stores the job and puts it at the back of the queue, in one
// transaction that also ends its reservation (Reserve), if any.
func (q *Queue) Enqueue(ctx context.Context, j Job) error {
	body, err := json.Marshal(j)
	if err != nil {
		return err
	}
	_, err = q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, q.key("jobs"), j.ID, body)
		p.LPush(ctx, q.key("ready"), j.ID)
		p.Del(ctx, q.key("reserved:"+j.ID))
		return nil
	})
	if err != nil {
		return fmt.Errorf("jobqueue: enqueue job %s: %w", j.ID, err)
	}
	return nil
}

// Fetch takes the oldest ready job, waiting up to block for one (0: not at
// all, LMOVE): BLMOVE
// moves it to processing atomically, then its lease starts (the reaper
// gives a lease to an id it finds in processing without one, should the
// worker die between the two). ok is false when nothing came.
func (q *Queue) Fetch(ctx context.Context, block time.Duration) (j Job, ok bool, err error) {
	c := q.Blocking
	if c == nil {
		c = q.rdb
	}
	var id string
	if block > 0 && q.Poll == 0 {
		id, err = c.BLMove(ctx, q.key("ready"), q.key("processing"), "RIGHT", "LEFT", block).Result()
	} else {
		id, err = q.rdb.LMove(ctx, q.key("ready"), q.key("processing"), "RIGHT", "LEFT").Result()
	}
	if errors.Is(err, redis.Nil) {
		return j, false, nil
	}
	if err != nil {
		return j, false, fmt.Errorf("jobqueue: fetch a job: %w", err)
	}
	q.Renew(ctx, id)
	body, err := q.rdb.HGet(ctx, q.key("jobs"), id).Bytes()
	if errors.Is(err, redis.Nil) {
		// Acked by a worker that finished after its job had been handed back
		// (a slow shutdown): nothing left to do.
		q.settle(ctx, id, "")
		return j, false, nil
	}
	if err == nil {
		err = json.Unmarshal(body, &j)
	}
	if err != nil {
		return j, false, fmt.Errorf("jobqueue: read job %s: %w", id, err)
	}
	return j, true, nil
}

// Renew extends a running job's lease.
func (q *Queue) Renew(ctx context.Context, id string) error {
	return q.rdb.ZAdd(ctx, q.key("leases"), redis.Z{Score: q.ms(q.Now().Add(q.Lease)), Member: id}).Err()
}

// settleScript takes a job off processing and its lease, atomically, and
// then, by ARGV[2]: "ack" forgets it and counts it done, "back" returns it to
// the front of ready, "" nothing more. Each is safe to run twice: a settle
// whose reply was lost (the connection broke after Redis ran it) is sent
// again by the pool, and a second ack must not count the job done twice, nor
// a second hand-back queue it twice. An ack counts only the body it removed;
// a hand-back pushes only the id it took off processing.
var settleScript = redis.NewScript(`
local processing, leases, jobs, attempts, errors, ready, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local id, mode = ARGV[1], ARGV[2]
local taken = redis.call('LREM', processing, 1, id)
redis.call('ZREM', leases, id)
if mode == 'ack' then
  redis.call('HDEL', attempts, id)
  redis.call('HDEL', errors, id)
  if redis.call('HDEL', jobs, id) == 1 then redis.call('HINCRBY', stats, 'done', 1) end
elseif mode == 'back' and taken == 1 then
  redis.call('RPUSH', ready, id)
end
return taken
`)

// settle runs settleScript for id in mode.
func (q *Queue) settle(ctx context.Context, id, mode string) error {
	keys := []string{q.key("processing"), q.key("leases"), q.key("jobs"), q.key("attempts"),
		q.key("errors"), q.key("ready"), q.key("stats")}
	if err := settleScript.Run(ctx, q.rdb, keys, id, mode).Err(); err != nil {
		return fmt.Errorf("jobqueue: settle job %s: %w", id, err)
	}
	return nil
}

// Ack forgets a job that is done.
func (q *Queue) Ack(ctx context.Context, id string) error { return q.settle(ctx, id, "ack") }

// Known says whether the queue holds the job: waiting, running, due for a
// retry or dead (its body stays until it is done or dropped), or reserved
// (Reserve) and about to be enqueued; and dead says whether it is on the dead
// list. Recovery re-enqueues a photo whose job the queue does not know, and
// marks failed one whose job is dead (should the worker have been unable to).
func (q *Queue) Known(ctx context.Context, id string) (known, dead bool, err error) {
	var body *redis.BoolCmd
	var reserved *redis.IntCmd
	var pos *redis.IntCmd
	_, err = q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		body, reserved = p.HExists(ctx, q.key("jobs"), id), p.Exists(ctx, q.key("reserved:"+id))
		pos = p.LPos(ctx, q.key("dead"), id, redis.LPosArgs{})
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, false, fmt.Errorf("jobqueue: job %s known: %w", id, err)
	}
	dead = pos.Err() == nil
	return body.Val() || reserved.Val() == 1 || dead, dead, nil
}

// Reserve makes id known for ttl before its job is enqueued. A process that
// names a new job somewhere else first (an upload and recovery both write it
// on the photo's row) reserves it, so that another process reading that
// name in between does not take the job for lost; should the first die
// before it enqueues, the reservation ends and the job is lost again, to be
// recovered. Enqueue ends the reservation.
func (q *Queue) Reserve(ctx context.Context, id string, ttl time.Duration) error {
	if err := q.rdb.Set(ctx, q.key("reserved:"+id), 1, ttl).Err(); err != nil {
		return fmt.Errorf("jobqueue: reserve job %s: %w", id, err)
	}
	return nil
}

// CountRecovered adds n to the jobs that were enqueued again for work the
// queue had lost (Stats.Recovered).
func (q *Queue) CountRecovered(ctx context.Context, n int) {
	q.rdb.HIncrBy(ctx, q.key("stats"), "recovered", int64(n))
}

// HandBack returns a job that was not finished (a shutdown) to the front of
// the queue; it counts no attempt.
func (q *Queue) HandBack(ctx context.Context, id string) error {
	return q.settle(ctx, id, "back")
}

// Fail records a failed attempt: the job waits in delayed for its backoff,
// or, when it cannot succeed (permanent) or has failed maxAttempts times,
// goes to dead. dead says which. It is one script, and it does nothing to a
// job that is no longer in processing, so that a worker may call it again
// when Redis did not answer (the first call may have run): an attempt is
// never counted twice.
func (q *Queue) Fail(ctx context.Context, id string, cause error, permanent bool) (dead bool, err error) {
	keys := []string{q.key("processing"), q.key("leases"), q.key("attempts"), q.key("errors"),
		q.key("dead"), q.key("delayed"), q.key("stats")}
	n, err := failScript.Run(ctx, q.rdb, keys, id, cause.Error(), permanent, q.MaxAttempts, q.ms(q.Now()),
		q.Backoff.Milliseconds(), q.MaxBackoff.Milliseconds(), rand.Float64()).Int()
	if err != nil {
		return false, fmt.Errorf("jobqueue: record a failed attempt of job %s: %w", id, err)
	}
	return n == 1, nil
}

// failScript is Fail: it returns 1 when the job went dead, 0 when it waits
// for a retry, -1 when it was not in processing (settled already). Retry n
// (1, 2, …) waits backoff·2^(n-1) up to maxBackoff, of which a random half
// ("equal jitter", the fraction ARGV[8] from the caller), so that jobs that
// failed together do not all come back together.
var failScript = redis.NewScript(`
local processing, leases, attempts, errors, dead, delayed, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local id, cause, permanent, max, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local backoff, maxBackoff, r = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
if redis.call('LREM', processing, 1, id) == 0 then return -1 end
redis.call('ZREM', leases, id)
local n = redis.call('HINCRBY', attempts, id, 1)
redis.call('HSET', errors, id, cause)
if permanent == '1' or n >= max then
  redis.call('LPUSH', dead, id)
  redis.call('HINCRBY', stats, 'dead', 1)
  return 1
end
local d = maxBackoff
if n < 32 and backoff * 2 ^ (n - 1) < maxBackoff then d = backoff * 2 ^ (n - 1) end
redis.call('ZADD', delayed, now + math.floor(d / 2 + r * d / 2), id)
redis.call('HINCRBY', stats, 'retried', 1)
return 0
`)

// maintainScript reaps and promotes, atomically: an id in processing whose
// lease has ended goes back to the front of ready (its worker died; that is
// an attempt too, so a job that kills its worker ends dead), one without a
// lease gets one; retries that are due move from delayed to the back of
// ready. It returns the ids that went dead.
var maintainScript = redis.NewScript(`
local processing, leases, ready, dead, attempts, delayed, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local now, lease, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local died = {}
for _, id in ipairs(redis.call('LRANGE', processing, 0, -1)) do
  local ends = redis.call('ZSCORE', leases, id)
  if not ends then
    redis.call('ZADD', leases, now + lease, id)
  elseif tonumber(ends) <= now then
    redis.call('LREM', processing, 1, id)
    redis.call('ZREM', leases, id)
    redis.call('HINCRBY', stats, 'reaped', 1)
    if redis.call('HINCRBY', attempts, id, 1) >= max then
      redis.call('LPUSH', dead, id)
      redis.call('HINCRBY', stats, 'dead', 1)
      redis.call('HSET', KEYS[8], id, 'its worker died (lease ended)')
      table.insert(died, id)
    else
      redis.call('RPUSH', ready, id)
    end
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', delayed, id)
  redis.call('LPUSH', ready, id)
end
return died
`)

// Maintain runs maintainScript at q.now and returns the jobs that went dead.
func (q *Queue) Maintain(ctx context.Context) ([]Job, error) {
	keys := []string{q.key("processing"), q.key("leases"), q.key("ready"), q.key("dead"),
		q.key("attempts"), q.key("delayed"), q.key("stats"), q.key("errors")}
	ids, err := maintainScript.Run(ctx, q.rdb, keys, q.ms(q.Now()), q.Lease.Milliseconds(), q.MaxAttempts).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("jobqueue: reap jobs: %w", err)
	}
	var died []Job
	for _, id := range ids {
		if j, err := q.Job(ctx, id); err == nil {
			died = append(died, j)
		}
	}
	return died, nil
}

// Job reads a job's body.
func (q *Queue) Job(ctx context.Context, id string) (Job, error) {
	var j Job
	body, err := q.rdb.HGet(ctx, q.key("jobs"), id).Bytes()
	if err == nil {
		err = json.Unmarshal(body, &j)
	}
	if err != nil {
		return j, fmt.Errorf("jobqueue: job %s: %w", id, err)
	}
	return j, nil
}

// Stats are the queue's figures: what waits, runs, retries and died.
type Stats struct {
	Ready, Processing, Delayed, Dead int64
	Oldest                           time.Duration // how long the oldest ready job has waited
	Done, Retried, Reaped, Died      int64         // counters since the queue began
	Recovered                        int64         // jobs enqueued again for photos whose job was lost
	Workers, Busy                    int64         // in every process that reported in the last 5 s
}

// ReportWorkers writes a pool's size and busy workers, with the time, into
// the queue's worker table (n 0: the pool stopped).
func (q *Queue) ReportWorkers(ctx context.Context, pool string, n, busy int) {
	if n == 0 {
		q.rdb.HDel(ctx, q.key("workers"), pool)
		return
	}
	q.rdb.HSet(ctx, q.key("workers"), pool, fmt.Sprintf("%d %d %d", n, busy, q.Now().UnixMilli()))
}

// Stats reads the figures in one round trip (and one more for the oldest job).
func (q *Queue) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	var ready, processing, dead *redis.IntCmd
	var delayed *redis.IntCmd
	var oldest *redis.StringCmd
	var stats, workers *redis.MapStringStringCmd
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		ready, processing = p.LLen(ctx, q.key("ready")), p.LLen(ctx, q.key("processing"))
		delayed, dead = p.ZCard(ctx, q.key("delayed")), p.LLen(ctx, q.key("dead"))
		oldest, stats = p.LIndex(ctx, q.key("ready"), -1), p.HGetAll(ctx, q.key("stats"))
		workers = p.HGetAll(ctx, q.key("workers"))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return s, fmt.Errorf("jobqueue: queue stats: %w", err)
	}
	s.Ready, s.Processing, s.Delayed, s.Dead = ready.Val(), processing.Val(), delayed.Val(), dead.Val()
	count := func(name string) int64 { n, _ := strconv.ParseInt(stats.Val()[name], 10, 64); return n }
	s.Done, s.Retried, s.Reaped, s.Died = count("done"), count("retried"), count("reaped"), count("dead")
	s.Recovered = count("recovered")
	for _, v := range workers.Val() {
		var n, busy, at int64
		if _, err := fmt.Sscan(v, &n, &busy, &at); err == nil && q.Now().UnixMilli()-at < 5000 {
			s.Workers, s.Busy = s.Workers+n, s.Busy+busy
		}
	}
	if id := oldest.Val(); id != "" {
		if j, err := q.Job(ctx, id); err == nil {
			s.Oldest = max(0, q.Now().Sub(j.Enqueued))
		}
	}
	return s, nil
}

// DeadJob is a dead job with its attempts and last error.
type DeadJob struct {
	Job
	Attempts int64
	Error    string
}

// Dead lists the dead jobs, newest first.
func (q *Queue) Dead(ctx context.Context) ([]DeadJob, error) {
	ids, err := q.rdb.LRange(ctx, q.key("dead"), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("jobqueue: dead jobs: %w", err)
	}
	var list []DeadJob
	for _, id := range ids {
		d := DeadJob{Job: Job{ID: id}}
		d.Job, _ = q.Job(ctx, id)
		d.Attempts, _ = q.rdb.HGet(ctx, q.key("attempts"), id).Int64()
		d.Error = q.rdb.HGet(ctx, q.key("errors"), id).Val()
		list = append(list, d)
	}
	return list, nil
}

// reviveScript takes a dead job off the dead list and, to retry it, puts it
// at the back of ready with no attempts, or, to drop it, forgets it.
var reviveScript = redis.NewScript(`
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
if ARGV[2] == 'retry' then
  redis.call('LPUSH', KEYS[2], ARGV[1])
else
  redis.call('HDEL', KEYS[5], ARGV[1])
end
return 1
`)

// ErrNoDeadJob is a retry or drop of an id that is not on the dead list.
var ErrNoDeadJob = errors.New("no such dead job")

// RetryDead puts a dead job back in the queue, with no attempts.
func (q *Queue) RetryDead(ctx context.Context, id string) error { return q.revive(ctx, id, "retry") }

// DropDead forgets a dead job.
func (q *Queue) DropDead(ctx context.Context, id string) error { return q.revive(ctx, id, "drop") }

func (q *Queue) revive(ctx context.Context, id, how string) error {
	keys := []string{q.key("dead"), q.key("ready"), q.key("attempts"), q.key("errors"), q.key("jobs")}
	n, err := reviveScript.Run(ctx, q.rdb, keys, id, how).Int()
	if err != nil {
		return fmt.Errorf("jobqueue: %s job %s: %w", how, id, err)
	}
	if n == 0 {
		return fmt.Errorf("jobqueue: %s job %s: %w", how, id, ErrNoDeadJob)
	}
	return nil
}
