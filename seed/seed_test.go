package seed_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/jpeg"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"

	"flickrkillr/migrations"
	"flickrkillr/models"
	"flickrkillr/models/modeltest"
	"flickrkillr/models/tickets"
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
		parts = append(parts, scalar[string](t, c, `SELECT coalesce((`+q+`), 'empty')`))
	}
	return strings.Join(parts, ",")
}

// federationFingerprint hashes stage 10's seeded rows.
func federationFingerprint(t *testing.T, c *pgx.Conn) string {
	t.Helper()
	var parts []string
	for _, q := range []string{
		`SELECT md5(string_agg(concat_ws('|', user_id, name, shard), ',' ORDER BY user_id)) FROM ring_users`,
		`SELECT md5(string_agg(concat_ws('|', photo_id, user_id), ',' ORDER BY photo_id)) FROM ring_photos`,
		`SELECT md5(string_agg(concat_ws('|', user_id, photo_id, owner_id, created_at), ',' ORDER BY user_id, photo_id)) FROM user_favorites`,
	} {
		parts = append(parts, scalar[string](t, c, `SELECT coalesce((`+q+`), 'empty')`))
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

// lines reads a query's one text column.
func lines(t *testing.T, c *pgx.Conn, sql string) []string {
	t.Helper()
	rows, err := c.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return list
}

// sameRows fails when got (gathered from several databases) is not want,
// row for row: a row missing, added or written twice.
func sameRows(t *testing.T, what string, got, want []string) {
	t.Helper()
	got, want = slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Fatalf("%s: %d rows across the shards, %d in the unsharded seed, or different rows", what, len(got), len(want))
	}
}

// needFederation skips a test of the sharded seed in a build without stage
// 10's tables (the workshop tags of stages 0-9 hold the seed, not the
// migration).
func needFederation(t *testing.T) {
	t.Helper()
	if migrations.Latest() < 5 {
		t.Skip("this build has no migrations/00005_federation.sql (a workshop tag before stage 10)")
	}
}

// shardedSeed seeds a ring and two shards, and one database with the same
// options unsharded, to compare.
func shardedSeed(t *testing.T) (whole, ring *pgx.Conn, shards []*pgx.Conn) {
	t.Helper()
	needFederation(t)
	wholeURL, ringURL := modeltest.NewDB(t, migrations.Latest()), modeltest.NewDB(t, migrations.Latest())
	shardURLs := []string{modeltest.NewDB(t, migrations.Latest()), modeltest.NewDB(t, migrations.Latest())}
	dataDir := t.TempDir()
	if _, err := seed.Run(context.Background(), wholeURL, small(dataDir)); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	o := small(dataDir)
	o.Progress = &out
	rep, err := seed.RunShards(context.Background(), ringURL, shardURLs, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"shard 0  photos", "shard 1  user_favorites", "ring     ring_photos"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("progress has no line %q:\n%s", want, out.String())
		}
	}
	if rep.Skipped || rep.Total <= 0 || len(rep.Tables) == 0 {
		t.Fatalf("report: %+v", rep)
	}
	for _, u := range shardURLs {
		shards = append(shards, connect(t, u))
	}
	return connect(t, wholeURL), connect(t, ringURL), shards
}

func TestShardedSeedSpreadsTheSameRows(t *testing.T) {
	whole, ring, dbs := shardedSeed(t)
	// across gathers a query's rows from every shard, checking first that
	// each row is on the home shard of the user id in the column home.
	across := func(t *testing.T, sql string, home string) []string {
		t.Helper()
		var all []string
		for k, c := range dbs {
			if home != "" {
				for _, id := range lines(t, c, `SELECT (`+home+`)::text FROM (`+sql+`) x`) {
					var user int64
					fmt.Sscan(id, &user)
					if models.HomeShard(user, len(dbs)) != k {
						t.Fatalf("a row of %q is on shard %d, its user %d lives on shard %d", sql, k, user, models.HomeShard(user, len(dbs)))
					}
				}
			}
			all = append(all, lines(t, c, `SELECT line FROM (`+sql+`) x`)...)
		}
		return all
	}

	t.Run("every photo once, on its owner's shard", func(t *testing.T) {
		q := `SELECT user_id, concat_ws('|', id, user_id, title, description, image_key, width, height, created_at) AS line FROM photos`
		sameRows(t, "photos", across(t, q, "user_id"), lines(t, whole, `SELECT line FROM (`+q+`) x`))
	})
	t.Run("a photo's tags, comments and favorites on the photo's shard", func(t *testing.T) {
		for _, q := range []string{
			`SELECT p.user_id, concat_ws('|', pt.photo_id, pt.tag_id) AS line FROM photo_tags pt JOIN photos p ON p.id = pt.photo_id`,
			`SELECT p.user_id, concat_ws('|', c.id, c.photo_id, c.user_id, c.body, c.created_at) AS line FROM comments c JOIN photos p ON p.id = c.photo_id`,
			`SELECT p.user_id, concat_ws('|', f.user_id, f.photo_id, f.created_at) AS line FROM favorites f JOIN photos p ON p.id = f.photo_id`,
		} {
			sameRows(t, q, across(t, q, "user_id"), lines(t, whole, `SELECT line FROM (`+q+`) x`))
		}
		// The joins above drop a row whose photo is not on its shard.
		for k, c := range dbs {
			for _, table := range []string{"photo_tags", "comments", "favorites"} {
				if n := scalar[int64](t, c, `SELECT count(*) FROM `+table+` x WHERE NOT EXISTS (SELECT 1 FROM photos p WHERE p.id = x.photo_id)`); n != 0 {
					t.Fatalf("shard %d: %d %s rows without their photo", k, n, table)
				}
			}
		}
	})
	t.Run("every favorite also on the faver's shard", func(t *testing.T) {
		got := across(t, `SELECT user_id, concat_ws('|', user_id, photo_id, owner_id, created_at) AS line FROM user_favorites`, "user_id")
		want := lines(t, whole, `SELECT concat_ws('|', f.user_id, f.photo_id, p.user_id, f.created_at) FROM favorites f JOIN photos p ON p.id = f.photo_id`)
		sameRows(t, "user_favorites", got, want)
	})
	t.Run("every user on every shard and on the ring", func(t *testing.T) {
		// Each seed hashes the password once, with its own salt.
		want := lines(t, whole, `SELECT concat_ws('|', id, name, display_name, created_at) FROM users`)
		for _, c := range append([]*pgx.Conn{ring}, dbs...) {
			sameRows(t, "users", lines(t, c, `SELECT concat_ws('|', id, name, display_name, created_at) FROM users`), want)
		}
		hashes := map[string]bool{}
		for _, c := range append([]*pgx.Conn{ring}, dbs...) {
			for _, h := range lines(t, c, `SELECT DISTINCT encode(password_hash, 'hex') FROM users`) {
				hashes[h] = true
			}
		}
		if len(hashes) != 1 {
			t.Fatalf("%d distinct password hashes over the ring and the shards, want the seed's one", len(hashes))
		}
	})
	t.Run("tag counts per shard add up to the unsharded counts", func(t *testing.T) {
		want := map[string]int64{}
		for _, l := range lines(t, whole, `SELECT concat_ws('|', id, name, photo_count) FROM tags`) {
			name, n, _ := strings.Cut(l[strings.Index(l, "|")+1:], "|")
			var count int64
			fmt.Sscan(n, &count)
			want[name] = count
		}
		got := map[string]int64{}
		for k, c := range dbs {
			if n := scalar[int64](t, c, `SELECT count(*) FROM tags t WHERE photo_count <> (SELECT count(*) FROM photo_tags pt WHERE pt.tag_id = t.id)`); n != 0 {
				t.Fatalf("shard %d: %d tags whose photo_count is not the shard's photo_tags", k, n)
			}
			sameRows(t, "tag ids and names", lines(t, c, `SELECT concat_ws('|', id, name) FROM tags`), lines(t, whole, `SELECT concat_ws('|', id, name) FROM tags`))
			for _, l := range lines(t, c, `SELECT concat_ws('|', name, photo_count) FROM tags`) {
				name, n, _ := strings.Cut(l, "|")
				var count int64
				fmt.Sscan(n, &count)
				got[name] += count
			}
		}
		if !maps.Equal(got, want) {
			t.Fatal("the shards' tag counts do not add up to the unsharded seed's")
		}
	})
	t.Run("the ring knows every user's shard and every photo's owner", func(t *testing.T) {
		var want []string
		for _, l := range lines(t, whole, `SELECT concat_ws('|', id, name) FROM users`) {
			var id int64
			fmt.Sscan(l[:strings.Index(l, "|")], &id)
			want = append(want, fmt.Sprintf("%s|%d", l, models.HomeShard(id, len(dbs))))
		}
		sameRows(t, "ring_users", lines(t, ring, `SELECT concat_ws('|', user_id, name, shard) FROM ring_users`), want)
		sameRows(t, "ring_photos", lines(t, ring, `SELECT concat_ws('|', photo_id, user_id) FROM ring_photos`), lines(t, whole, `SELECT concat_ws('|', id, user_id) FROM photos`))
	})
	t.Run("the ring holds no content", func(t *testing.T) {
		for _, table := range []string{"photos", "photo_tags", "tags", "favorites", "comments", "user_favorites"} {
			if n := scalar[int64](t, ring, `SELECT count(*) FROM `+table); n != 0 {
				t.Fatalf("the ring has %d %s rows", n, table)
			}
		}
	})
	t.Run("the ticket servers issue ids above the seed's", func(t *testing.T) {
		top := scalar[int64](t, whole, `SELECT GREATEST((SELECT max(id) FROM users), (SELECT max(id) FROM photos), (SELECT max(id) FROM comments))`)
		for i, c := range []*pgx.Conn{ring, dbs[0]} {
			id := scalar[int64](t, c, `SELECT nextval('`+tickets.Sequence+`')`)
			if id <= top || id%2 != int64(1-i) {
				t.Fatalf("ticket server %d issued %d: want an id above %d, odd on the ring, even on shard 0", i, id, top)
			}
		}
	})
}

func TestShardedSeedRefusesAndReplaces(t *testing.T) {
	needFederation(t)
	ringURL := modeltest.NewDB(t, migrations.Latest())
	shardURLs := []string{modeltest.NewDB(t, migrations.Latest()), modeltest.NewDB(t, migrations.Latest())}
	dataDir := t.TempDir()
	if _, err := seed.RunShards(context.Background(), ringURL, shardURLs, small(dataDir)); err != nil {
		t.Fatal(err)
	}
	_, err := seed.RunShards(context.Background(), ringURL, shardURLs, small(dataDir))
	if !errors.Is(err, seed.ErrNotEmpty) || !strings.Contains(err.Error(), "--reset") {
		t.Fatalf("second sharded seed: %v, want ErrNotEmpty naming --reset", err)
	}
	conns := []*pgx.Conn{connect(t, ringURL), connect(t, shardURLs[0]), connect(t, shardURLs[1])}
	var before []string
	for _, c := range conns {
		before = append(before, fingerprint(t, c)+federationFingerprint(t, c))
	}

	// Interrupted while the shards load: no database changes.
	ctx, cancel := context.WithCancel(context.Background())
	o := small(dataDir)
	o.Reset, o.Seed = true, 99
	o.Progress = cancelAfter{"shard 1  photos", cancel}
	if _, err := seed.RunShards(ctx, ringURL, shardURLs, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted sharded seed returned %v, want context.Canceled", err)
	}
	for i, c := range conns {
		if fingerprint(t, c)+federationFingerprint(t, c) != before[i] {
			t.Fatalf("an interrupted sharded seed changed database %d", i)
		}
	}

	o = small(dataDir)
	o.Reset, o.Users = true, 10
	if _, err := seed.RunShards(context.Background(), ringURL, shardURLs, o); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		if n := scalar[int64](t, c, `SELECT count(*) FROM users`); n != 10 {
			t.Fatalf("database %d has %d users after --reset with 10", i, n)
		}
	}
	if n := scalar[int64](t, conns[0], `SELECT count(*) FROM ring_users`); n != 10 {
		t.Fatalf("%d ring_users after --reset with 10", n)
	}
}
