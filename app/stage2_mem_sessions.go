package app

import (
	"context"
	"fmt"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"flickrkillr/models"
)

// Stage 2: sessions move out of PostgreSQL into an in-memory store that all
// instances can share: the Redis protocol, an embedded miniredis by default,
// a real Redis with REDIS_URL. The sessions table is no longer touched.
func init() {
	register(Stage{
		Number:  2,
		Name:    "mem-sessions",
		Summary: "sessions in an in-memory store (Redis protocol), not in PostgreSQL",
		Sessions: func(d *Deps) (scs.Store, error) {
			rdb, err := redisClient(d)
			if err != nil {
				return nil, err
			}
			return models.NewRedisSessionStore(rdb), nil
		},
	})
}

// redisClient is the Redis connection shared by the session store and (stage
// 3) the cache. With no REDIS_URL it starts an embedded miniredis on loopback.
func redisClient(d *Deps) (*redis.Client, error) {
	br, _ := d.Shared("redis-breaker", func() (any, error) { return newBreaker(nil, nil), nil })
	v, err := d.Shared("redis", func() (any, error) {
		url := d.Config.RedisURL
		if url == "" {
			mr, err := startMiniredis(d)
			if err != nil {
				return nil, err
			}
			url = "redis://" + mr.Addr()
		}
		opt, err := redis.ParseURL(url)
		if err != nil {
			return nil, &ConfigError{"REDIS_URL", "is not a valid redis:// URL"}
		}
		if opt.Addr, err = d.overNetwork(opt.Addr); err != nil { // --db-latency
			return nil, err
		}
		// Short timeouts, no retries and a circuit breaker (limits_redis.go):
		// the cache fails open to the database and session pages answer 503
		// rather than holding a request while Redis is slow or gone.
		failFast(opt)
		opt.PoolSize = 64
		rdb := redis.NewClient(opt)
		rdb.AddHook(models.RedisTimingHook{}) // Server-Timing's session and cache time
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := rdb.Ping(ctx).Err(); err != nil {
			rdb.Close()
			return nil, fmt.Errorf("app: connect to Redis at %s: %w", opt.Addr, err)
		}
		closed := make(chan struct{})
		b := br.(*breaker)
		b.ping = func(ctx context.Context) error { return rdb.Ping(ctx).Err() }
		b.done = closed
		rdb.AddHook(b)
		d.OnClose(func() error { close(closed); return rdb.Close() })
		return rdb, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*redis.Client), nil
}

// startMiniredis runs the embedded Redis. miniredis does not expire keys on
// its own clock, so a ticker moves its clock forward as real time passes.
func startMiniredis(d *Deps) (*miniredis.Miniredis, error) {
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("app: start embedded miniredis: %w", err)
	}
	stop := make(chan struct{})
	go func() {
		const tick = time.Second
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				mr.FastForward(tick)
			}
		}
	}()
	d.OnClose(func() error { close(stop); mr.Close(); return nil })
	return mr, nil
}
