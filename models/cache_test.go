package models_test

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"flickrkillr/models"
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
	if got, _ := mr.Get(mr.Keys()[0]); got != "value" {
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
		if cmd.Name() != "set" {
			return next(ctx, cmd)
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
