package replicas

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fence keeps what is filled for others (a cache value, a whole page) from
// being older than the write that invalidated it. A standby replays the
// primary's commits a little after them, so without it a fill that runs
// just after a write's invalidation can read the old rows from a standby
// and keep them as the new value, until its TTL.
//
// A write's invalidation first notes the primary's position under the
// names it invalidates (Invalidate, before the invalidation itself, so a
// fill that sees the invalidation sees the mark too). A fill then either
// reads at least that far (Require: its reads go to a standby past the
// mark, or to the primary), or checks afterwards that it did (Fresh: the
// request read only the primary, or standbys past the mark). The marks
// expire once every standby in the rotation must have replayed them.
type Fence struct {
	r     *Router
	marks Marks
	ttl   time.Duration
}

// NewFence keeps its marks in rdb under prefix, for ttl (at least the
// Router's MaxLag: a standby further behind leaves the rotation).
func NewFence(r *Router, rdb redis.UniversalClient, prefix string, ttl time.Duration) *Fence {
	return &Fence{r: r, marks: Marks{NewRedisSticky(rdb, prefix)}, ttl: ttl}
}

// Invalidate marks names with the primary's position now: call it after
// the write committed and before its invalidation.
func (f *Fence) Invalidate(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	lsn, err := f.r.PrimaryLSN(ctx)
	if err != nil {
		return err
	}
	return f.marks.SetAll(ctx, names, lsn, f.ttl)
}

// Require is ctx with its reads needing the highest mark of names, and
// what they need, as text ("" for nothing): the position, or "primary".
func (f *Fence) Require(ctx context.Context, names []string) (context.Context, string, error) {
	lsn, err := f.marks.Max(ctx, names)
	if err != nil {
		return ctx, "", err
	}
	ctx = WithMinLSN(ctx, lsn)
	return ctx, Needs(ctx), nil
}

// Fresh says whether every read of the request of ctx (Track) saw the
// highest mark of names (no mark left: yes).
func (f *Fence) Fresh(ctx context.Context, names []string) (bool, error) {
	lsn, err := f.marks.Max(ctx, names)
	if err != nil {
		return false, err
	}
	return lsn == 0 || ReadAtLeast(ctx, lsn), nil // no mark: every standby in the rotation has the last write
}

// Pages is a store of whole pages by path that a front server answers from
// (stage 8's memcached): filled after a render, deleted by a write.
type Pages interface {
	Fill(ctx context.Context, path, query string, page []byte) bool
	Delete(ctx context.Context, paths ...string) error
}

// Pages fences p: a write's Delete marks the paths first, and a Fill whose
// request read older data than a path's mark is skipped (counted in
// skipped): the visitor has the page, the next miss fills a fresh one. A
// page is rendered before anyone knows which rows it reads, so it is
// checked (Fresh), not required.
func (f *Fence) Pages(p Pages, log *slog.Logger, skipped *atomic.Int64) Pages {
	return fencedPages{Pages: p, f: f, log: log, skipped: skipped}
}

type fencedPages struct {
	Pages
	f       *Fence
	log     *slog.Logger
	skipped *atomic.Int64
}

func pageMarks(paths ...string) []string {
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = "page:" + p
	}
	return names
}

func (p fencedPages) Delete(ctx context.Context, paths ...string) error {
	if err := p.f.Invalidate(ctx, pageMarks(paths...)); err != nil {
		p.log.Warn("replicas: fence failed; a page read before this write may be filled until its TTL", "paths", paths, "err", err)
	}
	return p.Pages.Delete(ctx, paths...)
}

func (p fencedPages) Fill(ctx context.Context, path, query string, page []byte) bool {
	if fresh, err := p.f.Fresh(ctx, pageMarks(path)); err != nil || !fresh {
		p.skipped.Add(1)
		return false
	}
	return p.Pages.Fill(ctx, path, query, page)
}
