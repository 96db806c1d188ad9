package loadtest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"gorm.io/gorm"

	"flickrkillr/app"
	"flickrkillr/models"
	"flickrkillr/models/modeltest"
	"flickrkillr/seed"
)

// The writes scenario against the real app (stage 4: uploads make their
// images in the request, so the teardown has no queue to race) on a tiny
// seed: a short run makes comments, favorites and uploads with no error;
// the comments and the favorites it holds at the end are in the database;
// its uploads are gone.
func TestWritesScenarioAgainstTheRealApp(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds a database and uploads 12-megapixel images")
	}
	const stage = 4
	if _, ok := app.LookupStage(stage); !ok {
		t.Skip("a build without stage 4")
	}
	schema, err := app.SchemaFor(stage)
	if err != nil {
		t.Fatal(err)
	}
	dsn, dataDir := modeltest.NewDB(t, schema), t.TempDir()
	ctx := context.Background()
	if _, err := seed.Run(ctx, dsn, seed.Options{Users: 20, PhotosMin: 2, PhotosMax: 3, Images: 3, Seed: 1, DataDir: dataDir}); err != nil {
		t.Fatal(err)
	}
	db, err := models.Open(ctx, dsn, models.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close(db) })
	// No favorites before the run: a toggle then never meets one of the
	// seed's, and the favorites after it are exactly what the users hold.
	if err := db.Exec(`DELETE FROM favorites`).Error; err != nil {
		t.Fatal(err)
	}
	d := &app.Deps{DB: db, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a, err := app.New(app.Config{DatabaseURL: dsn, DataDir: dataDir, Stage: stage}, d)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(func() { srv.Close(); d.Close() })

	before := counts(t, db)
	const users = 3
	res, err := Run(ctx, Options{URL: srv.URL, Scenario: "writes", Duration: 3 * time.Second, Concurrency: users, Password: seed.Password, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	WriteText(&text, res)
	t.Logf("\n%s", text.String())
	after := counts(t, db)

	if res.Total.Errors != 0 {
		t.Fatalf("%d errors, want none", res.Total.Errors)
	}
	for _, name := range []string{"comment", "favorite", "photo", "upload"} {
		if route(res, name).Requests == 0 {
			t.Errorf("no %s requests in the run", name)
		}
	}
	t.Run("its comments are in the database", func(t *testing.T) {
		// A comment cut off by the run's end is not counted, and may have
		// been made: at most one per user.
		made, n := after.loadtestComments-before.loadtestComments, route(res, "comment").Requests
		if made < n || made > n+users {
			t.Fatalf("%d comments from the run in the database, the run counted %d", made, n)
		}
	})
	t.Run("the favorites it holds are in the database", func(t *testing.T) {
		held := route(res, "favorite").Requests - route(res, "unfavorite").Requests
		if after.favorites < held-users || after.favorites > held+users || after.favorites == 0 {
			t.Fatalf("%d favorites in the database; the run counted %d favorited and %d unfavorited",
				after.favorites, route(res, "favorite").Requests, route(res, "unfavorite").Requests)
		}
	})
	t.Run("its uploads were deleted", func(t *testing.T) {
		if after.photos != before.photos || after.uploads != 0 {
			t.Fatalf("photos before %d, after %d (%d of them load-test uploads)", before.photos, after.photos, after.uploads)
		}
	})
}

type rowCounts struct{ loadtestComments, favorites, photos, uploads int64 }

func counts(t *testing.T, db *gorm.DB) rowCounts {
	t.Helper()
	var c rowCounts
	err := db.Raw(`SELECT (SELECT count(*) FROM comments WHERE body LIKE 'Nice one! lt-%'), (SELECT count(*) FROM favorites),
		(SELECT count(*) FROM photos), (SELECT count(*) FROM photos WHERE title = 'Load test upload')`).Row().
		Scan(&c.loadtestComments, &c.favorites, &c.photos, &c.uploads)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
