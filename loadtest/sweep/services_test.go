package sweep

import (
	"context"
	"os/exec"
	"testing"

	"github.com/redis/go-redis/v9"
)

// --redis-server: a private redis-server that the sweep empties before each run.
func TestPrivateRedisIsEmptiedAndStopped(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	ctx := context.Background()
	url, flush, stop, err := privateRedis(ctx)
	if err != nil {
		t.Fatal(err)
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.Set(ctx, "cache:home", "old run", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("after flush: %d keys (%v)", n, err)
	}
	stop()
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("the private redis-server still answers after stop")
	}
}
