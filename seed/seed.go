// Package seed generates FlickrKillr's demo data set: by default the talk's
// 100k users with 10-20 photos each (~1.5M photos), tags with a Zipf-like
// popularity, favorites and comments skewed toward hot photos and active
// users, and a pool of procedurally generated JPEGs. It is deterministic (the
// same options give the same rows) and fast: bulk COPY in one transaction,
// with constraints and indexes dropped during the load and rebuilt after it.
package seed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"

	"flickrkillr/models"
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

// tables are loaded in this order and truncated together.
var tables = []string{"users", "photos", "tags", "photo_tags", "favorites", "comments", "sessions"}

// Run seeds the database at dsn. Everything happens in one transaction: an
// interrupted or failed seed leaves the database as it was.
func Run(ctx context.Context, dsn string, o Options) (Report, error) {
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
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return rep, fmt.Errorf("seed: connect: %w", err)
	}
	defer conn.Close(context.Background())

	var hasSchema bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('public.users') IS NOT NULL`).Scan(&hasSchema); err != nil {
		return rep, fmt.Errorf("seed: %w", err)
	}
	if !hasSchema {
		return rep, errors.New("seed: the schema is missing: run `go run . migrate` first")
	}
	var users int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&users); err != nil {
		return rep, fmt.Errorf("seed: %w", err)
	}
	if users > 0 && !o.Reset {
		if o.IfEmpty {
			rep.Skipped = true
			return rep, nil
		}
		return rep, fmt.Errorf("%w (%d); run with --reset to replace everything", ErrNotEmpty, users)
	}

	prog := &progress{w: o.Progress, tty: o.IsTerminal}
	fmt.Fprintf(o.Progress, "seeding %d users with %d-%d photos each (--seed %d)\n", o.Users, o.PhotosMin, o.PhotosMax, o.Seed)
	p := newPlan(o.Seed, o.Users, o.PhotosMin, o.PhotosMax, o.Images)

	store, err := models.NewImageStore(o.DataDir)
	if err != nil {
		return rep, err
	}
	t := time.Now()
	if err := writePool(store, o.Seed, o.Images, prog); err != nil {
		return rep, fmt.Errorf("seed: images: %w", err)
	}
	rep.Tables = append(rep.Tables, TableReport{"images", int64(o.Images), time.Since(t)})

	hash, err := bcrypt.GenerateFromPassword([]byte(Password), bcrypt.DefaultCost)
	if err != nil {
		return rep, err
	}

	tx, err := conn.Begin(ctx)
	if err != nil {
		return rep, fmt.Errorf("seed: begin: %w", err)
	}
	defer tx.Rollback(context.Background()) // a no-op after Commit

	// Uploaded photos go with the rows; their files are removed once the new
	// data is committed (the seed's own pool stays, for the next seed).
	var uploads []string
	if users > 0 {
		rows, err := tx.Query(ctx, `SELECT image_key FROM photos WHERE image_key NOT LIKE $1`, poolPrefix+"%")
		if err == nil {
			uploads, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil {
			return rep, fmt.Errorf("seed: list uploaded images: %w", err)
		}
	}

	// TRUNCATE in the same transaction as the COPY lets PostgreSQL (with
	// wal_level=minimal, as scripts/pg.sh sets it) skip writing WAL for the load.
	if _, err := tx.Exec(ctx, `TRUNCATE `+strings.Join(tables, ", ")+` RESTART IDENTITY CASCADE`); err != nil {
		return rep, fmt.Errorf("seed: truncate: %w", err)
	}
	saved, err := dropConstraints(ctx, tx, tables[:6])
	if err != nil {
		return rep, err
	}
	loads := []struct {
		table string
		cols  []string
		total int64
		src   func(row []any) (bool, error)
	}{
		{"users", []string{"id", "name", "display_name", "password_hash", "created_at"}, int64(p.users), numbered(p.users, func(id int64, row []any) { p.userRow(id, hash, row) })},
		{"photos", []string{"id", "user_id", "title", "description", "image_key", "width", "height", "created_at"}, int64(p.photos), numbered(p.photos, p.photoRow)},
		{"photo_tags", []string{"photo_id", "tag_id"}, int64(p.photos) * 3, p.photoTagsSource()},
		{"tags", []string{"id", "name", "photo_count"}, int64(len(p.tags)), numbered(len(p.tags), p.tagRow)},
		{"favorites", []string{"user_id", "photo_id", "created_at"}, int64(p.favorites), p.favoritesSource()},
		{"comments", []string{"id", "photo_id", "user_id", "body", "created_at"}, int64(p.comments), numbered(p.comments, p.commentRow)},
	}
	for _, l := range loads {
		t := time.Now()
		c := prog.start(l.table, l.total)
		n, err := tx.CopyFrom(ctx, pgx.Identifier{l.table}, l.cols, &rowSource{ctx: ctx, row: make([]any, len(l.cols)), next: l.src, count: c})
		prog.finish(c)
		if err != nil {
			return rep, fmt.Errorf("seed: copy %s: %w", l.table, err)
		}
		rep.Tables = append(rep.Tables, TableReport{l.table, n, time.Since(t)})
	}

	steps, err := restoreConstraints(ctx, tx, saved, o.Progress)
	rep.Steps = steps
	if err != nil {
		return rep, err
	}
	for _, t := range []string{"users", "photos", "tags", "comments"} {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`SELECT setval(pg_get_serial_sequence('%s', 'id'), GREATEST((SELECT max(id) FROM %s), 1))`, t, t)); err != nil {
			return rep, fmt.Errorf("seed: reset %s id sequence: %w", t, err)
		}
	}
	t = time.Now()
	fmt.Fprintln(o.Progress, "  analyze …")
	if _, err := tx.Exec(ctx, `ANALYZE users, photos, tags, photo_tags, favorites, comments`); err != nil {
		return rep, fmt.Errorf("seed: analyze: %w", err)
	}
	rep.Steps = append(rep.Steps, TableReport{"analyze", 0, time.Since(t)})
	if err := tx.Commit(ctx); err != nil {
		return rep, fmt.Errorf("seed: commit: %w", err)
	}
	if len(uploads) > 0 {
		var errs []error
		for _, key := range uploads {
			errs = append(errs, store.Remove(key))
		}
		fmt.Fprintf(o.Progress, "  removed the files of %d uploaded photos from %s\n", len(uploads), o.DataDir)
		if err := errors.Join(errs...); err != nil {
			fmt.Fprintf(o.Progress, "  (some could not be removed: %v)\n", err)
		}
	}
	rep.Total = time.Since(start)
	return rep, nil
}

// rowSource feeds pgx's COPY from a generator, counting rows for the
// progress bar and stopping when the context ends (Ctrl-C).
type rowSource struct {
	ctx   context.Context
	row   []any
	next  func(row []any) (bool, error)
	count *counter
	err   error
}

func (s *rowSource) Next() bool {
	if s.err != nil {
		return false
	}
	if s.count.Load()&0xffff == 0 {
		if err := s.ctx.Err(); err != nil {
			s.err = err
			return false
		}
	}
	ok, err := s.next(s.row)
	if err != nil {
		s.err = err
		return false
	}
	if ok {
		s.count.Add(1)
	}
	return ok
}

func (s *rowSource) Values() ([]any, error) { return s.row, nil }
func (s *rowSource) Err() error             { return s.err }

// numbered feeds rows 1..n, each filled by fill: the tables whose row number
// is their id (users, photos, tags, comments).
func numbered(n int, fill func(id int64, row []any)) func([]any) (bool, error) {
	id := int64(0)
	return func(row []any) (bool, error) {
		if id++; id > int64(n) {
			return false, nil
		}
		fill(id, row)
		return true, nil
	}
}

// photoTagsSource also counts each tag's photos, for tags.photo_count.
func (p *plan) photoTagsSource() func([]any) (bool, error) {
	photo := int64(0)
	var pending []int
	p.tagCounts = make([]int64, len(p.tags))
	return func(row []any) (bool, error) {
		for len(pending) == 0 {
			if photo++; photo > int64(p.photos) {
				return false, nil
			}
			pending = p.photoTags(photo, pending[:0])
			for _, t := range pending {
				p.tagCounts[t]++
			}
		}
		row[0] = photo
		row[1] = int64(pending[0] + 1)
		pending = pending[1:]
		return true, nil
	}
}

func (p *plan) favoritesSource() func([]any) (bool, error) {
	rank := -1
	var user int64
	var pending []int64
	return func(row []any) (bool, error) {
		for len(pending) == 0 {
			if rank++; rank >= p.users {
				return false, nil
			}
			user, pending = p.userFavorites(rank, pending[:0])
		}
		photo := pending[0]
		pending = pending[1:]
		row[0], row[1] = user, photo
		row[2] = p.photoTime(photo).Add(time.Duration(1+photo%(60*24)) * time.Hour)
		return true, nil
	}
}
