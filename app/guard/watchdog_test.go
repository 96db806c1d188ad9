package guard

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// fakeDependency answers the watchdog's probe at once, never (until
// released), or with a refusal.
type fakeDependency struct {
	mode    atomic.Int32 // 0 answers, 1 hangs, 2 refuses
	release chan struct{}
}

var errRefused = errors.New("connection refused")

func (f *fakeDependency) probe(ctx context.Context) error {
	switch f.mode.Load() {
	case 1:
		select {
		case <-f.release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	case 2:
		return errRefused
	}
	return nil
}

func newTestWatchdog(t *testing.T, f *fakeDependency) (*Watchdog, *Breaker) {
	t.Helper()
	b := NewBreaker(BreakerOptions{})
	w := NewWatchdog(WatchdogOptions{Probe: f.probe, Every: 5 * time.Millisecond, Bound: 50 * time.Millisecond,
		Breaker: b, IsRefused: func(err error) bool { return errors.Is(err, errRefused) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return w, b
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWatchdogOpensOnNoProgressAndClosesOnTheAnswer(t *testing.T) {
	f := &fakeDependency{release: make(chan struct{})}
	w, b := newTestWatchdog(t, f)
	waitUntil(t, "a first answer", func() bool { last, _ := w.RoundTrips(); return last > 0 })
	f.mode.Store(1)
	w.Begin() // a call that waits and is never answered
	waitUntil(t, "the breaker to open", b.Open)
	if b.Allow(context.Background()) {
		t.Fatal("an open breaker let a call through")
	}
	if b.Cause() == nil {
		t.Fatal("an open breaker says no cause")
	}
	f.mode.Store(0)
	close(f.release)
	waitUntil(t, "the breaker to close", func() bool { return !b.Open() })
	w.End(false)
}

func TestWatchdogLeavesSlowButAnsweringAlone(t *testing.T) {
	f := &fakeDependency{release: make(chan struct{})}
	w, b := newTestWatchdog(t, f)
	f.mode.Store(1) // the probe waits, like a slow server's queue
	w.Begin()
	stop := time.Now().Add(500 * time.Millisecond) // ten bounds
	for time.Now().Before(stop) {
		w.Begin()
		time.Sleep(10 * time.Millisecond)
		w.End(true) // calls are answered, late: progress
		if b.Open() {
			t.Fatalf("a slow dependency that answers opened the breaker: %v", b.Cause())
		}
	}
	w.End(true)
	close(f.release)
}

func TestWatchdogLeavesAnIdleDependencyAlone(t *testing.T) {
	f := &fakeDependency{release: make(chan struct{})}
	f.mode.Store(1)
	_, b := newTestWatchdog(t, f)
	time.Sleep(300 * time.Millisecond) // six bounds, no call waiting
	if b.Open() {
		t.Fatal("an unanswered probe opened the breaker with no call waiting")
	}
	close(f.release)
}

func TestWatchdogOpensAtOnceOnARefusal(t *testing.T) {
	f := &fakeDependency{release: make(chan struct{})}
	f.mode.Store(2)
	_, b := newTestWatchdog(t, f)
	waitUntil(t, "the breaker to open", b.Open)
	f.mode.Store(0)
	waitUntil(t, "the breaker to close", func() bool { return !b.Open() })
}

// A call that failed while the dependency answered others meanwhile is slow
// company, not a dead dependency: it does not count. Failures with no
// answer in between still open the breaker.
func TestBreakerCountsOnlyFailuresWithoutProgress(t *testing.T) {
	b := NewBreaker(BreakerOptions{Failures: 3})
	ctx := context.Background()
	timeout := errors.New("i/o timeout")
	start := time.Now() // three calls go out together
	time.Sleep(time.Millisecond)
	b.RecordSince(ctx, nil, time.Now()) // another call is answered while they wait
	for range 3 {
		b.RecordSince(ctx, timeout, start) // and then they time out
	}
	if b.Open() {
		t.Fatal("timeouts while other calls were answered opened the breaker")
	}
	for range 3 {
		b.RecordSince(ctx, timeout, time.Now())
	}
	if !b.Open() {
		t.Fatal("three failures with no answer in between left the breaker closed")
	}
}

// The calls waiting when the watchdog trips end then, as if their deadline
// had come (the clients and the app read DeadlineExceeded as "did not
// answer"), not at their own deadlines; a call bound while the breaker is
// open ends at once; after the breaker closes, a new call lives again.
func TestWatchdogEndsTheCallsInFlightAtTheTrip(t *testing.T) {
	f := &fakeDependency{release: make(chan struct{})}
	w, b := newTestWatchdog(t, f)
	waitUntil(t, "a first answer", func() bool { last, _ := w.RoundTrips(); return last > 0 })
	parent, cancel := context.WithTimeout(context.Background(), time.Minute) // a request's deadline
	defer cancel()
	call, release := w.Bind(parent)
	defer release()
	f.mode.Store(1)
	w.Begin()
	select {
	case <-call.Done():
		if !b.Open() {
			t.Fatal("the call ended before the breaker opened")
		}
		if call.Err() != context.DeadlineExceeded {
			t.Fatalf("the call ended with %v, want context.DeadlineExceeded", call.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the call in flight still waits 10 s later (breaker open: %v)", b.Open())
	}
	if parent.Err() != nil {
		t.Fatal("the trip ended the request's own context, not only the call's")
	}
	late, releaseLate := w.Bind(parent)
	defer releaseLate()
	if late.Err() != context.DeadlineExceeded {
		t.Fatalf("a call bound while the breaker is open: %v, want it ended at once", late.Err())
	}
	w.End(false)
	f.mode.Store(0)
	close(f.release)
	waitUntil(t, "the breaker to close", func() bool { return !b.Open() })
	next, releaseNext := w.Bind(parent)
	defer releaseNext()
	if next.Err() != nil {
		t.Fatalf("a call bound after the breaker closed: %v", next.Err())
	}
}

// A bound call ends with its own context (the request's deadline, the
// client gone), and a released one is no longer ended by a later trip.
func TestBreakerBindFollowsTheCallersContext(t *testing.T) {
	b := NewBreaker(BreakerOptions{})
	parent, cancel := context.WithCancel(context.Background())
	call, release := b.Bind(parent)
	defer release()
	cancel()
	select {
	case <-call.Done():
		if call.Err() != context.Canceled {
			t.Fatalf("ended with %v, want context.Canceled", call.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the caller's cancel did not end the bound call")
	}
	kept, releaseKept := b.Bind(context.Background())
	releaseKept()
	b.Trip(errors.New("hung"))
	time.Sleep(10 * time.Millisecond)
	if kept.Err() != nil {
		t.Fatalf("a released call was ended by the trip: %v", kept.Err())
	}
	probe, releaseProbe := b.Bind(context.WithValue(context.Background(), probeKey{}, true))
	defer releaseProbe()
	if probe.Err() != nil {
		t.Fatal("the probe's call was bound to the open breaker")
	}
}
