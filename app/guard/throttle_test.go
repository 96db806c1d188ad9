package guard

import (
	"context"
	"testing"
	"time"
)

func TestThrottleWindow(t *testing.T) {
	now := time.Unix(1000, 0)
	th := NewThrottle(3, time.Minute)
	th.now = func() time.Time { return now }
	for range 3 {
		if _, blocked := th.Blocked("k"); blocked {
			t.Fatal("blocked before the limit")
		}
		th.Fail("k")
	}
	wait, blocked := th.Blocked("k")
	if !blocked || wait != time.Minute {
		t.Fatalf("blocked=%v wait=%v, want true and the whole window", blocked, wait)
	}
	if _, blocked := th.Blocked("other"); blocked {
		t.Fatal("another key is blocked")
	}
	now = now.Add(time.Minute)
	if _, blocked := th.Blocked("k"); blocked {
		t.Fatal("still blocked after the window")
	}
	th.Fail("k")
	if _, blocked := th.Blocked("k"); blocked {
		t.Fatal("one failure in a new window blocks")
	}
}

// The gate runs n at once, queues q, and refuses the rest at once.
func TestGateBoundsRunningAndWaiting(t *testing.T) {
	g := NewGate(2, 1, time.Hour)
	ctx := context.Background()
	var releases []func()
	for i := range 2 {
		release, ok := g.Enter(ctx)
		if !ok {
			t.Fatalf("slot %d refused", i)
		}
		releases = append(releases, release)
	}
	queued := make(chan bool)
	go func() {
		release, ok := g.Enter(ctx)
		if ok {
			release()
		}
		queued <- ok
	}()
	for g.inside.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	if _, ok := g.Enter(ctx); ok {
		t.Fatal("entered with the slots and the queue full")
	}
	releases[0]()
	if !<-queued {
		t.Fatal("the queued caller was refused after a slot freed")
	}
	releases[1]()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	g2 := NewGate(1, 5, time.Hour)
	r, _ := g2.Enter(ctx)
	if _, ok := g2.Enter(cctx); ok {
		t.Fatal("entered a full gate with a cancelled context")
	}
	r()
}
