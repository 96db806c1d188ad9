package models

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisSessionStore keeps scs sessions in Redis (stage 2): an in-memory store
// every app instance can share, with expiry done by Redis itself.
// It implements scs.Store and scs.CtxStore.
type RedisSessionStore struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewRedisSessionStore returns a store on rdb with keys "session:<token>".
func NewRedisSessionStore(rdb redis.UniversalClient) *RedisSessionStore {
	return &RedisSessionStore{rdb: rdb, prefix: "session:"}
}

// FindCtx returns the data of a session that has not expired.
func (s *RedisSessionStore) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	b, err := s.rdb.Get(ctx, s.prefix+token).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("models: find session: %w", err)
	}
	return b, true, nil
}

// CommitCtx stores a session until its expiry.
func (s *RedisSessionStore) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	ttl := time.Until(expiry)
	if ttl <= 0 {
		return s.DeleteCtx(ctx, token)
	}
	if err := s.rdb.Set(ctx, s.prefix+token, b, ttl).Err(); err != nil {
		return fmt.Errorf("models: commit session: %w", err)
	}
	return nil
}

// DeleteCtx removes a session.
func (s *RedisSessionStore) DeleteCtx(ctx context.Context, token string) error {
	if err := s.rdb.Del(ctx, s.prefix+token).Err(); err != nil {
		return fmt.Errorf("models: delete session: %w", err)
	}
	return nil
}

// Find implements scs.Store.
func (s *RedisSessionStore) Find(token string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), token)
}

// Commit implements scs.Store.
func (s *RedisSessionStore) Commit(token string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), token, b, expiry)
}

// Delete implements scs.Store.
func (s *RedisSessionStore) Delete(token string) error {
	return s.DeleteCtx(context.Background(), token)
}
