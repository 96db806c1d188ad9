package replicas

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
)

// LSN is a WAL position (PostgreSQL's pg_lsn) as a byte count; 0 is "no
// position needed".
type LSN uint64

// ParseLSN reads PostgreSQL's "X/Y" text form.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("replicas: bad LSN %q", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("replicas: bad LSN %q", s)
	}
	return LSN(h<<32 | l), nil
}

func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xFFFFFFFF) }

type (
	stateKey   struct{}
	minLSNKey  struct{}
	primaryKey struct{}
)

// state is what the Router learns about a request while it runs.
type state struct {
	wrote atomic.Bool
	// writes counts the request's write statements; position is the
	// primary's position read after the writes-th of them (PrimaryLSN's
	// memo: while no write followed, it still covers every commit of the
	// request, and the invalidations and WriteLSN of one request share it).
	writes   atomic.Uint64
	position atomic.Pointer[positionMemo]
	// oldest is the lowest polled position of the replicas its reads went
	// to (noReplicaRead: none did); a replica read there had replayed at
	// least that much.
	oldest atomic.Uint64
}

const noReplicaRead = ^uint64(0)

type positionMemo struct {
	writes uint64 // state.writes before the position was read
	lsn    LSN
}

// Track marks ctx as one request's: the Router notes whether it wrote, so
// its later reads go to the primary and WriteLSN knows to read the
// position to keep for the user, and how old the data it read may be
// (ReadAtLeast).
func Track(ctx context.Context) context.Context {
	st := &state{}
	st.oldest.Store(noReplicaRead)
	return context.WithValue(ctx, stateKey{}, st)
}

// readFrom notes that a read of the request went to a replica polled at pos.
func (st *state) readFrom(pos LSN) {
	for {
		cur := st.oldest.Load()
		if uint64(pos) >= cur || st.oldest.CompareAndSwap(cur, uint64(pos)) {
			return
		}
	}
}

// ReadAtLeast says whether every read so far of the request tracked by ctx
// saw the WAL up to lsn: it read only the primary, or replicas that had
// replayed past lsn. A caller that is about to keep what it read for others
// (a cache fill) asks this first. Untracked, nobody knows: false.
func ReadAtLeast(ctx context.Context, lsn LSN) bool {
	st, ok := ctx.Value(stateKey{}).(*state)
	return ok && st.oldest.Load() >= uint64(lsn)
}

// WithMinLSN says the reads under ctx must see the WAL up to lsn (the
// position kept for the user after their last write): they go to a
// replica that has replayed past it, else to the primary. A lower lsn than
// ctx already needs changes nothing.
func WithMinLSN(ctx context.Context, lsn LSN) context.Context {
	if lsn <= minLSN(ctx) {
		return ctx
	}
	return context.WithValue(ctx, minLSNKey{}, lsn)
}

// OnPrimary sends every statement under ctx to the primary: for the raw
// SELECTs that write (nextval), and for reads that must not be stale.
func OnPrimary(ctx context.Context) context.Context {
	return context.WithValue(ctx, primaryKey{}, true)
}

// Needs says what the reads under ctx need, as text: "primary" (OnPrimary,
// or the request wrote), a position, or "" for any replica in the
// rotation. Two loads that need the same may share their result.
func Needs(ctx context.Context) string {
	if ctx.Value(primaryKey{}) != nil || Wrote(ctx) {
		return "primary"
	}
	if l := minLSN(ctx); l > 0 {
		return l.String()
	}
	return ""
}

func minLSN(ctx context.Context) LSN {
	l, _ := ctx.Value(minLSNKey{}).(LSN)
	return l
}

func markWrote(ctx context.Context) {
	if st, ok := ctx.Value(stateKey{}).(*state); ok {
		st.wrote.Store(true)
		st.writes.Add(1)
	}
}

// Wrote says whether the request tracked by ctx (Track) sent a write.
func Wrote(ctx context.Context) bool {
	st, ok := ctx.Value(stateKey{}).(*state)
	return ok && st.wrote.Load()
}

// WriteLSN is the primary's pg_current_wal_insert_lsn() after a request
// that wrote (Wrote), for the caller to keep for the user (Sticky.Set):
// every WAL record of that request's commits ends at or before it. ok is
// false, with no query, when the request did not write.
func (r *Router) WriteLSN(ctx context.Context) (lsn LSN, ok bool, err error) {
	if !Wrote(ctx) {
		return 0, false, nil
	}
	lsn, err = r.PrimaryLSN(ctx)
	return lsn, err == nil, err
}

// PrimaryLSN is the primary's pg_current_wal_insert_lsn() now: every
// commit that has returned ends at or before it. A write's invalidation
// (a cache generation, a front page) records it, so that a later fill reads
// at least that far. In a tracked request (Track) it is read once per
// write: a request that writes a comment invalidates the photo's cache
// generation and its front pages and keeps a position for its user, and
// those three asked the primary the same question (issue 34).
func (r *Router) PrimaryLSN(ctx context.Context) (LSN, error) {
	st, _ := ctx.Value(stateKey{}).(*state)
	var writes uint64
	if st != nil {
		writes = st.writes.Load()
		if m := st.position.Load(); m != nil && m.writes == writes {
			return m.lsn, nil
		}
	}
	r.positionReads.Add(1)
	var s string
	if err := r.primary.QueryRowContext(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&s); err != nil {
		return 0, fmt.Errorf("replicas: read the primary's WAL position: %w", err)
	}
	lsn, err := ParseLSN(s)
	if err == nil && st != nil {
		st.position.Store(&positionMemo{writes: writes, lsn: lsn})
	}
	return lsn, err
}
