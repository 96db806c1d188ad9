package replicas

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sticky keeps, per user, the primary's WAL position after their last
// write, for a while (GitLab keeps it 30 s): their reads until then need a
// replica past it (WithMinLSN). It lives in the shared Redis so every app
// process of a scaled-out stage sees it.
type Sticky interface {
	// Get is the user's kept position, 0 when none (or expired).
	Get(ctx context.Context, user string) (LSN, error)
	// Set keeps lsn for ttl, unless a later position is already kept (two
	// requests of one user finishing out of order must not lower it).
	Set(ctx context.Context, user string, lsn LSN, ttl time.Duration) error
}

// RedisSticky is Sticky in Redis: one key per user.
type RedisSticky struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewRedisSticky keeps the positions under prefix+user.
func NewRedisSticky(rdb redis.UniversalClient, prefix string) *RedisSticky {
	return &RedisSticky{rdb: rdb, prefix: prefix}
}

// raise sets the key when it is missing or lower, and renews its expiry
// either way: one round trip, atomic. LSNs are byte counts below 2^53 for
// any WAL this app writes, so Lua's numbers compare them exactly.
var raise = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1`)

// Get implements Sticky.
func (s *RedisSticky) Get(ctx context.Context, user string) (LSN, error) {
	v, err := s.rdb.Get(ctx, s.prefix+user).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("replicas: read the kept position: %w", err)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("replicas: kept position %q: %w", v, err)
	}
	return LSN(n), nil
}

// Set implements Sticky.
func (s *RedisSticky) Set(ctx context.Context, user string, lsn LSN, ttl time.Duration) error {
	err := raise.Run(ctx, s.rdb, []string{s.prefix + user}, strconv.FormatUint(uint64(lsn), 10), ttl.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("replicas: keep the position: %w", err)
	}
	return nil
}

// ForUser is the context for one request of user (empty: anonymous): it
// is tracked (Track), and carries the position kept for the user after
// their last write (WithMinLSN). When the kept position cannot be read,
// the request reads from the primary (OnPrimary) rather than risk a stale
// page, and the error says so for the log.
func ForUser(ctx context.Context, s Sticky, user string) (context.Context, error) {
	ctx = Track(ctx)
	if user == "" {
		return ctx, nil
	}
	lsn, err := s.Get(ctx, user)
	if err != nil {
		return OnPrimary(ctx), err
	}
	return WithMinLSN(ctx, lsn), nil
}

// Keep stores, after the request of ctx (ForUser), the primary's WAL
// position for user when the request wrote, for ttl.
func (r *Router) Keep(ctx context.Context, s Sticky, user string, ttl time.Duration) error {
	if user == "" {
		return nil
	}
	lsn, ok, err := r.WriteLSN(ctx)
	if err != nil || !ok {
		return err
	}
	return s.Set(ctx, user, lsn, ttl)
}

// Marks are positions kept by name rather than by user (RedisSticky under
// another prefix): a write's invalidation keeps the primary's position for
// each thing it invalidated, and a fill needs the highest of them.
type Marks struct{ *RedisSticky }

// SetAll keeps lsn under every name for ttl, in one round trip (unless a
// later position is kept there already). EVAL, not EVALSHA: a pipeline
// cannot fall back when the script is not loaded yet.
func (m Marks) SetAll(ctx context.Context, names []string, lsn LSN, ttl time.Duration) error {
	_, err := m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, n := range names {
			raise.Eval(ctx, p, []string{m.prefix + n}, strconv.FormatUint(uint64(lsn), 10), ttl.Milliseconds())
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("replicas: keep the positions: %w", err)
	}
	return nil
}

// Max is the highest position kept under names (0: none), in one MGET.
func (m Marks) Max(ctx context.Context, names []string) (LSN, error) {
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = m.prefix + n
	}
	vals, err := m.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return 0, fmt.Errorf("replicas: read the kept positions: %w", err)
	}
	var highest LSN
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("replicas: kept position %q: %w", s, err)
		}
		highest = max(highest, LSN(n))
	}
	return highest, nil
}
