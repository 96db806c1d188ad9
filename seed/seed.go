// Package seed generates FlickrKillr's demo data set: by default the talk's
// 100k users with 10-20 photos each (~1.5M photos), tags with a Zipf-like
// popularity, favorites and comments skewed toward hot photos and active
// users, and a pool of procedurally generated JPEGs. It is deterministic (the
// same options give the same rows) and fast: bulk COPY in one transaction,
// with constraints and indexes dropped during the load and rebuilt after it.
//
// For stage 10 (RunShards) it writes the same rows spread over a ring
// database and N shards, which load at the same time.
package seed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/errgroup"

	"flickrkillr/models"
	"flickrkillr/models/tickets"
)

// Password is every seeded user's password (the README says so). It is
// hashed once per seed, not once per user.
const Password = "flickrkillr"

// Options say what to generate.
type Options struct {
	Users      int
	PhotosMin  int
	PhotosMax  int
	Seed       uint64
	Reset      bool // replace existing data
	IfEmpty    bool // seed only an empty database; otherwise do nothing
	Images     int  // pool size; 0 picks one from Users
	DataDir    string
	Progress   io.Writer
	IsTerminal bool
}

// ErrNotEmpty is returned when the database has data and Reset is not set.
var ErrNotEmpty = errors.New("seed: the database already has users")

// TableReport is one table's line of the final report.
type TableReport struct {
	Database string // "" when the seed writes one database; "ring", "shard 0", …
	Table    string
	Rows     int64
	Duration time.Duration
}

// Report says what a seed did and how long each step took.
type Report struct {
	Skipped bool
	Tables  []TableReport
	Steps   []TableReport // rebuilding constraints and indexes, ANALYZE
	Total   time.Duration
}

// Validate checks the options a user can get wrong.
func (o Options) Validate() error {
	switch {
	case o.Users < 1:
		return fmt.Errorf("--users must be at least 1 (got %d)", o.Users)
	case o.PhotosMin < 0 || o.PhotosMax < o.PhotosMin:
		return fmt.Errorf("--photos-per-user must be A-B with 0 <= A <= B (got %d-%d)", o.PhotosMin, o.PhotosMax)
	case o.DataDir == "":
		return errors.New("DATA_DIR is empty")
	}
	return nil
}

// tables are truncated together, whichever of them a database gets.
var tables = []string{"users", "photos", "tags", "photo_tags", "favorites", "comments", "sessions"}

// federationTables are stage 10's (migrations/00005_federation.sql):
// truncated with the others where the schema has them, and needed by a
// sharded seed.
var federationTables = []string{"ring_users", "ring_photos", "shard_moves", "user_favorites", "favorite_outbox"}

// Run seeds the database at dsn. Everything happens in one transaction: an
// interrupted or failed seed leaves the database as it was.
func Run(ctx context.Context, dsn string, o Options) (Report, error) {
	return run(ctx, o, []*target{{dsn: dsn}})
}

// RunShards seeds what Run seeds with the same options, spread over stage
// 10's federation: ring is the ring database, shardURLs[k] is shard k, and
// models.HomeShard places every user. Each shard has every user, and the
// photos of its users with their tags, comments and favorites, and the
// favorites its users made (user_favorites); the ring has every user, where
// each user and photo lives, and no content. The databases load at the same
// time, each in its own transaction, and are committed once all have
// loaded; then the two ticket servers (the ring: odd ids, shard 0: even)
// are moved past the seeded ids.
func RunShards(ctx context.Context, ring string, shardURLs []string, o Options) (Report, error) {
	if len(shardURLs) == 0 {
		return Report{}, errors.New("seed: a sharded seed needs at least one shard")
	}
	n := len(shardURLs)
	targets := []*target{{name: "ring", dsn: ring, share: share{shards: n, shard: ringShard}}}
	for k, u := range shardURLs {
		targets = append(targets, &target{name: fmt.Sprintf("shard %d", k), dsn: u, share: share{shards: n, shard: k}})
	}
	return run(ctx, o, targets)
}

// A target is one database the seed writes, and its share of the rows.
type target struct {
	name  string // "" when the seed writes one database
	dsn   string
	share share

	conn       *pgx.Conn
	tx         pgx.Tx
	federation []string // the federationTables its schema has
	users      int64    // before the seed
	uploads    []string // image keys of photos people uploaded
	tables     []TableReport
	steps      []TableReport
}

// label starts the target's progress lines.
func (t *target) label() string {
	if t.name == "" {
		return ""
	}
	return fmt.Sprintf("%-8s ", t.name)
}

// errorf is a seed error, naming the database when there are several.
func (t *target) errorf(format string, args ...any) error {
	if t.name != "" {
		format = t.name + ": " + format
	}
	return fmt.Errorf("seed: "+format, args...)
}

// open connects and reads what the seed must know before it writes.
func (t *target) open(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, t.dsn)
	if err != nil {
		return t.errorf("connect: %w", err)
	}
	t.conn = conn
	var hasSchema bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('public.users') IS NOT NULL`).Scan(&hasSchema); err != nil {
		return t.errorf("%w", err)
	}
	if !hasSchema && t.share.shards > 0 {
		return t.errorf("the schema is missing: run `flickrkillr migrate` with SHARD_URLS set first")
	}
	if !hasSchema {
		return t.errorf("the schema is missing: run `go run . migrate` first")
	}
	rows, err := conn.Query(ctx, `SELECT name FROM unnest($1::text[]) AS name WHERE to_regclass('public.' || name) IS NOT NULL`, federationTables)
	if err == nil {
		t.federation, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		return t.errorf("read the schema: %w", err)
	}
	if t.share.shards > 0 && len(t.federation) < len(federationTables) {
		return t.errorf("stage 10's tables are missing (migrations/00005_federation.sql): run `flickrkillr migrate` with SHARD_URLS set")
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&t.users); err != nil {
		return t.errorf("%w", err)
	}
	return nil
}

// close rolls back what was not committed and disconnects.
func (t *target) close() {
	if t.tx != nil {
		t.tx.Rollback(context.Background()) // a no-op after Commit
	}
	if t.conn != nil {
		t.conn.Close(context.Background())
	}
}

// run seeds every target, each its share; the steps are the same for one
// database or for a ring and its shards.
func run(ctx context.Context, o Options, targets []*target) (Report, error) {
	var rep Report
	if err := o.Validate(); err != nil {
		return rep, err
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Images <= 0 {
		o.Images = poolSize(o.Users)
	}
	start := time.Now()
	for _, t := range targets {
		defer t.close()
		if err := t.open(ctx); err != nil {
			return rep, err
		}
	}
	for _, t := range targets {
		if t.users > 0 && !o.Reset {
			if o.IfEmpty {
				rep.Skipped = true
				return rep, nil
			}
			where := ""
			if t.name != "" {
				where = " on " + t.name
			}
			return rep, fmt.Errorf("%w (%d%s); run with --reset to replace everything", ErrNotEmpty, t.users, where)
		}
	}

	sharded := targets[0].share.shards > 0 // stage 10: a ring and its shards
	prog := &progress{w: o.Progress, tty: o.IsTerminal && !sharded, names: 11}
	if sharded {
		prog.names = len("user_favorites")
	}
	prog.printf("seeding %d users with %d-%d photos each (--seed %d)\n", o.Users, o.PhotosMin, o.PhotosMax, o.Seed)
	if sharded {
		prog.printf("  over %d shards and the ring, loading at the same time (stage 10)\n", len(targets)-1)
	}
	p := newPlan(o.Seed, o.Users, o.PhotosMin, o.PhotosMax, o.Images)

	store, err := models.NewImageStore(o.DataDir)
	if err != nil {
		return rep, err
	}
	t := time.Now()
	if err := writePool(store, o.Seed, o.Images, prog); err != nil {
		return rep, fmt.Errorf("seed: images: %w", err)
	}
	rep.Tables = append(rep.Tables, TableReport{Table: "images", Rows: int64(o.Images), Duration: time.Since(t)})

	hash, err := bcrypt.GenerateFromPassword([]byte(Password), bcrypt.DefaultCost)
	if err != nil {
		return rep, err
	}

	// Each database loads in its own transaction; a sharded seed loads them
	// all at once, so that it takes about one database's time. The first
	// failure (or Ctrl-C) stops the others; nothing is committed until all
	// have loaded.
	g, gctx := errgroup.WithContext(ctx)
	for _, t := range targets {
		g.Go(func() error { return t.load(gctx, p, hash, prog) })
	}
	if err := g.Wait(); err != nil {
		return rep, err
	}
	for _, t := range targets {
		rep.Tables = append(rep.Tables, t.tables...)
		rep.Steps = append(rep.Steps, t.steps...)
	}
	// Once every database has loaded, an interruption no longer stops the
	// commits half-way.
	done := context.WithoutCancel(ctx)
	var committed []string
	for _, t := range targets {
		if err := t.tx.Commit(done); err != nil {
			if len(committed) > 0 {
				return rep, t.errorf("commit: %w (already committed: %s; seed again with --reset)", err, strings.Join(committed, ", "))
			}
			return rep, t.errorf("commit: %w", err)
		}
		committed = append(committed, t.name)
	}
	if sharded {
		step, err := setupTickets(done, targets, p, prog)
		if err != nil {
			return rep, err
		}
		rep.Steps = append(rep.Steps, step)
	}

	var uploads []string
	for _, t := range targets {
		uploads = append(uploads, t.uploads...)
	}
	if len(uploads) > 0 {
		var errs []error
		for _, key := range uploads {
			errs = append(errs, store.Remove(key))
		}
		prog.printf("  removed the files of %d uploaded photos from %s\n", len(uploads), o.DataDir)
		if err := errors.Join(errs...); err != nil {
			prog.printf("  (some could not be removed: %v)\n", err)
		}
	}
	rep.Total = time.Since(start)
	return rep, nil
}

// load writes the target's share in a transaction it leaves open, for run
// to commit.
func (t *target) load(ctx context.Context, p *plan, hash []byte, prog *progress) error {
	tx, err := t.conn.Begin(ctx)
	if err != nil {
		return t.errorf("begin: %w", err)
	}
	t.tx = tx

	// Uploaded photos go with the rows; their files are removed once the new
	// data is committed (the seed's own pool stays, for the next seed).
	if t.users > 0 {
		rows, err := tx.Query(ctx, `SELECT image_key FROM photos WHERE image_key NOT LIKE $1`, poolPrefix+"%")
		if err == nil {
			t.uploads, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil {
			return t.errorf("list uploaded images: %w", err)
		}
	}

	// TRUNCATE in the same transaction as the COPY lets PostgreSQL (with
	// wal_level=minimal, as scripts/pg.sh sets it) skip writing WAL for the load.
	truncate := slices.Concat(tables, t.federation)
	if _, err := tx.Exec(ctx, `TRUNCATE `+strings.Join(truncate, ", ")+` RESTART IDENTITY CASCADE`); err != nil {
		return t.errorf("truncate: %w", err)
	}
	loads := p.loads(t.share, hash)
	var loaded []string
	for _, l := range loads {
		loaded = append(loaded, l.table)
	}
	saved, err := dropConstraints(ctx, tx, loaded)
	if err != nil {
		return t.errorf("%w", err)
	}
	for _, l := range loads {
		start := time.Now()
		c := prog.start(t.label(), l.table, l.total)
		n, err := tx.CopyFrom(ctx, pgx.Identifier{l.table}, l.cols, &rowSource{ctx: ctx, row: make([]any, len(l.cols)), next: l.src, count: c})
		prog.finish(c)
		if err != nil {
			return t.errorf("copy %s: %w", l.table, err)
		}
		t.tables = append(t.tables, TableReport{Database: t.name, Table: l.table, Rows: n, Duration: time.Since(start)})
	}

	steps, err := restoreConstraints(ctx, tx, saved, prog, t.label())
	for _, s := range steps {
		s.Database = t.name
		t.steps = append(t.steps, s)
	}
	if err != nil {
		return t.errorf("%w", err)
	}
	for _, table := range []string{"users", "photos", "tags", "comments"} {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`SELECT setval(pg_get_serial_sequence('%s', 'id'), GREATEST((SELECT max(id) FROM %s), 1))`, table, table)); err != nil {
			return t.errorf("reset %s id sequence: %w", table, err)
		}
	}
	start := time.Now()
	prog.printf("  %sanalyze …\n", t.label())
	if _, err := tx.Exec(ctx, `ANALYZE `+strings.Join(loaded, ", ")); err != nil {
		return t.errorf("analyze: %w", err)
	}
	t.steps = append(t.steps, TableReport{Database: t.name, Table: "analyze", Duration: time.Since(start)})
	return nil
}

// setupTickets moves stage 10's two ticket servers, the ring (odd ids) and
// shard 0 (even ids), past every seeded id (users, photos, comments are
// numbered from 1), so that the first new account, photo or comment gets
// an id the seed did not use.
func setupTickets(ctx context.Context, targets []*target, p *plan, prog *progress) (TableReport, error) {
	start := time.Now()
	above := int64(max(p.users, p.photos, p.comments))
	ring, shard0 := targets[0], targets[1]
	if err := tickets.Setup(ctx, ring.dsn, 1, above); err != nil {
		return TableReport{}, ring.errorf("%w (the data is committed: seed again with --reset)", err)
	}
	if err := tickets.Setup(ctx, shard0.dsn, 2, above); err != nil {
		return TableReport{}, shard0.errorf("%w (the data is committed: seed again with --reset)", err)
	}
	prog.printf("  tickets: the ring (odd) and shard 0 (even) issue ids above %d\n", above)
	return TableReport{Table: "tickets", Duration: time.Since(start)}, nil
}
