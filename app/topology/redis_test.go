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
	url, err := top.startRedis(ctx)
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
