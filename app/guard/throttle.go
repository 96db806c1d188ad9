// Package guard keeps a server standing when its clients or its
// dependencies misbehave: a throttle of failures per key (log-ins), a gate
// that bounds expensive work and its queue (bcrypt, and the requests in
// flight), a circuit breaker that fails at once while a dependency is down,
// with a go-redis hook as its Redis adapter, and a watchdog that opens a
// breaker when a dependency makes no progress (PostgreSQL). Nothing here
// knows the app; it takes plain options.
package guard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"
)

// Throttle counts failures per key (an account name, a client address) in a
// fixed window: after max failures the key is refused until its window
// ends. One process's memory holds the counts; with several instances
// (stage 7) each counts on its own, so the effective limit is N times max.
type Throttle struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]*throttleEntry
	swept   time.Time
}

type throttleEntry struct {
	failures int
	until    time.Time // the end of the window the failures count in
}

// maxThrottleKeys bounds the map: a flood of distinct keys (random user
// names) would otherwise grow it until the next sweep. With keys of at most
// maxKeyBytes (throttleKey) that is at most about 20 MB.
const maxThrottleKeys = 100_000

// maxKeyBytes is the longest key kept as it is; a longer one (a "user
// name" of 60 KB in a log-in form) is kept as its SHA-256, so that the
// bytes a client can make the throttle hold are bounded, not only its keys.
const maxKeyBytes = 80

// throttleKey is key, or its hash when it is longer than maxKeyBytes: one
// long key still counts as itself.
func throttleKey(key string) string {
	if len(key) <= maxKeyBytes {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// NewThrottle refuses a key after max failures until its window ends.
func NewThrottle(max int, window time.Duration) *Throttle {
	return &Throttle{max: max, window: window, now: time.Now, entries: map[string]*throttleEntry{}}
}

// Blocked reports whether key has used up its failures, and for how long
// it stays refused.
func (t *Throttle) Blocked(key string) (time.Duration, bool) {
	key = throttleKey(key)
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries[key]
	now := t.now()
	if !ok || !now.Before(e.until) || e.failures < t.max {
		return 0, false
	}
	return e.until.Sub(now), true
}

// Fail counts one failure for key.
func (t *Throttle) Fail(key string) {
	key = throttleKey(key)
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.sweep(now)
	e, ok := t.entries[key]
	if !ok || !now.Before(e.until) {
		if !ok && len(t.entries) >= maxThrottleKeys {
			return // full of live entries: count nothing new rather than grow
		}
		e = &throttleEntry{until: now.Add(t.window)}
		t.entries[key] = e
	}
	e.failures++
}

// Reset forgets key's failures (a successful log-in).
func (t *Throttle) Reset(key string) {
	key = throttleKey(key)
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.entries, key)
}

// sweep drops expired entries, at most once a window.
func (t *Throttle) sweep(now time.Time) {
	if now.Sub(t.swept) < t.window && len(t.entries) < maxThrottleKeys {
		return
	}
	t.swept = now
	for k, e := range t.entries {
		if !now.Before(e.until) {
			delete(t.entries, k)
		}
	}
}

// Gate bounds how many expensive computations (bcrypt) run at once, and
// how many may queue for them. A caller beyond the queue is refused at once,
// and a queued one waits at most maxWait: under a flood of log-ins the CPU
// does a bounded amount of hashing and the rest get a quick 503, instead of
// every request (and the session writes behind them) slowing down until
// they time out.
type Gate struct {
	slots   chan struct{}
	queue   int64 // callers allowed to wait for a slot
	maxWait time.Duration
	inside  atomic.Int64 // running + waiting
}

// NewGate runs n at once, lets queue more wait up to maxWait, refuses the rest.
func NewGate(n, queue int, maxWait time.Duration) *Gate {
	return &Gate{slots: make(chan struct{}, n), queue: int64(queue), maxWait: maxWait}
}

// Enter takes a slot, or reports false when the queue is full, maxWait has
// passed or ctx has ended; after true the caller must call release.
func (g *Gate) Enter(ctx context.Context) (release func(), ok bool) {
	if g.inside.Add(1) > int64(cap(g.slots))+g.queue {
		g.inside.Add(-1)
		return nil, false
	}
	select {
	case g.slots <- struct{}{}:
		return g.leave, true
	default:
	}
	t := time.NewTimer(g.maxWait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return g.leave, true
	case <-t.C:
	case <-ctx.Done():
	}
	g.inside.Add(-1)
	return nil, false
}

func (g *Gate) leave() {
	<-g.slots
	g.inside.Add(-1)
}
