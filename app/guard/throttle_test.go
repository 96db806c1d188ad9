package guard

import (
	"context"
	"fmt"
	"runtime"
	"strings"
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

// The throttle's memory is bounded in bytes, not only in keys: 2,000 failed
// log-ins with distinct 32 KB "user names" (64 MB of them) leave it holding
// well under a megabyte, and one long name still counts as itself.
func TestThrottleHoldsBoundedBytesWhateverTheKeys(t *testing.T) {
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	th := NewThrottle(3, time.Minute)
	pad := strings.Repeat("x", 32<<10)
	before := heap()
	for i := range 2000 {
		th.Fail(fmt.Sprintf("login:%d%s", i, pad))
	}
	grown := heap() - before
	runtime.KeepAlive(th)
	if grown > 1<<20 {
		t.Errorf("2,000 failures with 32 KB keys left the throttle holding %d KB", grown>>10)
	}
	long := "login:" + pad
	for range 3 {
		th.Fail(long)
	}
	if _, blocked := th.Blocked(long); !blocked {
		t.Error("a long key is not blocked after its failures")
	}
	if _, blocked := th.Blocked(long + "y"); blocked {
		t.Error("another long key is blocked by the first one's failures")
	}
}
