package jobqueue

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

var errDown = errors.New("the database is not answering")

// outagePool is a pool whose handler and ping fail with errDown while down
// holds, and counts the handler's calls and the pings.
func outagePool(q *testQueue, down *atomic.Bool, calls, pings *atomic.Int64) *Pool {
	p := NewPool(q.Queue, 0, func(context.Context, Job) error {
		calls.Add(1)
		if down.Load() {
			return errDown
		}
		return nil
	}, func(context.Context, Job, string) {}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	p.Outage = func(err error) bool { return errors.Is(err, errDown) }
	p.Ping = func(context.Context) error {
		pings.Add(1)
		if down.Load() {
			return errDown
		}
		return nil
	}
	return p
}

func (q *testQueue) attempts(t *testing.T, id string) int64 {
	t.Helper()
	n, _ := q.rdb.HGet(context.Background(), q.key("attempts"), id).Int64()
	return n
}

// A dependency's outage is not the job's failure: the worker keeps the job,
// pings with backoff while the dependency is away, and runs the job again
// once it answers, with no attempt counted, even when one attempt would
// kill it. The jobs behind it wait in the queue.
func TestAnOutageCountsNoAttempt(t *testing.T) {
	q := newTestQueue(t)
	q.MaxAttempts = 1
	j := q.enqueue(t, 1)
	q.enqueue(t, 2)
	var down atomic.Bool
	var calls, pings atomic.Int64
	down.Store(true)
	p := outagePool(q, &down, &calls, &pings)
	ran := make(chan struct{})
	go func() { defer close(ran); p.run(q.take(t)) }()
	deadline := time.Now().Add(10 * time.Second)
	for pings.Load() < 4 { // 100, 200, 400 ms of backoff: it waits
		if time.Now().After(deadline) {
			t.Fatalf("%d pings in 10 s", pings.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("the handler ran %d times while the dependency was away, want once", n)
	}
	if s := q.stats(t); s.Processing != 1 || s.Ready != 1 || s.Retried+s.Dead != 0 || q.attempts(t, j.ID) != 0 {
		t.Fatalf("stats %+v, %d attempts: want the job held by its worker, no attempt counted", s, q.attempts(t, j.ID))
	}
	down.Store(false)
	<-ran
	if s := q.stats(t); s.Done != 1 || s.Processing+s.Delayed+s.Dead != 0 || s.Ready != 1 {
		t.Fatalf("stats %+v, want the job done and the next one waiting", s)
	}

	t.Run("an outage error while the dependency answers is the job's own", func(t *testing.T) {
		q := newTestQueue(t)
		j := q.enqueue(t, 3)
		var down atomic.Bool
		var calls, pings atomic.Int64
		p := outagePool(q, &down, &calls, &pings)
		h := p.handle
		p.handle = func(ctx context.Context, j Job) error { h(ctx, j); return errDown } // fails whatever the ping says
		p.run(q.take(t))
		if n := calls.Load(); n != maxBlips+1 {
			t.Fatalf("ran %d times, want %d", n, maxBlips+1)
		}
		if s := q.stats(t); s.Retried != 1 || q.attempts(t, j.ID) != 1 {
			t.Fatalf("stats %+v, want one attempt counted", s)
		}
	})

	t.Run("a pool that stops hands the waiting job back", func(t *testing.T) {
		q := newTestQueue(t)
		j := q.enqueue(t, 4)
		var down atomic.Bool
		var calls, pings atomic.Int64
		down.Store(true)
		p := outagePool(q, &down, &calls, &pings)
		ran := make(chan struct{})
		go func() { defer close(ran); p.run(q.take(t)) }()
		for pings.Load() < 2 {
			time.Sleep(10 * time.Millisecond)
		}
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		<-ran
		if s := q.stats(t); s.Ready != 1 || s.Processing+s.Retried+s.Dead != 0 || q.attempts(t, j.ID) != 0 {
			t.Fatalf("stats %+v, want the job back in the queue with no attempt", s)
		}
	})
}

// A job finished while Redis is away is acked once Redis is back, by its
// worker, not left to the reaper (which would count an attempt).
func TestAnAckWaitsForRedis(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	q := &testQueue{Queue: New(rdb, "test"), clock: time.Now()}
	q.enqueue(t, 1)
	release := make(chan struct{})
	p := NewPool(q.Queue, 0, func(context.Context, Job) error { <-release; return nil },
		func(context.Context, Job, string) {}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ran := make(chan struct{})
	j := q.take(t)
	go func() { defer close(ran); p.run(j) }()
	addr := mr.Addr()
	mr.Close() // Redis goes away while the job runs, and the job ends
	close(release)
	time.Sleep(500 * time.Millisecond)
	if err := mr.StartAddr(addr); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("the ack did not get through within 10 s of Redis's return")
	}
	if s := q.stats(t); s.Done != 1 || s.Processing != 0 || q.attempts(t, j.ID) != 0 {
		t.Fatalf("stats %+v, want the job acked, no attempt", s)
	}
}
