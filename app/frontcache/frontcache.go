// Package frontcache keeps whole pages in memcached under the key nginx's
// memcached module looks up (stage 8): the app fills a page after rendering
// it for an anonymous visitor and deletes a page by URL when a write changes
// it. nginx does one `get` of one key per request, so the key is the URL and
// nothing else (no generation in it: deleting by URL is the only
// invalidation, and the TTL bounds what a delete cannot reach). It knows
// nothing of the app: package app says which pages and when.
package frontcache

import (
	"context"
	"errors"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"flickrkillr/app/guard"
)

// KeyPrefix starts every key; nginx's template sets
// $memcached_key "page:$uri$is_args$args" with the same prefix.
const KeyPrefix = "page:"

// maxKey is memcached's key limit (longer keys are refused by it and by the client).
const maxKey = 250

// MaxName is the longest path segment (bytes of the decoded path) of a page
// that is kept, and MaxCursor the longest ?before= (an int64's digits).
// nginx's template (app/topology/nginx.conf.tmpl) looks up no other page,
// so that no key it sends is over memcached's 250 bytes (each over-long
// key was an error in nginx's log per request): escaped, a byte takes at
// most 3, and the longest key is "page:/users/" + 3×70 + "?before=" + 19
// digits = 249 bytes.
const (
	MaxName   = 70
	MaxCursor = 19
)

// Key is the memcached key nginx looks up for the request path p (decoded,
// as Go's URL.Path and nginx's $uri are) and raw query q, and whether the
// page may be stored under it. nginx's $uri is decoded and normalized, so a
// path that is not already clean (".", "..", "//") would be looked up under
// another key: it is never stored. A decoded '?' in the path (%3F) would
// make the key ambiguous (/tags/x%3Fbefore=9 and /tags/x?before=9 are one
// key): nginx looks up no such path, and it is never stored. Only an empty
// query or before=<digits> reaches memcached (nginx's map), so only those
// are stored; nor a segment over MaxName or a cursor over MaxCursor. nginx
// escapes the key (NGX_ESCAPE_MEMCACHED): bytes up to 0x20 and '%' become
// %XX in uppercase hex, everything else is sent raw.
func Key(p, q string) (string, bool) {
	if p == "" || p[0] != '/' || path.Clean(p) != p && p != "/" || strings.IndexByte(p, '?') >= 0 {
		return "", false
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if len(seg) > MaxName {
			return "", false
		}
	}
	if q != "" {
		n, ok := strings.CutPrefix(q, "before=")
		if !ok || n == "" || len(n) > MaxCursor || strings.Trim(n, "0123456789") != "" {
			return "", false
		}
		q = "?" + q
	}
	k := KeyPrefix + escape(p) + q
	if len(k) > maxKey || strings.IndexByte(k, 0x7f) >= 0 { // 0x7f: sent raw by nginx, refused as a key by memcached's text protocol
		return "", false
	}
	return k, true
}

// escape is NGX_ESCAPE_MEMCACHED: bytes <= 0x20 and '%' as %XX (uppercase).
func escape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Options configure a Store; zero values take the defaults.
type Options struct {
	Addr string // memcached's host:port
	// TTL is how long a filled page lives: the bound on what a delete by
	// URL cannot reach (deeper pages, other photo pages' "more from", a
	// fill that raced a delete). Default 30 s.
	TTL time.Duration
	// Timeout is the client's socket timeout for one call (default 100 ms:
	// memcached on loopback answers in well under a millisecond).
	Timeout time.Duration
	// MaxIdle is the idle connections kept to memcached (default 64).
	MaxIdle int
}

// Stats are a Store's counters since it started.
type Stats struct {
	Fills, FillErrors, Deletes, DeleteErrors, Skipped int64
}

// Store fills and deletes pages in memcached through a breaker: a dead or
// hung memcached costs a request at most one short timeout, then nothing
// until a probe finds it back. Every failure is swallowed (counted): the
// front cache is an optimisation, the instances answer without it.
type Store struct {
	mc      *memcache.Client
	ttl     time.Duration
	breaker *guard.Breaker
	done    chan struct{}

	fills, fillErrors, deletes, deleteErrors, skipped atomic.Int64
}

// DefaultTTL is a page's life when Options.TTL is zero.
const DefaultTTL = 30 * time.Second

// New returns a Store on the memcached at o.Addr; nothing is dialled yet.
func New(o Options) *Store {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Timeout <= 0 {
		o.Timeout = 100 * time.Millisecond
	}
	if o.MaxIdle <= 0 {
		o.MaxIdle = 64
	}
	mc := memcache.New(o.Addr)
	mc.Timeout, mc.MaxIdleConns = o.Timeout, o.MaxIdle
	s := &Store{mc: mc, ttl: o.TTL, done: make(chan struct{})}
	s.breaker = guard.NewBreaker(guard.BreakerOptions{
		IsFailure: isFailure,
		Probe: func(ctx context.Context) error { // its outcome closes the breaker
			err := mc.Ping()
			s.breaker.Record(ctx, err)
			return err
		},
		Done: s.done,
	})
	return s
}

// isFailure: an answer (a miss, not stored) means memcached is there.
func isFailure(err error) bool {
	return err != nil && !errors.Is(err, memcache.ErrCacheMiss) && !errors.Is(err, memcache.ErrNotStored) &&
		!errors.Is(err, memcache.ErrMalformedKey)
}

// Close stops the breaker's probing and closes the idle connections.
func (s *Store) Close() error {
	close(s.done)
	return s.mc.Close()
}

// TTL is a page's life in memcached.
func (s *Store) TTL() time.Duration { return s.ttl }

// Fill stores page for path p and query q with the TTL, if they have a key
// nginx looks up; it reports whether it stored it.
func (s *Store) Fill(ctx context.Context, p, q string, page []byte) bool {
	key, ok := Key(p, q)
	if !ok || !s.breaker.Allow(ctx) {
		s.skipped.Add(1)
		return false
	}
	err := s.mc.Set(&memcache.Item{Key: key, Value: page, Expiration: int32((s.ttl + time.Second - 1) / time.Second)})
	s.breaker.Record(ctx, err)
	if err != nil {
		s.fillErrors.Add(1)
		return false
	}
	s.fills.Add(1)
	return true
}

// Delete removes the first page of each path (no query) and reports the
// first error other than a miss; the caller decides whether that matters.
func (s *Store) Delete(ctx context.Context, paths ...string) error {
	var first error
	for _, p := range paths {
		key, ok := Key(p, "")
		if !ok {
			continue
		}
		if !s.breaker.Allow(ctx) {
			s.deleteErrors.Add(1)
			first = cmpOr(first, guard.ErrOpen)
			continue
		}
		err := s.mc.Delete(key)
		s.breaker.Record(ctx, err)
		if err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
			s.deleteErrors.Add(1)
			first = cmpOr(first, err)
			continue
		}
		s.deletes.Add(1)
	}
	return first
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// Stats are the counters so far.
func (s *Store) Stats() Stats {
	return Stats{Fills: s.fills.Load(), FillErrors: s.fillErrors.Load(), Deletes: s.deletes.Load(),
		DeleteErrors: s.deleteErrors.Load(), Skipped: s.skipped.Load()}
}

// BreakerOpen reports whether the breaker is open (memcached unwell).
func (s *Store) BreakerOpen() bool { return s.breaker.Open() }
