package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"flickrkillr/models"
)

// footerStage is the footer's stage line, the one line of a page that names
// the stage.
var footerStage = regexp.MustCompile(`Stage <strong>\d+ · [a-z-]+</strong>: [^\n]*`)

// TestStage5ServesStage4sPages reads the same data through stage 4 and
// stage 5 (one database, each its own Redis): every page, anonymous and
// logged in, first rendered and then from the cache, is byte-equal but for
// the footer's stage line.
func TestStage5ServesStage4sPages(t *testing.T) {
	s4 := newTestApp(t, 4)
	s5 := newTestAppOn(t, 5, s4.dsn, s4.cfg.DataDir, "")

	owner, fan := s4.browser(t), s4.browser(t)
	owner.signup("ada")
	fan.signup("bea")
	var photos []string
	for i, tags := range []string{"sea sky", "sea", "sky night", ""} {
		p := owner.upload(map[string]string{"title": fmt.Sprintf("Photo %d", i), "tags": tags}, "a.png", testPNG(t, 40+i, 30)).Header.Get("Location")
		photos = append(photos, p)
	}
	for i, p := range photos[:2] {
		mustStatus(t, fan.post(p+"/favorite", url.Values{"action": {"add"}}), http.StatusSeeOther)
		for j := range i + 2 {
			mustStatus(t, fan.post(p+"/comments", url.Values{"body": {fmt.Sprintf("comment %d on %d", j, i)}}), http.StatusSeeOther)
		}
	}
	pages := append([]string{"/", "/users/ada", "/users/bea", "/tags/sea", "/tags/sky", "/tags/none", "/users/nobody",
		"/photos/999999", "/users/ada?before=" + strings.TrimPrefix(photos[2], "/photos/")}, photos...)

	login := func(ta *testApp, name string) *browser {
		b := ta.browser(t)
		mustStatus(t, b.post("/login", url.Values{"name": {name}, "password": {"correct horse battery"}}), http.StatusSeeOther)
		return b
	}
	viewers := []struct {
		name   string
		s4, s5 *browser
	}{
		{"anonymous", s4.browser(t), s5.browser(t)},
		{"the owner", login(s4, "ada"), login(s5, "ada")},
		{"a fan", login(s4, "bea"), login(s5, "bea")},
	}
	for _, v := range viewers {
		for _, path := range pages {
			t.Run(v.name+" "+path, func(t *testing.T) {
				for _, pass := range []string{"rendered", "cached"} {
					want, got := v.s4.get(path), v.s5.get(path)
					if got.Status != want.Status {
						t.Fatalf("%s: stage 5 answered %d, stage 4 %d", pass, got.Status, want.Status)
					}
					if !strings.Contains(got.Body, "Stage <strong>5 · fanout</strong>") {
						t.Fatalf("%s: the stage 5 page does not say stage 5", pass)
					}
					if a, b := footerStage.ReplaceAllString(want.Body, ""), footerStage.ReplaceAllString(got.Body, ""); a != b {
						t.Fatalf("%s: stage 5's page differs from stage 4's:\n--- stage 4\n%s\n--- stage 5\n%s", pass, a, b)
					}
				}
			})
		}
	}
}

// TestStage5FirstErrorFailsThePageAndCancelsTheRest breaks one lookup of the
// photo page for real (its comments table is gone) while the viewer's star,
// a lookup beside it, waits for its context: the page must be a clean 500,
// and the star's lookup must have been cancelled by that error, not by the
// request's deadline.
func TestStage5FirstErrorFailsThePageAndCancelsTheRest(t *testing.T) {
	ta := newTestApp(t, 5)
	b := ta.browser(t)
	b.signup("cal")
	photo := b.upload(map[string]string{"title": "Doomed", "tags": "x"}, "a.png", testPNG(t, 40, 30)).Header.Get("Location")
	if err := ta.db.Exec(`ALTER TABLE comments RENAME TO comments_gone`).Error; err != nil {
		t.Fatal(err)
	}
	star := &waitingStar{Gallery: ta.gallery, cause: make(chan error, 1)}
	ta.gallery = star

	res := b.get(photo)
	mustStatus(t, res, http.StatusInternalServerError)
	mustContain(t, res, "Something went wrong on our side")
	if strings.Contains(res.Body, "comments_gone") || strings.Contains(res.Body, "does not exist") {
		t.Errorf("the error page shows the cause to the user")
	}
	select {
	case cause := <-star.cause:
		if errors.Is(cause, context.DeadlineExceeded) || !strings.Contains(fmt.Sprint(cause), "comments") {
			t.Fatalf("the star's lookup ended with %v, want the comments' error as the cause", cause)
		}
	default:
		t.Fatal("the star's lookup never ran beside the photo's views")
	}
}

// waitingStar is a Gallery whose favorite star waits until its lookup is
// cancelled, and reports why.
type waitingStar struct {
	models.Gallery
	cause chan error
}

func (w *waitingStar) IsFavorite(ctx context.Context, _, _ int64) (bool, error) {
	<-ctx.Done()
	w.cause <- context.Cause(ctx)
	return false, ctx.Err()
}

// The first error is the one returned, and the others' context is
// cancelled with it as the cause (a lookup that waits for ctx returns).
func TestFanOutCancelsTheOthersOnTheFirstError(t *testing.T) {
	boom := errors.New("boom")
	var cause error
	err := fanOut{limit: 4}.Run(context.Background(),
		func(ctx context.Context) error { <-ctx.Done(); cause = context.Cause(ctx); return ctx.Err() },
		func(context.Context) error { return boom },
	)
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want the first error", err)
	}
	if !errors.Is(cause, boom) {
		t.Fatalf("the waiting lookup was cancelled by %v, want %v", cause, boom)
	}
}

// At most limit lookups of one Run are in flight: with six lookups that
// each hold their slot until released, only two start until one is released.
func TestFanOutBoundsTheLookupsInFlight(t *testing.T) {
	const limit, n = 2, 6
	var inFlight, most atomic.Int64
	started := make(chan struct{}, n)
	release := make(chan struct{})
	fns := make([]func(context.Context) error, n)
	for i := range fns {
		fns[i] = func(context.Context) error {
			now := inFlight.Add(1)
			for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
			}
			started <- struct{}{}
			<-release
			inFlight.Add(-1)
			return nil
		}
	}
	done := make(chan error)
	go func() { done <- fanOut{limit: limit}.Run(context.Background(), fns...) }()
	for range limit {
		<-started
	}
	// Give any lookup past the bound every chance to start (an unbounded
	// group starts all six at once); none may.
	for range 1000 {
		runtime.Gosched()
	}
	if len(started) != 0 {
		t.Fatalf("%d lookups started beyond the bound of %d", len(started), limit)
	}
	for range n {
		release <- struct{}{}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m := most.Load(); m != limit {
		t.Fatalf("at most %d lookups were in flight, want %d", m, limit)
	}
}

// Stage 5 widens the database pool for its fan-out; stage 4 keeps the 20
// that a request holding one connection at a time needs.
func TestStage5SizesThePoolForItsFanOut(t *testing.T) {
	for stage, want := range map[int]int{4: 20, 5: fanOutPool} {
		if got := models.PoolSize(newTestApp(t, stage).db); got != want {
			t.Errorf("stage %d: pool of %d connections, want %d", stage, got, want)
		}
	}
}
