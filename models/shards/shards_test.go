package shards_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"flickrkillr/models"
	"flickrkillr/models/modeltest"
	"flickrkillr/models/shards"
	"flickrkillr/models/tickets"
)

const schema = 5

// recorder is the ticket servers, remembering every id in the order issued,
// so a single database can be given the same ids in the same order.
type recorder struct {
	*tickets.Tickets
	mu  sync.Mutex
	ids []int64
}

func (r *recorder) Next(ctx context.Context) (int64, error) {
	id, err := r.Tickets.Next(ctx)
	r.mu.Lock()
	r.ids = append(r.ids, id)
	r.mu.Unlock()
	return id, err
}

// replay gives the recorded ids again, in order.
type replay struct {
	r *recorder
	i int
}

func (p *replay) next(context.Context) (int64, error) {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if p.i >= len(p.r.ids) {
		return 0, fmt.Errorf("replay: only %d ids were issued", len(p.r.ids))
	}
	p.i++
	return p.r.ids[p.i-1], nil
}

type fed struct {
	*shards.Federation
	ring    *gorm.DB
	handles []*gorm.DB
	ids     *recorder
	ringURL string
	urls    []string
	through func(i int, url string) string // a test's way to a shard (a proxy), or nil
}

func open(t *testing.T, url string) *gorm.DB {
	t.Helper()
	db, err := models.Open(context.Background(), url, models.Options{MaxOpenConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close(db) })
	return db
}

// newFed is a ring and n shards, each a database of the test cluster.
func newFed(t *testing.T, n int, o shards.Options) *fed {
	return newFedThrough(t, n, o, nil)
}

// newFedThrough is newFed whose shard i is reached at through(i, url).
func newFedThrough(t *testing.T, n int, o shards.Options, through func(i int, url string) string) *fed {
	t.Helper()
	ctx := context.Background()
	ringURL := modeltest.NewDB(t, schema)
	f := &fed{ring: open(t, ringURL), ringURL: ringURL}
	var hs []shards.Handle
	var urls []string
	for i := range n {
		u := modeltest.NewDB(t, schema)
		urls = append(urls, u)
		if through != nil {
			u = through(i, u)
		}
		db := open(t, u)
		f.handles = append(f.handles, db)
		hs = append(hs, shards.Handle{DB: db})
	}
	if err := tickets.Setup(ctx, ringURL, 1, 0); err != nil {
		t.Fatal(err)
	}
	if err := tickets.Setup(ctx, urls[0], 2, 0); err != nil {
		t.Fatal(err)
	}
	f.urls = urls
	f.ids = &recorder{Tickets: tickets.New([]tickets.Server{{Name: "odd", DB: f.ring}, {Name: "even", DB: f.handles[0]}}, tickets.Options{})}
	o.RingTTL = 50 * time.Millisecond
	f.Federation = shards.New(f.ring, hs, f.ids, o)
	return f
}

// single is stage 9's data layer on one database, given the ids the
// federation issued, in the same order.
type single struct {
	db     *gorm.DB
	photos *models.PhotoStore
	ids    *replay
}

func newSingle(t *testing.T, ids *recorder) *single {
	db := open(t, modeltest.NewDB(t, schema))
	s := &single{db: db, ids: &replay{r: ids}}
	s.photos = models.NewPhotoStore(db, models.Sequential{}).WithIDs(s.ids.next)
	return s
}

func (s *single) createUser(t *testing.T, u models.User) {
	t.Helper()
	if _, err := s.ids.next(context.Background()); err != nil { // the user's id
		t.Fatal(err)
	}
	err := s.db.Exec(`INSERT INTO users (id, name, display_name, password_hash, created_at) VALUES (?, ?, ?, ?, ?)`,
		u.ID, u.Name, u.DisplayName, u.PasswordHash, u.CreatedAt).Error
	if err != nil {
		t.Fatal(err)
	}
}

// both runs the same writes on the federation and on one database.
type both struct {
	t   *testing.T
	f   *fed
	one *single
}

func (b both) user(name string) models.User {
	b.t.Helper()
	u, err := b.f.Create(context.Background(), name, "User "+name, []byte("x"))
	if err != nil {
		b.t.Fatal(err)
	}
	b.one.createUser(b.t, u)
	return u
}

func (b both) photo(owner models.User, title string, tags ...string) int64 {
	b.t.Helper()
	p := models.NewPhoto{Owner: models.PublicUser{ID: owner.ID, Name: owner.Name}, Title: title, Tags: tags, ImageKey: "k" + title, Width: 4, Height: 3}
	id, err := b.f.CreatePhoto(context.Background(), p)
	if err != nil {
		b.t.Fatal(err)
	}
	id1, err := b.one.photos.CreatePhoto(context.Background(), p)
	if err != nil || id1 != id {
		b.t.Fatalf("single database: photo %d, want %d: %v", id1, id, err)
	}
	return id
}

func (b both) comment(photo int64, by models.User, body string) {
	b.t.Helper()
	for _, g := range []models.Gallery{b.f, b.one.photos} {
		if err := g.AddComment(context.Background(), photo, by.ID, body); err != nil {
			b.t.Fatal(err)
		}
	}
}

func (b both) favorite(photo int64, by models.User, on bool) {
	b.t.Helper()
	for _, g := range []models.Gallery{b.f, b.one.photos} {
		if err := g.SetFavorite(context.Background(), by.ID, photo, on); err != nil {
			b.t.Fatal(err)
		}
	}
}

// world makes users on every shard, photos with shared tags, comments and
// favorites across shards, on both.
func world(t *testing.T, n int) (both, []models.User, []int64) {
	return worldThrough(t, n, nil)
}

func worldThrough(t *testing.T, n int, through func(i int, url string) string) (both, []models.User, []int64) {
	f := newFedThrough(t, n, shards.Options{}, through)
	b := both{t: t, f: f, one: newSingle(t, f.ids)}
	var users []models.User
	for i := range 12 {
		users = append(users, b.user(fmt.Sprintf("u%02d", i)))
	}
	var photos []int64
	tags := []string{"sea", "city", "night", "cat"}
	for i := range 60 {
		owner := users[i%len(users)]
		photos = append(photos, b.photo(owner, fmt.Sprintf("p%02d", i), tags[i%4], tags[(i%4+1+(i/4)%3)%4]))
	}
	for i, p := range photos {
		b.comment(p, users[(i+5)%len(users)], fmt.Sprintf("c%d", i))
		if i%3 == 0 {
			b.favorite(p, users[(i+7)%len(users)], true)
		}
	}
	return b, users, photos
}

func TestPagesAcrossShardsAreTheSingleDatabasesPages(t *testing.T) {
	b, users, photos := world(t, 2)
	ctx := context.Background()
	b.favorite(photos[3], users[10], false) // one removed again
	check := func(what string, got, want any, errGot, errWant error) {
		t.Helper()
		got, want = sameClock(got), sameClock(want)
		if errGot != nil || errWant != nil {
			t.Fatalf("%s: %v / %v", what, errGot, errWant)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s differs:\n shards: %+v\n single: %+v", what, got, want)
		}
	}
	hg, eg := b.f.Home(ctx)
	hw, ew := b.one.photos.Home(ctx)
	check("home", hg, hw, eg, ew)
	for _, p := range photos {
		g, eg := b.f.Photo(ctx, p)
		w, ew := b.one.photos.Photo(ctx, p)
		check(fmt.Sprintf("photo %d", p), g, w, eg, ew)
		for _, u := range users[:3] {
			fg, eg := b.f.IsFavorite(ctx, u.ID, p)
			fw, ew := b.one.photos.IsFavorite(ctx, u.ID, p)
			check("favorite", fg, fw, eg, ew)
		}
	}
	for _, u := range users {
		for before := int64(0); ; {
			g, eg := b.f.UserPhotos(ctx, u.Name, before)
			w, ew := b.one.photos.UserPhotos(ctx, u.Name, before)
			check("user "+u.Name, g, w, eg, ew)
			if before = w.Grid.Next; before == 0 {
				break
			}
		}
	}
	for _, tag := range []string{"sea", "city", "night", "cat"} {
		for before := int64(0); ; {
			g, eg := b.f.TagPhotos(ctx, tag, before)
			w, ew := b.one.photos.TagPhotos(ctx, tag, before)
			g.Tag.ID, w.Tag.ID = 0, 0 // a tag's id is each shard's own
			check("tag "+tag, g, w, eg, ew)
			if before = w.Grid.Next; before == 0 {
				break
			}
		}
	}
	if _, err := b.f.Photo(ctx, 999999); err == nil {
		t.Error("a photo that does not exist was found")
	}
	st := b.f.Stats()
	if st.PagesOne == 0 || st.PagesSpread > st.PagesOne/10 {
		t.Errorf("photo and user pages: %d on one shard, %d asked around", st.PagesOne, st.PagesSpread)
	}
	for _, s := range st.Shards {
		if s.Writes == 0 {
			t.Errorf("%s took no writes: the users did not spread (%+v)", s.Name, st.Shards)
		}
	}
	// Every favorite's faver's side is on the faver's shard.
	var sides int64
	for _, db := range b.f.handles {
		var n int64
		db.Raw(`SELECT count(*) FROM user_favorites`).Scan(&n)
		sides += n
	}
	var favs int64
	b.one.db.Raw(`SELECT count(*) FROM favorites`).Scan(&favs)
	if sides != favs {
		t.Errorf("faver's sides: %d, favorites: %d", sides, favs)
	}
}

// sameClock clears what each database stamps itself (created_at from its
// own now(), a tag's id), which the two sides of a test do at different
// moments: seeded data has the same stamps on both.
func sameClock(v any) any {
	switch p := v.(type) {
	case models.PhotoPage:
		p.Photo.CreatedAt = time.Time{}
		p.Comments = slices.Clone(p.Comments)
		for i := range p.Comments {
			p.Comments[i].CreatedAt = time.Time{}
		}
		return p
	case models.HomePage:
		p.PopularTags = slices.Clone(p.PopularTags)
		for i := range p.PopularTags {
			p.PopularTags[i].ID = 0
		}
		return p
	}
	return v
}

// counts is every row of a user's across the shards.
func counts(t *testing.T, f *fed, user int64) map[string]int64 {
	t.Helper()
	c := map[string]int64{}
	for _, db := range f.handles {
		for table, q := range map[string]string{
			"photos":         `SELECT count(*) FROM photos WHERE user_id = ?`,
			"photo_tags":     `SELECT count(*) FROM photo_tags pt JOIN photos p ON p.id = pt.photo_id WHERE p.user_id = ?`,
			"comments":       `SELECT count(*) FROM comments c JOIN photos p ON p.id = c.photo_id WHERE p.user_id = ?`,
			"favorites":      `SELECT count(*) FROM favorites fv JOIN photos p ON p.id = fv.photo_id WHERE p.user_id = ?`,
			"user_favorites": `SELECT count(*) FROM user_favorites WHERE user_id = ?`,
		} {
			var n int64
			if err := db.Raw(q, user).Scan(&n).Error; err != nil {
				t.Fatal(err)
			}
			c[table] += n
		}
	}
	return c
}

func shardOf(t *testing.T, f *fed, user int64) int {
	var s int
	if err := f.ring.Raw(`SELECT shard FROM ring_users WHERE user_id = ?`, user).Scan(&s).Error; err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMoveAUserInterruptedAndResumed(t *testing.T) {
	b, users, photos := world(t, 2)
	ctx := context.Background()
	u := users[1]
	from := shardOf(t, b.f, u.ID)
	to := 1 - from
	before := counts(t, b.f, u.ID)
	if before["photos"] == 0 || before["comments"] == 0 {
		t.Fatalf("the user has nothing to move: %v", before)
	}
	// To the shard that holds them: a no-op that succeeds.
	if r, err := b.f.Move(ctx, u.ID, from, nil); err != nil || !r.NoOp {
		t.Fatalf("move to the same shard: %+v, %v", r, err)
	}
	// Interrupted: cancelled during the grace after the switch.
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		for shardOf(t, b.f, u.ID) == from {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if _, err := b.f.Move(cctx, u.ID, to, t.Logf); err == nil {
		t.Fatal("the interrupted move succeeded")
	}
	var phase string
	b.f.ring.Raw(`SELECT phase FROM shard_moves WHERE user_id = ?`, u.ID).Scan(&phase)
	if phase != "switched" {
		t.Fatalf("the interrupted move's phase: %q", phase)
	}
	// A moved user's pages and writes work meanwhile.
	if _, err := b.f.UserPhotos(ctx, u.Name, 0); err != nil {
		t.Fatal(err)
	}
	b.comment(photos[1], users[4], "during the move")
	r, err := b.f.Move(ctx, u.ID, to, t.Logf)
	if err != nil || r.Resumed != "switched" {
		t.Fatalf("resumed move: %+v, %v", r, err)
	}
	after := counts(t, b.f, u.ID)
	before["comments"]++
	if !reflect.DeepEqual(before, after) {
		t.Errorf("rows before %v, after %v", before, after)
	}
	var onOld int64
	b.f.handles[from].Raw(`SELECT count(*) FROM photos WHERE user_id = ?`, u.ID).Scan(&onOld)
	if onOld != 0 || shardOf(t, b.f, u.ID) != to {
		t.Errorf("after the move: %d photos left on the old shard, the ring says %d", onOld, shardOf(t, b.f, u.ID))
	}
	// Same pages as the single database after the move.
	g, _ := b.f.UserPhotos(ctx, u.Name, 0)
	w, _ := b.one.photos.UserPhotos(ctx, u.Name, 0)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("user page after the move:\n%+v\n%+v", g, w)
	}
	hg, _ := b.f.Home(ctx)
	hw, _ := b.one.photos.Home(ctx)
	if !reflect.DeepEqual(sameClock(hg), sameClock(hw)) {
		t.Errorf("home after the move:\n%+v\n%+v", hg, hw)
	}
}

func TestMoveHoldsWritesForTheSwitchOnly(t *testing.T) {
	b, users, photos := world(t, 2)
	ctx := context.Background()
	u := users[2]
	to := 1 - shardOf(t, b.f, u.ID)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed, wrote int
	var mu sync.Mutex
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				err := b.f.AddComment(ctx, photos[2], users[w].ID, "load") // photos[2] is users[2]'s
				mu.Lock()
				if err != nil {
					failed++
					t.Log(err)
				} else {
					wrote++
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	r, err := b.f.Move(ctx, u.ID, to, t.Logf)
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if failed != 0 {
		t.Errorf("%d of %d writes failed during the move", failed, failed+wrote)
	}
	if r.Hold > 2*time.Second {
		t.Errorf("writes held %s", r.Hold)
	}
	var n int64
	for _, db := range b.f.handles {
		var c int64
		db.Raw(`SELECT count(*) FROM comments WHERE photo_id = ? AND body = 'load'`, photos[2]).Scan(&c)
		n += c
	}
	if n != int64(wrote) {
		t.Errorf("%d comments written, %d found after the move", wrote, n)
	}
	t.Logf("hold %s, copy %s, %d writes during the move", r.Hold, r.Copy, wrote)
}
