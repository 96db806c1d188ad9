package topology

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The topology's redis-server keeps what it acknowledged across a restart:
// killed (SIGKILL) with jobs in a list, as stage 6's queue keeps them, it is
// started again by its supervisor with every job still there.
func TestTopologyRedisKeepsQueuedJobsAcrossARestart(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	top := &topology{dir: t.TempDir(), log: slog.New(slog.NewTextHandler(io.Discard, nil)), ports: newPorts()}
	ctx, cancel := context.WithCancel(context.Background())
	var url string
	var err error
	top.redis, url, err = top.startRedis(ctx, durableRedis)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-top.redis.done })
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	const jobs = 1000
	for i := range jobs {
		if err := rdb.RPush(ctx, "test:jobs", fmt.Sprintf(`{"id":%d}`, i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	old := top.redis.status().PID
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil { // at once: nothing waits for an fsync
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := rdb.LLen(ctx, "test:jobs").Result()
		if st := top.redis.status(); err == nil && st.Up && st.PID != old {
			if n != jobs {
				t.Fatalf("after the restart the list holds %d jobs, want %d", n, jobs)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server was not back within 30 s (status %+v, last error %v)", top.redis.status(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The cache Redis forgets on purpose: past its maxmemory it evicts cached
// values (keys with an expiry) and never the keys without one (the cache's
// generations and epoch), it never refuses a write, and a restart starts it
// empty. The durable one beside it keeps its keys through the same restart.
func TestTopologyCacheRedisEvictsValuesKeepsGenerationsAndRestartsEmpty(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	top := &topology{dir: t.TempDir(), log: slog.New(slog.NewTextHandler(io.Discard, nil)), ports: newPorts(),
		o: Options{CacheMaxMemory: "4mb"}}
	ctx, cancel := context.WithCancel(context.Background())
	var cacheURL string
	var err error
	top.cacheRedis, cacheURL, err = top.startRedis(ctx, cacheRedis)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	top.cacheRedisURL = cacheURL
	t.Cleanup(func() { cancel(); <-top.cacheRedis.done })
	opt, _ := redis.ParseURL(cacheURL)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	for i := range 100 {
		if err := rdb.Set(ctx, fmt.Sprintf("gen:photo:%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	value := make([]byte, 10<<10)
	for i := range 2000 { // 20 MB of values into 4 MB
		if err := rdb.Set(ctx, fmt.Sprintf("c:value:%d", i), value, time.Hour).Err(); err != nil {
			t.Fatalf("write %d refused: %v (a cache must evict, not refuse)", i, err)
		}
	}
	roles := top.redisRoles()
	if len(roles) != 1 || roles[0].Evicted == 0 || roles[0].MaxMemory != 4<<20 {
		t.Fatalf("/topology.json's cache Redis: %+v, want evictions counted under a 4 MB maxmemory", roles)
	}
	for i := range 100 {
		if err := rdb.Get(ctx, fmt.Sprintf("gen:photo:%d", i)).Err(); err != nil {
			t.Fatalf("generation %d was evicted: %v", i, err)
		}
	}
	old := top.cacheRedis.status().PID
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := rdb.DBSize(ctx).Result()
		if st := top.cacheRedis.status(); err == nil && st.Up && st.PID != old {
			if n != 0 {
				t.Fatalf("the cache Redis came back with %d keys, want none", n)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache Redis was not back within 30 s (last error %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
