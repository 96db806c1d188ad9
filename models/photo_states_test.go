package models_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"flickrkillr/models"
)

// Stage 6's recovery reads: the unfinished photos (with the job named to make
// their images) and the row claim that lets exactly one process re-enqueue a
// photo whose job is gone.
func TestUnfinishedPhotosAndTheirClaim(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	store := models.NewPhotoStore(db, models.Sequential{})
	owner := createUser(t, db, "alice")
	create := func(state, job string) int64 {
		t.Helper()
		id, err := store.CreatePhoto(ctx, models.NewPhoto{Owner: owner, Title: "t", ImageKey: models.NewImageKey(),
			Width: 10, Height: 10, State: state, JobID: job})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	ready := create("", "")
	waiting := create(models.PhotoProcessing, "job-a")
	finished := create(models.PhotoProcessing, "job-b")
	if _, err := store.FinishPhoto(ctx, finished, models.PhotoReady, 0, 0); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)

	t.Run("only processing photos are listed, with their job", func(t *testing.T) {
		got, err := store.UnfinishedPhotos(ctx, later, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].ID != waiting || got[0].JobID != "job-a" || got[0].ImageKey == "" {
			t.Fatalf("unfinished photos: %+v, want only photo %d with job-a (ready %d, finished %d)", got, waiting, ready, finished)
		}
	})

	t.Run("photos newer than the cut-off wait for their own job", func(t *testing.T) {
		got, err := store.UnfinishedPhotos(ctx, time.Now().Add(-time.Minute), 0, 10)
		if err != nil || len(got) != 0 {
			t.Fatalf("photos created before a minute ago: %+v, %v; want none", got, err)
		}
	})

	t.Run("paging by id", func(t *testing.T) {
		second := create(models.PhotoProcessing, "job-c")
		page, err := store.UnfinishedPhotos(ctx, later, 0, 1)
		if err != nil || len(page) != 1 || page[0].ID != waiting {
			t.Fatalf("first page: %+v, %v", page, err)
		}
		page, err = store.UnfinishedPhotos(ctx, later, page[0].ID, 1)
		if err != nil || len(page) != 1 || page[0].ID != second {
			t.Fatalf("second page: %+v, %v; want photo %d", page, err, second)
		}
		if _, err := store.FinishPhoto(ctx, second, models.PhotoReady, 0, 0); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("of processes claiming at once, exactly one wins", func(t *testing.T) {
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				ok, err := store.ClaimPhotoJob(ctx, waiting, "job-a", "job-new-"+string(rune('a'+i)))
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d claims won, want exactly 1", wins.Load())
		}
		got, _ := store.UnfinishedPhotos(ctx, later, 0, 10)
		if len(got) != 1 || got[0].JobID == "job-a" {
			t.Fatalf("after the claim: %+v, want the winner's job on the row", got)
		}
	})

	t.Run("a finished or unknown photo is not claimed", func(t *testing.T) {
		for _, id := range []int64{finished, ready, 1 << 40} {
			if ok, err := store.ClaimPhotoJob(ctx, id, "", "job-x"); ok || err != nil {
				t.Errorf("photo %d: claimed %v, %v; want not claimed", id, ok, err)
			}
		}
	})

	t.Run("a photo from before schema 4 has no job and is claimed from none", func(t *testing.T) {
		legacy := create(models.PhotoProcessing, "")
		if ok, err := store.ClaimPhotoJob(ctx, legacy, "", "job-l"); !ok || err != nil {
			t.Fatalf("claim from no job: %v, %v", ok, err)
		}
	})
}
