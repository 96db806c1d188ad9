package guard

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A command whose caller had already given up (its request's deadline passed
// while it waited on the database) says nothing about Redis: such commands
// must not open the breaker, or a healthy Redis fails every session page of
// a loaded server. Commands that Redis itself fails still open it.
func TestBreakerIgnoresCallersThatGaveUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: every dial is refused
	opt := &redis.Options{Addr: addr}
	FailFast(opt)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	b := NewRedisBreaker(nil, nil)
	rdb.AddHook(RedisHook(b))

	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	for range 10 {
		if err := rdb.Get(expired, "k").Err(); err == nil {
			t.Fatal("a command with an expired context succeeded")
		}
	}
	if b.Open() {
		t.Fatal("the breaker opened on commands whose callers had given up")
	}
	for range DefaultFailures {
		rdb.Get(context.Background(), "k")
	}
	if !b.Open() {
		t.Fatal("the breaker did not open on refused connections")
	}
}
