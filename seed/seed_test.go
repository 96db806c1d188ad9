package seed_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/jpeg"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"

	"flickrkillr/migrations"
	"flickrkillr/models"
	"flickrkillr/models/modeltest"
	"flickrkillr/seed"
)

func small(dataDir string) seed.Options {
	return seed.Options{Users: 60, PhotosMin: 2, PhotosMax: 4, Seed: 7, DataDir: dataDir}
}

func connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func scalar[T any](t *testing.T, c *pgx.Conn, sql string) T {
	t.Helper()
	var v T
	if err := c.QueryRow(context.Background(), sql).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// fingerprint hashes every seeded row, to compare two seeds.
func fingerprint(t *testing.T, c *pgx.Conn) string {
	t.Helper()
	var parts []string
	for _, q := range []string{
		`SELECT md5(string_agg(concat_ws('|', id, name, display_name, created_at), ',' ORDER BY id)) FROM users`,
		`SELECT md5(string_agg(concat_ws('|', id, user_id, title, description, image_key, width, height, created_at), ',' ORDER BY id)) FROM photos`,
		`SELECT md5(string_agg(concat_ws('|', photo_id, tag_id), ',' ORDER BY photo_id, tag_id)) FROM photo_tags`,
		`SELECT md5(string_agg(concat_ws('|', id, name, photo_count), ',' ORDER BY id)) FROM tags`,
		`SELECT md5(string_agg(concat_ws('|', user_id, photo_id, created_at), ',' ORDER BY user_id, photo_id)) FROM favorites`,
		`SELECT md5(string_agg(concat_ws('|', id, photo_id, user_id, body, created_at), ',' ORDER BY id)) FROM comments`,
	} {
		parts = append(parts, scalar[string](t, c, q))
	}
	return strings.Join(parts, ",")
}

func TestSeedSmallDataSet(t *testing.T) {
	dsn := modeltest.NewDB(t, migrations.Latest())
	dataDir := t.TempDir()
	c := connect(t, dsn)
	indexes := scalar[int64](t, c, `SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'`)
	foreign := scalar[int64](t, c, `SELECT count(*) FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND contype = 'f'`)
	rep, err := seed.Run(context.Background(), dsn, small(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Skipped || rep.Total <= 0 {
		t.Fatalf("report: %+v", rep)
	}

	t.Run("users user1…userN with photos in range", func(t *testing.T) {
		if n := scalar[int64](t, c, `SELECT count(*) FROM users`); n != 60 {
			t.Fatalf("%d users, want 60", n)
		}
		if name := scalar[string](t, c, `SELECT name FROM users ORDER BY id DESC LIMIT 1`); name != "user60" {
			t.Fatalf("last user is %q", name)
		}
		lo := scalar[int64](t, c, `SELECT min(n) FROM (SELECT count(p.id) n FROM users u LEFT JOIN photos p ON p.user_id = u.id GROUP BY u.id) c`)
		hi := scalar[int64](t, c, `SELECT max(n) FROM (SELECT count(p.id) n FROM users u LEFT JOIN photos p ON p.user_id = u.id GROUP BY u.id) c`)
		if lo < 2 || hi > 4 {
			t.Fatalf("photos per user %d-%d, want within 2-4", lo, hi)
		}
	})
	t.Run("times are consistent", func(t *testing.T) {
		if n := scalar[int64](t, c, `SELECT count(*) FROM photos p JOIN users u ON u.id = p.user_id WHERE p.created_at < u.created_at`); n != 0 {
			t.Fatalf("%d photos older than their owner's account", n)
		}
		if n := scalar[int64](t, c, `SELECT count(*) FROM comments c JOIN photos p ON p.id = c.photo_id WHERE c.created_at < p.created_at`); n != 0 {
			t.Fatalf("%d comments older than their photo", n)
		}
		if n := scalar[int64](t, c, `SELECT count(*) FROM (SELECT created_at, lag(created_at) OVER (PARTITION BY photo_id ORDER BY id) prev FROM comments) x WHERE created_at < prev`); n != 0 {
			t.Fatalf("%d comments older than the comment before them on the same photo: the photo page shows them in id order", n)
		}
		if n := scalar[int64](t, c, `SELECT count(*) FROM (SELECT id, created_at, lag(created_at) OVER (ORDER BY id) prev FROM photos) x WHERE created_at < prev - interval '2 hours'`); n != 0 {
			t.Fatalf("%d photos out of time order: ids should follow upload time", n)
		}
	})
	t.Run("tag counts match photo_tags", func(t *testing.T) {
		if n := scalar[int64](t, c, `SELECT count(*) FROM tags t WHERE photo_count <> (SELECT count(*) FROM photo_tags pt WHERE pt.tag_id = t.id)`); n != 0 {
			t.Fatalf("%d tags with a wrong photo_count", n)
		}
		if n := scalar[int64](t, c, `SELECT count(*) FROM tags`); n != 1000 {
			t.Fatalf("vocabulary of %d tags, want 1000", n)
		}
	})
	t.Run("popularity is skewed", func(t *testing.T) {
		top := scalar[int64](t, c, `SELECT max(photo_count) FROM tags`)
		median := scalar[float64](t, c, `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY photo_count) FROM tags`)
		if float64(top) < 10*median+10 {
			t.Fatalf("top tag has %d photos, median %.0f: not Zipf-like", top, median)
		}
	})
	t.Run("every user can log in with the documented password", func(t *testing.T) {
		if n := scalar[int64](t, c, `SELECT count(DISTINCT password_hash) FROM users`); n != 1 {
			t.Fatalf("%d distinct hashes, want one computed once", n)
		}
		hash := scalar[[]byte](t, c, `SELECT password_hash FROM users WHERE name = 'user1'`)
		if err := bcrypt.CompareHashAndPassword(hash, []byte(seed.Password)); err != nil {
			t.Fatalf("user1's hash does not match seed.Password: %v", err)
		}
	})
	t.Run("images are real JPEGs", func(t *testing.T) {
		key := scalar[string](t, c, `SELECT image_key FROM photos ORDER BY id LIMIT 1`)
		for _, name := range []string{key + ".jpg", key + "_thumb.jpg"} {
			b, err := os.ReadFile(filepath.Join(dataDir, key[:2], name))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := jpeg.Decode(bytes.NewReader(b)); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	})
	t.Run("constraints and indexes are back", func(t *testing.T) {
		if n := scalar[int64](t, c, `SELECT count(*) FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND contype = 'f' AND convalidated`); n != foreign {
			t.Fatalf("%d validated foreign keys after the seed, %d before", n, foreign)
		}
		if n := scalar[int64](t, c, `SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'`); n != indexes {
			t.Fatalf("%d indexes after the seed, %d before", n, indexes)
		}
		if _, err := c.Exec(context.Background(), `INSERT INTO users (name, display_name, password_hash) VALUES ('new', 'New', '')`); err != nil {
			t.Fatalf("the id sequence was not moved past the seeded ids: %v", err)
		}
	})
}

func TestSeedIsDeterministic(t *testing.T) {
	a, b := modeltest.NewDB(t, migrations.Latest()), modeltest.NewDB(t, migrations.Latest())
	for _, dsn := range []string{a, b} {
		if _, err := seed.Run(context.Background(), dsn, small(t.TempDir())); err != nil {
			t.Fatal(err)
		}
	}
	if fa, fb := fingerprint(t, connect(t, a)), fingerprint(t, connect(t, b)); fa != fb {
		t.Fatal("the same options gave different rows")
	}
	other := small(t.TempDir())
	other.Seed = 8
	c := modeltest.NewDB(t, migrations.Latest())
	if _, err := seed.Run(context.Background(), c, other); err != nil {
		t.Fatal(err)
	}
	if fingerprint(t, connect(t, a)) == fingerprint(t, connect(t, c)) {
		t.Fatal("a different --seed gave the same rows")
	}
}

func TestSeedRefusesNonEmptyDatabase(t *testing.T) {
	dsn := modeltest.NewDB(t, 1)
	dataDir := t.TempDir()
	if _, err := seed.Run(context.Background(), dsn, small(dataDir)); err != nil {
		t.Fatal(err)
	}
	_, err := seed.Run(context.Background(), dsn, small(dataDir))
	if !errors.Is(err, seed.ErrNotEmpty) || !strings.Contains(err.Error(), "--reset") {
		t.Fatalf("second seed: %v, want ErrNotEmpty naming --reset", err)
	}
	o := small(dataDir)
	o.IfEmpty = true
	if rep, err := seed.Run(context.Background(), dsn, o); err != nil || !rep.Skipped {
		t.Fatalf("--if-empty on a seeded database: %+v, %v", rep, err)
	}
	// A photo someone uploaded: --reset removes its row and, once the new
	// data is committed, its files; the seed's image pool stays.
	store, err := models.NewImageStore(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	upload := models.NewImageKey()
	var files []string
	for _, v := range []models.Variant{models.Original, models.Thumbnail} {
		path, _ := store.Path(upload, v)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("jpeg"), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, path)
	}
	c := connect(t, dsn)
	if _, err := c.Exec(context.Background(), `INSERT INTO photos (user_id, title, description, image_key, width, height, created_at)
		VALUES (1, 'mine', '', $1, 1, 1, now())`, upload); err != nil {
		t.Fatal(err)
	}
	pool, _ := filepath.Glob(filepath.Join(dataDir, "se", "seed7-*.jpg"))

	o = small(dataDir)
	o.Reset, o.Users = true, 10
	if _, err := seed.Run(context.Background(), dsn, o); err != nil {
		t.Fatal(err)
	}
	if n := scalar[int64](t, c, `SELECT count(*) FROM users`); n != 10 {
		t.Fatalf("%d users after --reset with 10, want 10", n)
	}
	for _, f := range files {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after --reset (%v)", f, err)
		}
	}
	if after, _ := filepath.Glob(filepath.Join(dataDir, "se", "seed7-*.jpg")); len(pool) == 0 || len(after) != len(pool) {
		t.Errorf("the seed's image pool had %d files and has %d after --reset", len(pool), len(after))
	}
}

// cancelAfter cancels the seed as soon as the named table's line is printed.
type cancelAfter struct {
	table  string
	cancel context.CancelFunc
}

func (w cancelAfter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.table) {
		w.cancel()
	}
	return len(p), nil
}

func TestInterruptedSeedLeavesTheDatabaseAsItWas(t *testing.T) {
	dsn := modeltest.NewDB(t, migrations.Latest())
	dataDir := t.TempDir()
	if _, err := seed.Run(context.Background(), dsn, small(dataDir)); err != nil {
		t.Fatal(err)
	}
	c := connect(t, dsn)
	before := fingerprint(t, c)
	foreign := scalar[int64](t, c, `SELECT count(*) FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND contype = 'f'`)

	ctx, cancel := context.WithCancel(context.Background())
	o := small(dataDir)
	o.Reset, o.Seed = true, 99
	o.Progress = cancelAfter{"users", cancel}
	_, err := seed.Run(ctx, dsn, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted seed returned %v, want context.Canceled", err)
	}
	if after := fingerprint(t, c); after != before {
		t.Fatal("an interrupted seed changed the data")
	}
	if n := scalar[int64](t, c, `SELECT count(*) FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND contype = 'f'`); n != foreign {
		t.Fatalf("%d foreign keys after an interrupted seed, %d before", n, foreign)
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    seed.Options
		want string
	}{
		{"no users", seed.Options{Users: 0, PhotosMin: 1, PhotosMax: 2, DataDir: "x"}, "--users"},
		{"range backwards", seed.Options{Users: 1, PhotosMin: 5, PhotosMax: 2, DataDir: "x"}, "--photos-per-user"},
		{"no data dir", seed.Options{Users: 1, PhotosMin: 1, PhotosMax: 2}, "DATA_DIR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.o.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

// BenchmarkSeed measures the seed on a fresh schema; rows/s is over all
// tables. The full-scale figure comes from `make seed` (see docs/seed.md).
func BenchmarkSeed(b *testing.B) {
	for _, users := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			dsn := modeltest.NewDB(b, migrations.Latest())
			dataDir := b.TempDir()
			var rows int64
			for i := 0; b.Loop(); i++ {
				o := seed.Options{Users: users, PhotosMin: 10, PhotosMax: 20, Seed: 1, DataDir: dataDir, Reset: true}
				rep, err := seed.Run(context.Background(), dsn, o)
				if err != nil {
					b.Fatal(err)
				}
				for _, t := range rep.Tables {
					rows += t.Rows
				}
			}
			b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
