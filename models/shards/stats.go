package shards

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"flickrkillr/models/tickets"
)

// QueryCount counts the statements sent to one shard and the rows they
// returned or changed: a pgx tracer (models.Options.Tracer).
type QueryCount struct {
	Statements, Rows atomic.Int64
}

func (q *QueryCount) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.Statements.Add(1)
	return ctx
}

func (q *QueryCount) TraceQueryEnd(_ context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	q.Rows.Add(data.CommandTag.RowsAffected())
}

// Stats is what the Federation did since it started.
type Stats struct {
	Shards []ShardStats
	// RingHits and RingMisses: lookups of a user's shard or a photo's
	// owner answered by the process, and those that asked the ring.
	RingHits, RingMisses int64
	// Fanouts: pages asked of every shard (home, tags, a photo the ring
	// did not know).
	Fanouts int64
	// PagesOne and PagesSpread: photo and user pages answered by one shard,
	// and those that had to ask every shard.
	PagesOne, PagesSpread int64
	RingRepairs           int64
	// HoldWaits: writes that waited for a move's switch, the longest HoldWaitMax.
	HoldWaits   int64
	HoldWaitMax time.Duration
	// Favorites: faver's sides written from the outbox, those across two
	// shards, and those left to the repair.
	OutboxApplied, CrossShardFavorites, OutboxLeft int64
	UsersCopied                                    int64
	Tickets                                        []tickets.Stats
}

// ShardStats is one shard's counts.
type ShardStats struct {
	Name             string
	Reads, Writes    int64 // calls
	Statements, Rows int64
}

// Stats reads the counters.
func (f *Federation) Stats() Stats {
	st := Stats{
		RingHits: f.ringHits.Load(), RingMisses: f.ringMisses.Load(), Fanouts: f.fanouts.Load(),
		PagesOne: f.pagesOne.Load(), PagesSpread: f.pagesSpread.Load(), RingRepairs: f.ringRepairs.Load(),
		HoldWaits: f.holdWaits.Load(), HoldWaitMax: time.Duration(f.holdWaitNanos.Load()),
		OutboxApplied: f.outboxApplied.Load(), CrossShardFavorites: f.crossShardFavorites.Load(), OutboxLeft: f.outboxLeft.Load(),
		UsersCopied: f.usersCopied.Load(), Tickets: f.ids.Stats(),
	}
	for _, s := range f.shards {
		st.Shards = append(st.Shards, ShardStats{Name: s.Name, Reads: s.reads.Load(), Writes: s.writes.Load(),
			Statements: s.Queries.Statements.Load(), Rows: s.Queries.Rows.Load()})
	}
	return st
}
