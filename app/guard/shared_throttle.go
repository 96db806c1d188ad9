package guard

import (
	"context"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// SharedThrottle is a Throttle whose counts live in Redis, so that the
// instances behind one nginx (stage 7) count a key's failures together:
// N instances allow what one allows, where N in-memory Throttles allowed N
// times as many. It is go-redis/redis_rate's GCRA (one Lua script per call,
// atomic in Redis, its clock Redis's TIME): a key has max failures to spend
// and earns one back every window/max. That is the same long-run rate as
// the in-memory fixed window (max per window); after the max-th failure
// the next attempt is allowed after window/max, not at the window's end.
//
// When Redis does not answer (within timeout, or its breaker is open) the
// key is counted in this process's memory instead (a Throttle of the same
// limits): the limit is per instance again until Redis is back, never none
// and never every client refused.
type SharedThrottle struct {
	lim     *redis_rate.Limiter
	limit   redis_rate.Limit
	prefix  string
	timeout time.Duration
	local   *Throttle
}

// NewSharedThrottle counts up to max failures per key in window in rdb,
// under keys prefix+key (a long key hashed: throttleKey).
func NewSharedThrottle(rdb *redis.Client, prefix string, max int, window time.Duration) *SharedThrottle {
	return &SharedThrottle{
		lim:     redis_rate.NewLimiter(rdb),
		limit:   redis_rate.Limit{Rate: max, Burst: max, Period: window},
		prefix:  prefix,
		timeout: time.Second,
		local:   NewThrottle(max, window),
	}
}

// Blocked reports whether key has used up its failures, and how long until
// it may try again. A cost-0 call reads the key's state without spending.
func (s *SharedThrottle) Blocked(key string) (time.Duration, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	res, err := s.lim.AllowN(ctx, s.prefix+throttleKey(key), s.limit, 0)
	if err != nil {
		return s.local.Blocked(key)
	}
	if res.Remaining >= 1 {
		return 0, false
	}
	// ResetAfter is until all max are back; one is back that less (max-1) intervals.
	interval := s.limit.Period / time.Duration(s.limit.Rate)
	return max(res.ResetAfter-time.Duration(s.limit.Burst-1)*interval, time.Second), true
}

// Fail counts one failure for key.
func (s *SharedThrottle) Fail(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if _, err := s.lim.AllowN(ctx, s.prefix+throttleKey(key), s.limit, 1); err != nil {
		s.local.Fail(key)
	}
}

// Reset forgets key's failures (a successful log-in).
func (s *SharedThrottle) Reset(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	s.lim.Reset(ctx, s.prefix+throttleKey(key))
	s.local.Reset(key)
}
