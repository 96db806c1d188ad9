// Package redissessions is the scs session store on Redis (stage 2): an
// in-memory store every app instance can share, with expiry done by Redis
// itself. Stage 3's cache rides its lookups on the session's round trip
// (WithPiggyback).
package redissessions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store keeps scs sessions in Redis under "session:<token>" (the prefix by
// which models' Redis hook counts session time). It implements scs.Store
// and scs.CtxStore.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
}

// New returns a store on rdb with keys "session:<token>".
func New(rdb redis.UniversalClient) *Store {
	return &Store{rdb: rdb, prefix: "session:"}
}

// FindCtx returns the data of a session that has not expired. What the
// context asks to piggyback (WithPiggyback) rides in the same round trip.
func (s *Store) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	var b []byte
	var err error
	if add, ok := ctx.Value(piggybackKey{}).(func(redis.Pipeliner) func()); ok {
		var get *redis.StringCmd
		var done func()
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			get = p.Get(ctx, s.prefix+token)
			done = add(p)
			return nil
		})
		if done != nil {
			done()
		}
		b, err = get.Bytes() // the session's own answer, whatever the others'
	} else {
		b, err = s.rdb.Get(ctx, s.prefix+token).Bytes()
	}
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("models: find session: %w", err)
	}
	return b, true, nil
}

type piggybackKey struct{}

// WithPiggyback returns a context in which loading the session (FindCtx)
// also sends the commands add puts in its pipeline, in the same round trip;
// add returns what to do with their answers (nil: it added none). Stage 3:
// a logged-in page's cache generations ride with its session
// (Cache.Expect), so that the two cost one round trip.
func WithPiggyback(ctx context.Context, add func(redis.Pipeliner) func()) context.Context {
	return context.WithValue(ctx, piggybackKey{}, add)
}

// CommitCtx stores a session until its expiry.
func (s *Store) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
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
func (s *Store) DeleteCtx(ctx context.Context, token string) error {
	if err := s.rdb.Del(ctx, s.prefix+token).Err(); err != nil {
		return fmt.Errorf("models: delete session: %w", err)
	}
	return nil
}

// Find implements scs.Store.
func (s *Store) Find(token string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), token)
}

// Commit implements scs.Store.
func (s *Store) Commit(token string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), token, b, expiry)
}

// Delete implements scs.Store.
func (s *Store) Delete(token string) error {
	return s.DeleteCtx(context.Background(), token)
}
