package models_test

import (
	"context"
	"testing"
	"time"

	"flickrkillr/models"
)

// FailureCounts (stage 0's throttle) refuses a key after max failures in its
// window, per key, forgets a key on Reset and starts again when the window
// has ended; its rows sweep themselves away (the counts of ended
// windows are swept).
func TestFailureCountsCountInAWindow(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	f := models.NewFailureCounts(db, "name:", 3, time.Minute)
	for range 3 {
		if _, blocked, err := f.Blocked(ctx, "login:ann"); err != nil || blocked {
			t.Fatalf("blocked %v, %v before 3 failures", blocked, err)
		}
		if err := f.Fail(ctx, "login:ann"); err != nil {
			t.Fatal(err)
		}
	}
	wait, blocked, err := f.Blocked(ctx, "login:ann")
	if err != nil || !blocked || wait <= 0 || wait > time.Minute {
		t.Fatalf("after 3 failures: blocked %v for %s, %v", blocked, wait, err)
	}
	if _, blocked, _ := f.Blocked(ctx, "login:bob"); blocked {
		t.Fatal("another key is blocked")
	}
	if _, blocked, _ := models.NewFailureCounts(db, "addr:", 3, time.Minute).Blocked(ctx, "login:ann"); blocked {
		t.Fatal("another throttle's key is blocked")
	}
	if err := f.Reset(ctx, "login:ann"); err != nil {
		t.Fatal(err)
	}
	if _, blocked, _ := f.Blocked(ctx, "login:ann"); blocked {
		t.Fatal("blocked after Reset")
	}

	short := models.NewFailureCounts(db, "short:", 1, 10*time.Millisecond)
	for i := range 300 {
		if err := short.Fail(ctx, "k"+string(rune('a'+i%26))+string(rune('a'+i/26))); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond) // every window over
	if _, blocked, _ := short.Blocked(ctx, "kaa"); blocked {
		t.Fatal("blocked after its window ended")
	}
	for range 1000 { // a sweep about every 100: none in 1000 has odds of 4e-5
		if err := short.Fail(ctx, "again"); err != nil {
			t.Fatal(err)
		}
	}
	var left int64
	if err := db.Raw(`SELECT count(*) FROM sessions WHERE token LIKE '%short:k%'`).Scan(&left).Error; err != nil {
		t.Fatal(err)
	}
	if left > 50 {
		t.Fatalf("%d expired counts left after 1000 more failures, want them swept", left)
	}
}
