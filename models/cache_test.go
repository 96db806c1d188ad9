package models_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"flickrkillr/models"
	"flickrkillr/models/redissessions"
)

// Stage 3: the cached gallery must answer like the PostgreSQL one.
func init() {
	galleryImpls["CachedGallery"] = func(t *testing.T, db *gorm.DB) models.Gallery {
		rdb := redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
		t.Cleanup(func() { rdb.Close() })
		return models.NewCachedGallery(models.NewPhotoStore(db, models.Sequential{}), models.NewCache(rdb, time.Minute, 1<<20, nil))
	}
}

// Stage 5: a miss stored beside the request hands its value back before
// Redis has stored it, keeps it in the process (no second computation), and
// still reaches Redis.
func TestCacheStoreBeside(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	returned := make(chan struct{})
	setAfterReturn := make(chan bool, 1)
	rdb.AddHook(holdSet{returned, setAfterReturn})
	c := models.NewCache(rdb, time.Minute, 1<<20, nil)
	c.StoreBeside()
	loads := 0
	load := func(context.Context) ([]byte, bool, error) { loads++; return []byte("value"), true, nil }
	for range 2 {
		v, err := c.Load(context.Background(), "k", []string{models.DepHome}, load)
		if err != nil || string(v) != "value" {
			t.Fatalf("Load = %q, %v", v, err)
		}
	}
	close(returned)
	if loads != 1 {
		t.Fatalf("the value was computed %d times, want once", loads)
	}
	if !<-setAfterReturn {
		t.Fatal("Load waited for Redis to store the value")
	}
	var valueKey string
	for _, k := range mr.Keys() {
		if strings.HasPrefix(k, "c:") {
			valueKey = k
		}
	}
	if got, _ := mr.Get(valueKey); got != "value" {
		t.Fatalf("Redis has %q, want the value", got)
	}
}

// holdSet holds a SET until the test says Load has returned (at most 5 s: a
// bound, so that a Load that waits for its SET fails the test, not hangs),
// and reports whether it had.
type holdSet struct {
	returned       chan struct{}
	setAfterReturn chan bool
}

func (holdSet) DialHook(next redis.DialHook) redis.DialHook { return next }
func (holdSet) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h holdSet) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "set" || !strings.HasPrefix(fmt.Sprint(cmd.Args()[1]), "c:") {
			return next(ctx, cmd) // not a value's SET (the epoch's SET NX, say)
		}
		after := true
		select {
		case <-h.returned:
		case <-time.After(5 * time.Second):
			after = false
		}
		err := next(ctx, cmd)
		h.setAfterReturn <- after
		return err
	}
}

// A cache Redis that restarts empty (it keeps nothing on disk) starts every
// generation at 0 again: the near cache must not then serve what it kept
// under the old "@0" keys. The epoch in every key makes them unreachable.
func TestCacheForgetsNothingStaleWhenRedisRestartsEmpty(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	c := models.NewCache(rdb, time.Minute, 1<<20, nil)
	version := 0
	load := func(context.Context) ([]byte, bool, error) {
		version++
		return []byte(fmt.Sprint("v", version)), true, nil
	}
	get := func() string {
		t.Helper()
		v, err := c.Load(context.Background(), "photo", []string{models.DepPhoto(1)}, load)
		if err != nil {
			t.Fatal(err)
		}
		return string(v)
	}
	if v := get(); v != "v1" {
		t.Fatalf("first read %q, want v1", v)
	}
	c.Bump(context.Background(), models.DepPhoto(1)) // a write: generation 1
	if v := get(); v != "v2" {
		t.Fatalf("after the write %q, want v2", v)
	}
	mr.FlushAll() // the cache Redis restarted empty: generation 0 again
	if v := get(); v != "v3" {
		t.Fatalf("after Redis restarted empty the cache answered %q (v1 is from before the write), want a fresh v3", v)
	}
	if v := get(); v != "v3" {
		t.Fatalf("the fresh value was not kept: %q", v)
	}
}

// Issue 36: a logged-in page's generations ride with the session's load
// (Expect) only when the sessions are in the cache's Redis. With the cache
// in a Redis of its own (stage 7's two roles), generations read beside the
// session would come from a Redis where no write bumps them: the page would
// keep its first copy after every write. Each round is a request: the
// session is loaded with the page's generations expected, then the page
// is read; a write between two rounds must show in the next one.
func TestCacheReadsGenerationsWhereTheyAreBumped(t *testing.T) {
	for _, apart := range []bool{false, true} {
		t.Run(fmt.Sprintf("cache Redis apart: %v", apart), func(t *testing.T) {
			cacheRdb := redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
			t.Cleanup(func() { cacheRdb.Close() })
			sessionRdb := cacheRdb
			if apart {
				sessionRdb = redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
				t.Cleanup(func() { sessionRdb.Close() })
			}
			sessions := redissessions.New(sessionRdb)
			c := models.NewCache(cacheRdb, time.Minute, 1<<20, nil)
			c.RideWithSessions(sessionRdb)
			deps := []string{models.DepPhoto(1)}
			version := 0
			load := func(context.Context) ([]byte, bool, error) {
				return []byte(fmt.Sprint("v", version)), true, nil
			}
			for round := range 5 {
				ctx := c.Expect(context.Background(), deps)
				if _, _, err := sessions.FindCtx(ctx, "token"); err != nil {
					t.Fatal(err)
				}
				ctx = c.Prefetch(ctx, deps)
				v, err := c.Load(ctx, "photo", deps, load)
				if err != nil {
					t.Fatal(err)
				}
				if want := fmt.Sprint("v", version); string(v) != want {
					t.Fatalf("round %d: read %q after the write, want %q", round, v, want)
				}
				version++
				c.Bump(context.Background(), deps...) // a write, committed
			}
		})
	}
}
