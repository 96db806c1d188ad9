package app

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"flickrkillr/models/modeltest"
	"flickrkillr/models/tickets"
	"flickrkillr/seed"
)

// A test App at stage 10 (or above) that names no shards gets two fresh
// ones beside its database, which is the ring, and the ticket servers set
// up on the ring and shard 0.
func init() {
	testAppConfigs = append(testAppConfigs, func(t *testing.T, cfg *Config) {
		if cfg.Stage < federationStage || len(shardConfig.of(*cfg).URLs) > 0 {
			return
		}
		schema := stageSchema(t, federationStage)
		urls := []string{modeltest.NewDB(t, schema), modeltest.NewDB(t, schema)}
		ctx := context.Background()
		if err := tickets.Setup(ctx, cfg.DatabaseURL, 1, 0); err != nil {
			t.Fatal(err)
		}
		if err := tickets.Setup(ctx, urls[0], 2, 0); err != nil {
			t.Fatal(err)
		}
		shardConfig.set(cfg, func(s *shardSettings) { s.URLs = urls })
	})
}

// shardedTestApp is stage 10 on a ring and n shards seeded with o, and the
// single database of the same seed.
func shardedTestApp(t *testing.T, n int, o seed.Options) (sharded *testApp, single string) {
	t.Helper()
	schema := stageSchema(t, federationStage)
	ctx := context.Background()
	single = modeltest.NewDB(t, schema)
	if _, err := seed.Run(ctx, single, o); err != nil {
		t.Fatal(err)
	}
	ring := modeltest.NewDB(t, schema)
	var urls []string
	for range n {
		urls = append(urls, modeltest.NewDB(t, schema))
	}
	if _, err := seed.RunShards(ctx, ring, urls, o); err != nil {
		t.Fatal(err)
	}
	cfg := Config{DatabaseURL: ring, RedisURL: testRedisURL(t), DataDir: o.DataDir, Stage: federationStage}
	shardConfig.set(&cfg, func(s *shardSettings) { s.URLs = urls })
	return newTestAppWith(t, cfg), single
}

// footer is the page's stage line, the one part stage 9 and 10 differ in.
var footer = regexp.MustCompile(`Stage <strong>[^<]*</strong>:[^\n]*`)

func TestStage10ServesStage9sPagesOnTheSameData(t *testing.T) {
	data := t.TempDir()
	o := seed.Options{Users: 40, PhotosMin: 3, PhotosMax: 6, Seed: 7, DataDir: data}
	sharded, single := shardedTestApp(t, 2, o)
	nine := newTestAppOn(t, replicasStage, single, data, testRedisURL(t))
	var photos []int64
	var users, tags []string
	if err := nine.db.Raw(`SELECT id FROM photos ORDER BY id`).Scan(&photos).Error; err != nil {
		t.Fatal(err)
	}
	nine.db.Raw(`SELECT name FROM users ORDER BY id`).Scan(&users)
	nine.db.Raw(`SELECT name FROM tags WHERE photo_count > 0 ORDER BY name`).Scan(&tags)
	paths := []string{"/"}
	for _, id := range photos {
		paths = append(paths, fmt.Sprintf("/photos/%d", id))
	}
	for _, u := range users {
		paths = append(paths, "/users/"+u)
	}
	for _, tag := range tags {
		paths = append(paths, "/tags/"+tag)
	}
	a, b := nine.browser(t), sharded.browser(t)
	differ := 0
	for _, p := range paths {
		x, y := a.get(p), b.get(p)
		if x.Status != http.StatusOK || y.Status != x.Status {
			t.Errorf("%s: stage 9 %d, stage 10 %d", p, x.Status, y.Status)
			continue
		}
		if footer.ReplaceAllString(x.Body, "") != footer.ReplaceAllString(y.Body, "") {
			differ++
			if differ <= 3 {
				t.Errorf("%s differs between stage 9 and stage 10:\n%s", p, firstDifference(x.Body, y.Body))
			}
		}
	}
	t.Logf("%d pages compared, %d different", len(paths), differ)
	if len(photos) < 100 || len(tags) < 5 {
		t.Fatalf("the seed is too small to compare: %d photos, %d tags", len(photos), len(tags))
	}
}

// firstDifference is the lines around the first place two pages differ.
func firstDifference(x, y string) string {
	xl, yl := strings.Split(x, "\n"), strings.Split(y, "\n")
	for i := range min(len(xl), len(yl)) {
		if xl[i] != yl[i] {
			return fmt.Sprintf("line %d:\n  stage 9:  %s\n  stage 10: %s", i+1, xl[i], yl[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d lines", len(xl), len(yl))
}

func TestStage10WritesLandOnTheOwnersShard(t *testing.T) {
	data := t.TempDir()
	o := seed.Options{Users: 20, PhotosMin: 2, PhotosMax: 3, Seed: 3, DataDir: data}
	ta, _ := shardedTestApp(t, 2, o)
	b := ta.browser(t)
	b.signup("newcomer")
	f, err := theFederation.get(ta.deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	var shard int
	f.Ring().Raw(`SELECT user_id, shard FROM ring_users WHERE name = 'newcomer'`).Row().Scan(&id, &shard)
	if id == 0 {
		t.Fatal("the new user is not in the ring")
	}
	for i, s := range f.Shards() {
		var n int64
		s.DB.Raw(`SELECT count(*) FROM users WHERE id = ?`, id).Scan(&n)
		if n != 1 {
			t.Errorf("shard %d has %d rows of the new user (every shard keeps every user's public row)", i, n)
		}
	}
	res := b.upload(map[string]string{"title": "first", "tags": "sharded"}, "a.jpg", testJPEG(t, 40, 30))
	if res.Status != http.StatusOK && res.Status != http.StatusSeeOther {
		t.Fatalf("upload: %d %s", res.Status, res.Body)
	}
	var onHome, elsewhere int64
	for i, s := range f.Shards() {
		var n int64
		s.DB.Raw(`SELECT count(*) FROM photos WHERE user_id = ?`, id).Scan(&n)
		if i == shard {
			onHome = n
		} else {
			elsewhere += n
		}
	}
	if onHome != 1 || elsewhere != 0 {
		t.Errorf("the upload: %d photos on the user's shard, %d elsewhere", onHome, elsewhere)
	}
	mustContain(t, b.get("/users/newcomer"), "first")
	mustContain(t, b.get("/tags/sharded"), "first")
	var photo int64
	f.Shards()[shard].DB.Raw(`SELECT id FROM photos WHERE user_id = ?`, id).Scan(&photo)
	var ringOwner int64
	f.Ring().Raw(`SELECT user_id FROM ring_photos WHERE photo_id = ?`, photo).Scan(&ringOwner)
	if ringOwner != id {
		t.Errorf("the ring says photo %d is %d's, not %d's", photo, ringOwner, id)
	}
	if _, err := f.Photo(context.Background(), photo); err != nil {
		t.Error(err)
	}
	if page, err := f.UserPhotos(context.Background(), "newcomer", 0); err != nil || page.PhotoCount != 1 {
		t.Errorf("user page: %+v %v", page, err)
	}
}
