package guard

import (
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Two processes' SharedThrottles on one Redis (here miniredis, which runs
// redis_rate's Lua script: TIME and replicate_commands included) refuse a
// key after max failures counted together, as one Throttle would; another
// key is unaffected, and Reset clears it for both.
func TestSharedThrottleCountsAcrossInstances(t *testing.T) {
	mr := miniredis.RunT(t)
	client := func() *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { c.Close() })
		return c
	}
	const max = 10
	a := NewSharedThrottle(client(), "throttle:", max, 15*time.Minute)
	b := NewSharedThrottle(client(), "throttle:", max, 15*time.Minute)
	one := NewThrottle(max, 15*time.Minute)
	firstRefusal := func(blocked func() bool, fail func(i int)) int {
		for i := 1; i <= 3*max; i++ {
			if blocked() {
				return i
			}
			fail(i)
		}
		return 0
	}
	alone := firstRefusal(func() bool { _, b := one.Blocked("k"); return b }, func(int) { one.Fail("k") })
	shared := firstRefusal(func() bool {
		_, x := a.Blocked("login:victim")
		_, y := b.Blocked("login:victim")
		return x || y
	}, func(i int) {
		if i%2 == 0 { // alternate, as nginx's least_conn would
			a.Fail("login:victim")
		} else {
			b.Fail("login:victim")
		}
	})
	if alone != max+1 || shared != alone {
		t.Fatalf("first refusal: attempt %d across two instances, %d on one; want both %d", shared, alone, max+1)
	}
	if wait, blocked := b.Blocked("login:victim"); !blocked || wait < time.Second || wait > 15*time.Minute/max+time.Second {
		t.Errorf("blocked %t for %s, want about %s (one failure earned back)", blocked, wait, 15*time.Minute/max)
	}
	if _, blocked := a.Blocked("login:bystander"); blocked {
		t.Error("another key is blocked")
	}
	a.Reset("login:victim")
	if _, blocked := b.Blocked("login:victim"); blocked {
		t.Error("after a Reset on one instance the other still blocks the key")
	}
}

// Without Redis the failures are counted in the process (per instance
// again), not lost and not refusing everyone.
func TestSharedThrottleFallsBackToMemory(t *testing.T) {
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	defer c.Close()
	s := NewSharedThrottle(c, "throttle:", 3, time.Minute)
	s.timeout = 200 * time.Millisecond
	mr.Close()
	if _, blocked := s.Blocked("k"); blocked {
		t.Fatal("blocked before any failure")
	}
	for range 3 {
		s.Fail("k")
	}
	if _, blocked := s.Blocked("k"); !blocked {
		t.Fatal("three failures with Redis down did not block the key in memory")
	}
	if _, blocked := s.Blocked("other"); blocked {
		t.Fatal("with Redis down another key is blocked")
	}
}
