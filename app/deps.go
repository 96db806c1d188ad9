package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"flickrkillr/app/guard"
	"flickrkillr/models"
)

// Deps are what the app is built from: opened by the caller (Bootstrap, a
// test), owned by it, plus resources a stage starts on first use (the Redis
// client, stage 3's cache), each made once and closed by Close.
type Deps struct {
	Config Config
	DB     *gorm.DB
	Log    *slog.Logger

	redis      lazy[redisConn]
	cacheRedis lazy[redisConn] // REDIS_CACHE_URL's, when set
	pg         *postgresWatch  // PostgreSQL's breaker (bootWatched); nil: none

	extrasMu sync.Mutex
	extras   map[any]any // resource → *lazy[T]

	mu      sync.Mutex
	closers []func() error
}

// lazy is a value made once, on first use, under its own lock: a make that
// needs another lazy value (the cache needs the Redis client) nests safely.
type lazy[T any] struct {
	mu   sync.Mutex
	done bool
	v    T
}

func (l *lazy[T]) get(make func() (T, error)) (T, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		v, err := make()
		if err != nil {
			return v, err
		}
		l.v, l.done = v, true
	}
	return l.v, nil
}

// resource is a typed handle on a value a stage makes once per Deps (stage
// 3's Cache). The stage declares it in its own file, so that a build without
// that stage (an early workshop tag) has neither the handle nor its type.
type resource[T any] struct{ name string }

// get returns r's value in d, making it with make on first use.
func (r *resource[T]) get(d *Deps, make func() (T, error)) (T, error) {
	d.extrasMu.Lock()
	l, ok := d.extras[r]
	if !ok {
		if d.extras == nil {
			d.extras = map[any]any{}
		}
		l = &lazy[T]{}
		d.extras[r] = l
	}
	d.extrasMu.Unlock()
	return l.(*lazy[T]).get(make)
}

// redisConn is the shared Redis client and the circuit breaker in front of it.
type redisConn struct {
	client  *redis.Client
	breaker *guard.Breaker
}

// Redis is the Redis connection shared by the session store (stage 2), the
// cache (stage 3) and the queue (stage 6). With no REDIS_URL it starts an
// embedded miniredis on loopback.
func (d *Deps) Redis() (*redis.Client, error) {
	c, err := d.redis.get(d.connectRedis)
	return c.client, err
}

// RedisBreaker is the circuit breaker of the Redis client (made with it).
func (d *Deps) RedisBreaker() (*guard.Breaker, error) {
	c, err := d.redis.get(d.connectRedis)
	return c.breaker, err
}

// CacheRedis is the Redis of stage 3's cache: REDIS_CACHE_URL's, with a
// breaker of its own, or, without it, the one Redis.
func (d *Deps) CacheRedis() (*redis.Client, error) {
	if d.Config.RedisCacheURL == "" {
		return d.Redis()
	}
	c, err := d.cacheRedis.get(func() (redisConn, error) { return d.dialRedis("REDIS_CACHE_URL", d.Config.RedisCacheURL) })
	return c.client, err
}

func (d *Deps) connectRedis() (redisConn, error) {
	url := d.Config.RedisURL
	if url == "" {
		mr, err := startMiniredis(d)
		if err != nil {
			return redisConn{}, err
		}
		url = "redis://" + mr.Addr()
	}
	return d.dialRedis("REDIS_URL", url)
}

// dialRedis connects to the Redis at url (named by the variable name) with
// the fail-fast options and a breaker.
func (d *Deps) dialRedis(name, url string) (redisConn, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return redisConn{}, &ConfigError{name, "is not a valid redis:// URL"}
	}
	if opt.Addr, err = d.overNetwork(opt.Addr); err != nil { // --db-latency
		return redisConn{}, err
	}
	// Short timeouts, no retries and a circuit breaker (package guard): the
	// cache fails open to the database and session pages answer 503 rather
	// than holding a request while Redis is slow or gone.
	guard.FailFast(opt)
	opt.PoolSize = 64
	rdb := redis.NewClient(opt)
	rdb.AddHook(models.RedisTimingHook{}) // Server-Timing's session and cache time
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return redisConn{}, fmt.Errorf("app: connect to Redis at %s: %w", opt.Addr, err)
	}
	closed := make(chan struct{})
	b := guard.NewRedisBreaker(func(ctx context.Context) error { return rdb.Ping(ctx).Err() }, closed)
	rdb.AddHook(guard.RedisHook(b))
	d.OnClose(func() error { close(closed); return rdb.Close() })
	return redisConn{client: rdb, breaker: b}, nil
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
	announceMiniredis(d.Config.DataDir, mr.Addr(), d)
	return mr, nil
}

// embeddedRedisFile, in DATA_DIR, holds the address of the embedded
// miniredis of the process that serves that folder, so that `flickrkillr
// queue` (stage 6) finds the queue of `make run` without a REDIS_URL.
const embeddedRedisFile = ".miniredis"

// announceMiniredis writes addr to DATA_DIR's embeddedRedisFile and removes
// it again on close if it still names addr. Failing to write it costs only
// the queue command's view, so it is logged, not fatal.
func announceMiniredis(dataDir, addr string, d *Deps) {
	if dataDir == "" {
		return
	}
	path := filepath.Join(dataDir, embeddedRedisFile)
	line := fmt.Sprintf("redis://%s/0 %d\n", addr, os.Getpid())
	err := os.MkdirAll(dataDir, 0o755)
	if err == nil {
		err = os.WriteFile(path, []byte(line), 0o644)
	}
	if err != nil {
		d.Log.Warn("cannot tell the queue command where the embedded Redis is", "file", path, "err", err)
		return
	}
	d.OnClose(func() error {
		if b, err := os.ReadFile(path); err == nil && string(b) == line {
			os.Remove(path)
		}
		return nil
	})
}

// embeddedRedisURL is the URL of the embedded miniredis of the process that
// serves dataDir, and that process's id, from embeddedRedisFile.
func embeddedRedisURL(dataDir string) (url string, pid int, err error) {
	b, err := os.ReadFile(filepath.Join(dataDir, embeddedRedisFile))
	if err != nil {
		return "", 0, err
	}
	if _, err := fmt.Sscanf(string(b), "%s %d", &url, &pid); err != nil {
		return "", 0, fmt.Errorf("app: %s: %w", embeddedRedisFile, err)
	}
	return url, pid, nil
}

// OnClose registers cleanup that Close runs in reverse order.
func (d *Deps) OnClose(fn func() error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closers = append(d.closers, fn)
}

// Close runs the registered cleanups (it does not close DB, which the caller owns).
func (d *Deps) Close() error {
	d.mu.Lock()
	closers := d.closers
	d.closers = nil
	d.mu.Unlock()
	var first error
	for i := len(closers) - 1; i >= 0; i-- {
		if err := closers[i](); err != nil && first == nil {
			first = err
		}
	}
	return first
}
