package models

import "context"

// A Fence keeps a miss from computing its value from data older than the
// write that invalidated it, where reads may be served late (stage 9's
// replicas replay the primary's commits a little after them). A write's
// Bump first has the fence note how far the writes have got (Invalidate),
// then increments the generations; a miss's load runs in the context
// Require gives, whose reads see at least that far. Without a fence the
// generations alone suffice: every read sees every commit that returned.
//
// need names what Require's context needs (a position, "" for nothing):
// concurrent misses of one key share one load only when they need the
// same, or a user who must see their own write could be handed the value
// of a visitor's load from a standby that has not replayed it.
type Fence interface {
	Invalidate(ctx context.Context, deps []string) error
	Require(ctx context.Context, deps []string) (fenced context.Context, need string, err error)
}

// FenceWith makes the cache's bumps and misses go through f. Call it
// before the first Load.
func (c *Cache) FenceWith(f Fence) { c.fence = f }
