// Package shards is stage 10: Flickr's federation. Each user's data lives
// on one shard (a PostgreSQL cluster of its own): their photos, the tags on
// them, the comments and favorites on them. A ring database says where
// each user lives (ring_users) and whose each photo is (ring_photos), and
// two ticket servers (models/tickets) give ids unique across shards. The
// users' public rows are on every shard: the pages join a comment's author
// and a photo's owner, who may live elsewhere.
//
// Federation is a models.Gallery (and models.PhotoStates) over one
// models.PhotoStore per shard: a page about one photo or one user asks the
// ring which shard (cached in the process) and hands the call to that
// shard's store; a page that spans users (home, a tag) asks every shard at
// once and merges. The stores do not know there are shards: each is built
// on its shard's handle. Writes hold the owner's lock on the owner's shard
// (a shared advisory lock) while they write, so that a move (move.go),
// which takes it exclusively for its switch, waits for the writes in
// flight and holds the next ones for the switch: a short wait, not an
// error. The ring is read, and cached, never locked: it costs nothing per
// write.
package shards

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"flickrkillr/models"
	"flickrkillr/models/tickets"
)

// IDs gives new rows their ids (the ticket servers: *tickets.Tickets).
type IDs interface {
	Next(ctx context.Context) (int64, error)
	Stats() []tickets.Stats
}

// Handle is a shard's connection pool, and what counts its statements
// (given to models.Open as its Tracer; nil: not counted).
type Handle struct {
	DB      *gorm.DB
	Queries *QueryCount
}

// Shard is one shard: its handle and the photo store on it.
type Shard struct {
	Name    string
	DB      *gorm.DB
	Store   *models.PhotoStore
	Queries *QueryCount

	base *Shard // a Shard pinned to a connection by hold: the shard it is of

	reads, writes atomic.Int64 // calls sent to it
}

// Options tune the Federation; zero values take the defaults.
type Options struct {
	// Lookups runs the calls to every shard of a page that spans users
	// (stage 5's fan-out: at once).
	Lookups models.Lookups
	// States: photos have a state (stage 6): the shards' stores read it.
	States bool
	// RingTTL is how long a process trusts what the ring said of a user's
	// shard (10 s; Flickr kept the ring in memcached for about 30 minutes).
	// Writes use it too: a write that finds the user moved off a shard is
	// sent back to the ring by the shard's mark (moved_users). A move waits
	// RingTTL after its switch before it deletes the old copies, so a page
	// read from a stale answer still finds its rows.
	RingTTL time.Duration
	// HoldWait bounds how long a write waits for a move's switch (5 s)
	// before it fails.
	HoldWait time.Duration
	// OutboxAge is how old a favorite's outbox row must be before the
	// repair applies it (10 s): younger ones are their request's to apply.
	OutboxAge time.Duration
	// Log, when set, is told what the Federation repaired or left to repair
	// (slog.Logger.Warn's arguments).
	Log func(msg string, args ...any)
	// BetweenFavoriteWrites, when set, runs after the owner's side of a
	// favorite has committed and before the faver's side is written: the
	// crash test kills the process there.
	BetweenFavoriteWrites func()
}

func (o *Options) defaults() {
	if o.Lookups == nil {
		o.Lookups = models.Sequential{}
	}
	if o.RingTTL <= 0 {
		o.RingTTL = 10 * time.Second
	}
	if o.HoldWait <= 0 {
		o.HoldWait = 5 * time.Second
	}
	if o.OutboxAge <= 0 {
		o.OutboxAge = 10 * time.Second
	}
}

// Federation routes the gallery's reads and writes to the shards.
type Federation struct {
	o      Options
	ring   *gorm.DB
	shards []*Shard
	ids    IDs
	users  *models.UserStore // the ring's users: sign-in by name

	mu     sync.Mutex
	homes  *models.Memo[home]  // user id -> shard, with when it was read
	names  *models.Memo[home]  // user name -> id and shard
	owners *models.Memo[int64] // photo id -> owner id (never changes)

	ringHits, ringMisses  atomic.Int64
	fanouts, ringRepairs  atomic.Int64
	holdWaits             atomic.Int64 // writes that waited for a switch
	holdWaitNanos         atomic.Int64 // the longest such wait
	outboxApplied         atomic.Int64
	outboxLeft            atomic.Int64 // favorites whose faver's side was left to the repair
	usersCopied           atomic.Int64 // users' rows copied to a shard that lacked them
	crossShardFavorites   atomic.Int64
	pagesOne, pagesSpread atomic.Int64 // photo and user pages: one shard, or asked around
}

type home struct {
	user  int64
	shard int
	at    time.Time
}

// ErrShardDown wraps a shard that does not answer: its users' pages fail
// with it, everyone else's keep working.
var ErrShardDown = errors.New("shards: a shard does not answer")

// New routes to shards (each with its handle), with the ring and the ids
// of ids. The shards' stores are made here, on their handles.
func New(ring *gorm.DB, handles []Handle, ids IDs, o Options) *Federation {
	o.defaults()
	f := &Federation{o: o, ring: ring, ids: ids, users: models.NewUserStore(ring),
		homes:  models.NewMemo[home](8<<20, func(home) int { return 32 }),
		names:  models.NewMemo[home](8<<20, func(home) int { return 32 }),
		owners: models.NewMemo[int64](16<<20, func(int64) int { return 8 })}
	for i, h := range handles {
		store := models.NewPhotoStore(h.DB, models.Sequential{}).WithIDs(ids.Next)
		if o.States {
			store = store.WithStates()
		}
		f.shards = append(f.shards, &Shard{Name: fmt.Sprintf("shard-%d", i), DB: h.DB, Store: store, Queries: cmp.Or(h.Queries, &QueryCount{})})
	}
	return f
}

// Shards are the shards, in order.
func (f *Federation) Shards() []*Shard { return f.shards }

// Ring is the ring's handle.
func (f *Federation) Ring() *gorm.DB { return f.ring }

// shardOf is the shard a user lives on, as the ring said within RingTTL.
func (f *Federation) shardOf(ctx context.Context, user int64) (*Shard, error) {
	key := strconv.FormatInt(user, 10)
	f.mu.Lock()
	h, ok := f.homes.Get(key)
	f.mu.Unlock()
	if ok && time.Since(h.at) < f.o.RingTTL {
		f.ringHits.Add(1)
		return f.shards[h.shard], nil
	}
	f.ringMisses.Add(1)
	var shards []int
	if err := f.ring.WithContext(ctx).Raw(`SELECT shard FROM ring_users WHERE user_id = ?`, user).Scan(&shards).Error; err != nil {
		return nil, fmt.Errorf("shards: the ring: user %d: %w", user, err)
	}
	if len(shards) == 0 {
		return nil, fmt.Errorf("shards: user %d is not in the ring: %w", user, models.ErrNotFound)
	}
	return f.remember(user, "", shards[0])
}

// remember keeps what the ring said of a user (and their name).
func (f *Federation) remember(user int64, name string, shard int) (*Shard, error) {
	if shard < 0 || shard >= len(f.shards) {
		return nil, fmt.Errorf("shards: the ring puts user %d on shard %d, and there are %d", user, shard, len(f.shards))
	}
	h := home{user: user, shard: shard, at: time.Now()}
	f.mu.Lock()
	f.homes.Put(strconv.FormatInt(user, 10), h)
	if name != "" {
		f.names.Put(name, h)
	}
	f.mu.Unlock()
	return f.shards[shard], nil
}

// forget drops what the process knows of a user's shard (a move's switch,
// or a page that did not find the user's rows where the ring said).
func (f *Federation) forget(user int64, name string) {
	f.mu.Lock()
	f.homes.Put(strconv.FormatInt(user, 10), home{shard: -1})
	if name != "" {
		f.names.Put(name, home{shard: -1})
	}
	f.mu.Unlock()
}

// byName is a user's id and shard, as the ring said within RingTTL.
func (f *Federation) byName(ctx context.Context, name string) (int64, *Shard, error) {
	f.mu.Lock()
	h, ok := f.names.Get(name)
	f.mu.Unlock()
	if ok && h.shard >= 0 && time.Since(h.at) < f.o.RingTTL {
		f.ringHits.Add(1)
		return h.user, f.shards[h.shard], nil
	}
	f.ringMisses.Add(1)
	var rows []struct {
		UserID int64
		Shard  int
	}
	if err := f.ring.WithContext(ctx).Raw(`SELECT user_id, shard FROM ring_users WHERE name = ?`, name).Scan(&rows).Error; err != nil {
		return 0, nil, fmt.Errorf("shards: the ring: user %q: %w", name, err)
	}
	if len(rows) == 0 {
		return 0, nil, fmt.Errorf("shards: user %q: %w", name, models.ErrNotFound)
	}
	s, err := f.remember(rows[0].UserID, name, rows[0].Shard)
	return rows[0].UserID, s, err
}

// ownerOf is whose a photo is: ring_photos, kept in the process for good
// (a photo never changes owner). A photo the ring does not know (its
// upload's ring row failed after the shard's) is looked for on every shard
// and put back in the ring.
func (f *Federation) ownerOf(ctx context.Context, photo int64) (int64, error) {
	key := strconv.FormatInt(photo, 10)
	f.mu.Lock()
	owner, ok := f.owners.Get(key)
	f.mu.Unlock()
	if ok {
		f.ringHits.Add(1)
		return owner, nil
	}
	f.ringMisses.Add(1)
	var owners []int64
	if err := f.ring.WithContext(ctx).Raw(`SELECT user_id FROM ring_photos WHERE photo_id = ?`, photo).Scan(&owners).Error; err != nil {
		return 0, fmt.Errorf("shards: the ring: photo %d: %w", photo, err)
	}
	if len(owners) == 0 {
		var err error
		if owners, err = f.findPhoto(ctx, photo); err != nil || len(owners) == 0 {
			return 0, cmp.Or(err, fmt.Errorf("shards: photo %d: %w", photo, models.ErrNotFound))
		}
	}
	f.mu.Lock()
	f.owners.Put(key, owners[0])
	f.mu.Unlock()
	return owners[0], nil
}

// findPhoto asks every shard for a photo the ring does not know, and puts
// it back in the ring when one has it.
func (f *Federation) findPhoto(ctx context.Context, photo int64) ([]int64, error) {
	f.fanouts.Add(1)
	found := make([][]int64, len(f.shards))
	err := f.everyShard(ctx, func(ctx context.Context, i int, s *Shard) error {
		return s.DB.WithContext(ctx).Raw(`SELECT user_id FROM photos WHERE id = ?`, photo).Scan(&found[i]).Error
	})
	if err != nil {
		return nil, err
	}
	f.pagesSpread.Add(1)
	for _, owners := range found {
		if len(owners) > 0 {
			f.ringRepairs.Add(1)
			err := f.ring.WithContext(ctx).Exec(`INSERT INTO ring_photos (photo_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING`, photo, owners[0]).Error
			return owners, err
		}
	}
	return nil, nil
}

// everyShard runs fn on every shard at once (Options.Lookups); a shard that
// fails fails the call.
func (f *Federation) everyShard(ctx context.Context, fn func(ctx context.Context, i int, s *Shard) error) error {
	fns := make([]func(context.Context) error, len(f.shards))
	for i, s := range f.shards {
		fns[i] = func(ctx context.Context) error {
			s.reads.Add(1)
			if err := fn(ctx, i, s); err != nil {
				return shardErr(s, err)
			}
			return nil
		}
	}
	return f.o.Lookups.Run(ctx, fns...)
}

// withOwner runs write on the shard the user lives on, holding the user's
// lock there while it writes: a shared advisory lock (in the server's
// memory: nothing written, no transaction) on one connection, which write
// gets as its shard (its DB and Store on that connection). A move's switch
// takes the lock exclusively on the shard the user leaves: it waits for
// the writes in flight, holds the next ones, and leaves a mark
// (moved_users) that sends a write which found the old shard (a process's
// cached answer) back to the ring. The hold costs the ring nothing and the
// shard one statement before and one after each write; a write held past
// HoldWait fails (context.DeadlineExceeded: the app's 503). The shards are
// reached directly: a session's advisory lock needs its own connection,
// which a transaction-pooling PgBouncer in front would not keep.
func (f *Federation) withOwner(ctx context.Context, user int64, write func(s *Shard) error) error {
	start := time.Now()
	held := false
	for {
		s, err := f.shardOf(ctx, user)
		if err != nil {
			return err
		}
		ok, err := s.hold(ctx, user, func(pinned *Shard) error {
			s.writes.Add(1)
			return write(pinned)
		})
		if ok || err != nil {
			if held && ok {
				f.noteHold(time.Since(start))
			}
			return shardErr(s, err)
		}
		held = true // locked by a switch, or moved away: ask the ring again
		f.forget(user, "")
		if time.Since(start) > f.o.HoldWait {
			return fmt.Errorf("shards: user %d's writes held for a move longer than %s: %w", user, f.o.HoldWait, context.DeadlineExceeded)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// hold runs write holding the user's shared lock on this shard, with the
// shard's DB and Store on the connection that holds it. It does not run
// write (false, nil) when a switch holds the lock or the user has moved
// off this shard.
func (s *Shard) hold(ctx context.Context, user int64, write func(pinned *Shard) error) (bool, error) {
	sqlDB, err := s.DB.DB()
	if err != nil {
		return false, err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	var got bool
	var to sql.NullInt64
	err = conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock_shared($1), (SELECT to_shard FROM moved_users WHERE user_id = $1)`, user).Scan(&got, &to)
	if err != nil || !got {
		return false, err
	}
	defer func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock_shared($1)`, user); err != nil {
			conn.Raw(func(any) error { return driver.ErrBadConn }) // the connection goes, and its session's lock with it
		}
	}()
	if to.Valid {
		return false, nil
	}
	db := s.DB.Session(&gorm.Session{NewDB: true, Context: ctx})
	db.Statement.ConnPool = conn
	return true, write(&Shard{Name: s.Name, DB: db, Store: s.Store.On(db), Queries: s.Queries, base: s})
}

// shard is the Federation's own Shard of a pinned one (hold's).
func (s *Shard) shard() *Shard {
	if s.base != nil {
		return s.base
	}
	return s
}

// noteHold counts a write held by a move's switch, and the longest hold.
func (f *Federation) noteHold(waited time.Duration) {
	f.holdWaits.Add(1)
	for {
		old := f.holdWaitNanos.Load()
		if int64(waited) <= old || f.holdWaitNanos.CompareAndSwap(old, int64(waited)) {
			return
		}
	}
}

// shardErr marks an error of a shard that did not answer (ErrShardDown),
// so the app can say which part of the site is down.
func shardErr(s *Shard, err error) error {
	if err == nil || errors.Is(err, ErrShardDown) || errors.Is(err, models.ErrNotFound) || errors.Is(err, models.ErrForbidden) ||
		errors.Is(err, models.ErrDuplicate) || errors.Is(err, context.Canceled) {
		return err
	}
	if models.IsUnavailable(err) {
		return fmt.Errorf("%w: %s: %w", ErrShardDown, s.Name, err)
	}
	return err
}
