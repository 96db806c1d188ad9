package models_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/jpeg"
	"image/png"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"flickrkillr/migrations"
	"flickrkillr/models"
	"flickrkillr/models/modeltest"
)

func openDB(t *testing.T) *gorm.DB {
	t.Helper()
	db, err := models.Open(context.Background(), modeltest.NewDB(t, migrations.Latest()), models.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close(db) })
	return db
}

func createUser(t *testing.T, db *gorm.DB, name string) models.PublicUser {
	t.Helper()
	u, err := models.NewUserStore(db).Create(context.Background(), name, strings.ToUpper(name), []byte("hash"))
	if err != nil {
		t.Fatal(err)
	}
	return models.PublicUser{ID: u.ID, Name: u.Name}
}

// galleryImpls are the Gallery implementations of this build; each must
// answer like the PostgreSQL one (cache_test.go adds the stage 3 cache).
var galleryImpls = map[string]func(t *testing.T, db *gorm.DB) models.Gallery{
	"PhotoStore": func(t *testing.T, db *gorm.DB) models.Gallery { return models.NewPhotoStore(db, models.Sequential{}) },
	// The stores' independent lookups must also answer right when they run
	// at once (stage 5 runs them with errgroup; here plain goroutines).
	"PhotoStore, lookups at once": func(t *testing.T, db *gorm.DB) models.Gallery { return models.NewPhotoStore(db, atOnce{}) },
}

// atOnce runs every lookup in its own goroutine and returns their errors
// joined (errors.Is still finds ErrNotFound).
type atOnce struct{}

func (atOnce) Run(ctx context.Context, fns ...func(context.Context) error) error {
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Go(func() { errs[i] = fn(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// galleries runs a test against every Gallery implementation.
func galleries(t *testing.T, fn func(t *testing.T, db *gorm.DB, g models.Gallery)) {
	for name, impl := range galleryImpls {
		t.Run(name, func(t *testing.T) {
			db := openDB(t)
			fn(t, db, impl(t, db))
		})
	}
}

func TestGalleryPagination(t *testing.T) {
	galleries(t, func(t *testing.T, db *gorm.DB, g models.Gallery) {
		ctx := context.Background()
		u := createUser(t, db, "pat")
		var ids []int64
		for i := range models.GridSize + 5 {
			id, err := g.CreatePhoto(ctx, models.NewPhoto{Owner: u, Title: "p", ImageKey: "key" + string(rune('a'+i%26)), Width: 1, Height: 1, Tags: []string{"t"}})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		first, err := g.UserPhotos(ctx, "pat", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(first.Grid.Photos) != models.GridSize || first.PhotoCount != int64(len(ids)) {
			t.Fatalf("first page: %d photos of %d", len(first.Grid.Photos), first.PhotoCount)
		}
		if first.Grid.Photos[0].ID != ids[len(ids)-1] || first.Grid.Next == 0 {
			t.Fatalf("first page starts at %d (want newest %d), next %d", first.Grid.Photos[0].ID, ids[len(ids)-1], first.Grid.Next)
		}
		second, err := g.UserPhotos(ctx, "pat", first.Grid.Next)
		if err != nil {
			t.Fatal(err)
		}
		if len(second.Grid.Photos) != 5 || second.Grid.Next != 0 || second.Grid.Photos[4].ID != ids[0] {
			t.Fatalf("second page: %d photos, next %d", len(second.Grid.Photos), second.Grid.Next)
		}
		tag, err := g.TagPhotos(ctx, "t", 0)
		if err != nil || tag.Tag.PhotoCount != int64(len(ids)) || len(tag.Grid.Photos) != models.GridSize {
			t.Fatalf("tag page: %+v, %v", tag.Tag, err)
		}
	})
}

func TestGalleryWritesAndErrors(t *testing.T) {
	galleries(t, func(t *testing.T, db *gorm.DB, g models.Gallery) {
		ctx := context.Background()
		owner, other := createUser(t, db, "olga"), createUser(t, db, "otto")
		id, err := g.CreatePhoto(ctx, models.NewPhoto{Owner: owner, Title: "t", ImageKey: "abcd", Width: 1, Height: 1, Tags: []string{"x", "y"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.SetFavorite(ctx, other.ID, id, true); err != nil {
			t.Fatal(err)
		}
		if err := g.SetFavorite(ctx, other.ID, id, true); err != nil {
			t.Fatalf("favoriting twice: %v", err)
		}
		if fav, _ := g.IsFavorite(ctx, other.ID, id); !fav {
			t.Fatal("IsFavorite false after SetFavorite")
		}
		if err := g.SetFavorite(ctx, other.ID, 999999, true); !errors.Is(err, models.ErrNotFound) {
			t.Fatalf("favorite a missing photo: %v, want ErrNotFound", err)
		}
		if err := g.AddComment(ctx, 999999, other.ID, "hi"); !errors.Is(err, models.ErrNotFound) {
			t.Fatalf("comment on a missing photo: %v, want ErrNotFound", err)
		}
		if _, err := g.DeletePhoto(ctx, id, other.ID); !errors.Is(err, models.ErrForbidden) {
			t.Fatalf("delete by another user: %v, want ErrForbidden", err)
		}
		d, err := g.DeletePhoto(ctx, id, owner.ID)
		if err != nil || d.Owner != "olga" || len(d.Tags) != 2 {
			t.Fatalf("delete: %+v, %v", d, err)
		}
		if _, err := g.Photo(ctx, id); !errors.Is(err, models.ErrNotFound) {
			t.Fatalf("photo after delete: %v, want ErrNotFound", err)
		}
		if _, err := g.DeletePhoto(ctx, id, owner.ID); !errors.Is(err, models.ErrNotFound) {
			t.Fatalf("second delete: %v, want ErrNotFound", err)
		}
		home, err := g.Home(ctx)
		if err != nil || len(home.Recent) != 0 || len(home.PopularTags) != 0 {
			t.Fatalf("home after delete: %+v, %v (tags with no photos are not popular)", home, err)
		}
	})
}

func TestUserStore(t *testing.T) {
	db := openDB(t)
	s := models.NewUserStore(db)
	ctx := context.Background()
	if _, err := s.Create(ctx, "quinn", "Q", []byte("h")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "quinn", "Q2", []byte("h")); !errors.Is(err, models.ErrDuplicate) {
		t.Fatalf("duplicate name: %v, want ErrDuplicate", err)
	}
	if _, err := s.ByName(ctx, "nobody"); !errors.Is(err, models.ErrNotFound) {
		t.Fatalf("missing user: %v, want ErrNotFound", err)
	}
}

func TestSessionStoreExpiry(t *testing.T) {
	s := models.NewSessionStore(openDB(t))
	ctx := context.Background()
	if err := s.CommitCtx(ctx, "live", []byte("a"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitCtx(ctx, "dead", []byte("b"), time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if b, ok, err := s.FindCtx(ctx, "live"); err != nil || !ok || string(b) != "a" {
		t.Fatalf("live session: %q %v %v", b, ok, err)
	}
	if _, ok, _ := s.FindCtx(ctx, "dead"); ok {
		t.Fatal("an expired session was found")
	}
	if n, err := s.DeleteExpired(ctx); err != nil || n != 1 {
		t.Fatalf("DeleteExpired: %d, %v", n, err)
	}
}

func TestProcessImage(t *testing.T) {
	var big bytes.Buffer
	png.Encode(&big, image.NewGray(image.Rect(0, 0, 3000, 1000)))
	p, err := models.ProcessImage(big.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if p.Width != models.MaxOriginalDim || p.Height != 682 {
		t.Fatalf("original scaled to %dx%d", p.Width, p.Height)
	}
	th, err := jpeg.DecodeConfig(bytes.NewReader(p.Thumbnail))
	if err != nil || th.Width != models.ThumbnailDim {
		t.Fatalf("thumbnail: %+v, %v", th, err)
	}
	if _, err := jpeg.Decode(bytes.NewReader(p.Original)); err != nil {
		t.Fatalf("original is not a JPEG after re-encoding: %v", err)
	}
	for name, data := range map[string][]byte{"text": []byte("hello, not an image"), "gif": []byte("GIF89a\x01\x00\x01\x00")} {
		if _, err := models.ProcessImage(data); !errors.Is(err, models.ErrNotImage) {
			t.Errorf("%s: %v, want ErrNotImage", name, err)
		}
	}
}

func TestImageStoreRejectsPathsOutsideIt(t *testing.T) {
	s, err := models.NewImageStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"../../etc/passwd", "ab/cd", "", "A"} {
		if _, err := s.Path(key, models.Original); !errors.Is(err, models.ErrNotFound) {
			t.Errorf("key %q: %v, want ErrNotFound", key, err)
		}
	}
}

// Warm opens the pool's connections before any request needs them, and
// they stay idle in it (stage 9's standby pools: a handshake under load
// waited for a throttled host).
func TestWarmOpensThePoolAtOnce(t *testing.T) {
	db := openDB(t)
	if err := models.SetPoolSize(db, 6); err != nil {
		t.Fatal(err)
	}
	if err := models.Warm(context.Background(), db, 6); err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	if s := sqlDB.Stats(); s.OpenConnections != 6 || s.Idle != 6 {
		t.Fatalf("after Warm(6): %d open, %d idle; want 6 and 6", s.OpenConnections, s.Idle)
	}
}

// A load run's comments and favorites go after it: the data set a sweep
// measures is the same for every run.
func TestRunMarkRestoresTheDataSet(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	owner, fan := createUser(t, db, "owner"), createUser(t, db, "fan")
	g := models.NewPhotoStore(db, nil)
	photo, err := g.CreatePhoto(ctx, models.NewPhoto{Owner: owner, Title: "t", ImageKey: "abcd", Width: 1, Height: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.AddComment(ctx, photo, owner.ID, "before the run"); err != nil {
		t.Fatal(err)
	}
	mark, err := models.MarkRun(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := g.AddComment(ctx, photo, fan.ID, "during the run"); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.SetFavorite(ctx, fan.ID, photo, true); err != nil {
		t.Fatal(err)
	}
	comments, favorites, err := mark.Restore(ctx, db)
	if err != nil || comments != 3 || favorites != 1 {
		t.Fatalf("Restore: %d comments, %d favorites, %v; want 3 and 1", comments, favorites, err)
	}
	var left int64
	db.Raw(`SELECT count(*) FROM comments`).Scan(&left)
	if left != 1 {
		t.Fatalf("%d comments after the restore, want the one from before the run", left)
	}
}
