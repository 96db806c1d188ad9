package app

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"flickrkillr/models"
	"flickrkillr/models/modeltest"

	"flickrkillr/app/jobqueue"
)

// newQueueTestApp is a stage 6 App with no workers whose uploads stay queued
// until the test runs them (RunQueued).
// A gallery wrapper keeps the photo states (TestOneRegistrationMakesAStage).
func init() {
	keepStates = func(g countingGallery, inner models.Gallery) models.Gallery {
		if states, ok := inner.(models.PhotoStates); ok {
			return countingStates{g, states}
		}
		return g
	}
}

// countingStates is countingGallery over a gallery with photo states.
type countingStates struct {
	countingGallery
	models.PhotoStates
}

func newQueueTestApp(t *testing.T) (*testApp, *queuedUploads) {
	t.Helper()
	need, _ := SchemaFor(6)
	ta := newTestAppServing(t, Config{DatabaseURL: modeltest.NewDB(t, need), RedisURL: testRedisURL(t), DataDir: t.TempDir(), Stage: 6}, false)
	return ta, ta.uploads.(*queuedUploads)
}

func runQueued(t *testing.T, u *queuedUploads, want int) {
	t.Helper()
	n, err := u.RunQueued(context.Background())
	if err != nil || n != want {
		t.Fatalf("ran %d jobs (%v), want %d", n, err, want)
	}
}

func photoNumber(t *testing.T, location string) int64 {
	t.Helper()
	id, err := strconv.ParseInt(strings.TrimPrefix(location, "/photos/"), 10, 64)
	if err != nil {
		t.Fatalf("upload redirected to %q", location)
	}
	return id
}

func TestStage6UploadAnswersAtOnceAndShowsAPlaceholderUntilReady(t *testing.T) {
	ta, u := newQueueTestApp(t)
	b, anon := ta.browser(t), ta.browser(t)
	b.signup("quinn")
	res := b.upload(map[string]string{"title": "Queued", "tags": "q"}, "a.jpg", testJPEG(t, 300, 200))
	mustStatus(t, res, http.StatusSeeOther)
	photo := res.Header.Get("Location")
	mustContain(t, b.get(photo), "Your photo is up.")

	pages := []string{photo, "/", "/users/quinn", "/tags/q"}
	for _, who := range []*browser{b, anon} {
		for _, p := range pages {
			res := who.get(p)
			mustContain(t, res, "/static/photo-processing.svg")
			if strings.Contains(res.Body, photo+"/image") || strings.Contains(res.Body, photo+"/thumb") {
				t.Fatalf("%s links the image of a photo that is processing", p)
			}
		}
	}
	for _, v := range []string{"/image", "/thumb"} {
		mustStatus(t, anon.get(photo+v), http.StatusNotFound)
	}
	mustStatus(t, anon.get("/static/photo-processing.svg"), http.StatusOK)
	if got := files(t, ta.cfg.DataDir); len(got) != 1 || !strings.Contains(got[0], "/.uploads/") {
		t.Fatalf("files %v, want only the kept upload, outside the image directories", got)
	}

	runQueued(t, u, 1)
	// The pages (kept by stage 3's cache) show the image now.
	for _, who := range []*browser{b, anon} {
		mustContain(t, who.get(photo), `src="`+photo+`/image"`)
		for _, p := range pages[1:] {
			mustContain(t, who.get(p), `src="`+photo+`/thumb"`)
		}
	}
	img := anon.get(photo + "/image")
	mustStatus(t, img, http.StatusOK)
	if !strings.HasPrefix(img.Body, "\xff\xd8") {
		t.Fatal("the image is not a JPEG")
	}
	if got := files(t, ta.cfg.DataDir); len(got) != 2 {
		t.Fatalf("files %v, want the original and the thumbnail only (the upload removed)", got)
	}

	t.Run("a second delivery changes nothing", func(t *testing.T) {
		id := photoNumber(t, photo)
		key, _ := ta.gallery.ImageKey(context.Background(), id)
		if err := u.makeImages(context.Background(), jobqueue.Job{ID: "again", Photo: id, Key: key}); err != nil {
			t.Fatal(err)
		}
		mustStatus(t, anon.get(photo+"/image"), http.StatusOK)
	})
}

func TestStage6PoisonImageEndsFailedWithoutBlockingTheQueue(t *testing.T) {
	ta, u := newQueueTestApp(t)
	b := ta.browser(t)
	b.signup("rita")
	// The header is fine (the request accepts it); the data is cut short.
	poison := testJPEG(t, 300, 200)
	poison = poison[:len(poison)/3]
	bad := b.upload(map[string]string{"title": "Poison"}, "p.jpg", poison).Header.Get("Location")
	good := b.upload(map[string]string{"title": "Fine"}, "f.jpg", testJPEG(t, 300, 200)).Header.Get("Location")
	if bad == "" || good == "" {
		t.Fatal("an upload was refused")
	}
	runQueued(t, u, 2)
	mustContain(t, b.get(bad), "/static/photo-failed.svg")
	mustStatus(t, b.get(bad+"/image"), http.StatusNotFound)
	mustContain(t, b.get(good), `src="`+good+`/image"`)
	s, err := u.queue.Stats(context.Background())
	if err != nil || s.Dead != 1 || s.Ready+s.Processing+s.Delayed != 0 || s.Done != 1 {
		t.Fatalf("stats %+v (%v), want the poison dead at once and the other done", s, err)
	}

	t.Run("the figures are in /metrics and on the dashboard", func(t *testing.T) {
		m := scrape(t, ta)
		mustMetric(t, m, `flickrkillr_queue_jobs{state="dead"}`, 1)
		mustMetric(t, m, `flickrkillr_queue_jobs{state="ready"}`, 0)
		mustMetric(t, m, `flickrkillr_queue_jobs_total{outcome="done"}`, 1)
		mustMetric(t, m, `flickrkillr_queue_jobs_total{outcome="dead"}`, 1)
		mustMetric(t, m, `flickrkillr_queue_oldest_job_seconds`, 0)
		ids := map[string]bool{}
		for _, p := range panelsFor(ta.stage, ta.metrics) {
			ids[p.ID] = true
		}
		for _, id := range []string{"queue", "queuewait", "workers", "jobrate"} {
			if !ids[id] {
				t.Errorf("no %q panel at stage 6", id)
			}
		}
	})
}

func TestStage6PhotoDeletedWhileItsJobWaitsLeavesNoFiles(t *testing.T) {
	ta, u := newQueueTestApp(t)
	b := ta.browser(t)
	b.signup("sam")
	photo := b.upload(map[string]string{"title": "Brief"}, "a.jpg", testJPEG(t, 300, 200)).Header.Get("Location")
	mustStatus(t, b.post(photo+"/delete", nil), http.StatusSeeOther)
	runQueued(t, u, 1)
	if got := files(t, ta.cfg.DataDir); len(got) != 0 {
		t.Fatalf("files left behind: %v", got)
	}

	t.Run("deleted while its job runs", func(t *testing.T) {
		photo := b.upload(map[string]string{"title": "Briefer"}, "a.jpg", testJPEG(t, 300, 200)).Header.Get("Location")
		id := photoNumber(t, photo)
		inner := u.handle
		u.handle = func(ctx context.Context, j jobqueue.Job) error {
			mustStatus(t, b.post(photo+"/delete", nil), http.StatusSeeOther)
			return inner(ctx, j)
		}
		defer func() { u.handle = inner }()
		runQueued(t, u, 1)
		if got := files(t, ta.cfg.DataDir); len(got) != 0 {
			t.Fatalf("photo %d: files left behind: %v", id, got)
		}
	})
}

// The child half of TestStage6JobSurvivesAWorkerKilledMidJob: a worker in
// its own process that takes the job, says so and hangs in it.
func TestStage6ChildWorker(t *testing.T) {
	dsn := os.Getenv("QUEUE_CHILD_DATABASE_URL")
	if dsn == "" {
		t.Skip("the child of TestStage6JobSurvivesAWorkerKilledMidJob")
	}
	db, err := models.Open(context.Background(), dsn, models.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := &Deps{DB: db, Log: slog.New(slog.DiscardHandler)}
	a, err := New(Config{DatabaseURL: dsn, RedisURL: os.Getenv("QUEUE_CHILD_REDIS_URL"), DataDir: os.Getenv("QUEUE_CHILD_DATA_DIR"), Stage: 6}, d)
	if err != nil {
		t.Fatal(err)
	}
	u := a.uploads.(*queuedUploads)
	u.handle = func(ctx context.Context, j jobqueue.Job) error {
		fmt.Printf("running %s\n", j.ID)
		select {} // mid-job, until SIGKILL
	}
	u.RunQueued(context.Background())
}

func TestStage6JobSurvivesAWorkerKilledMidJob(t *testing.T) {
	ta, u := newQueueTestApp(t)
	b := ta.browser(t)
	b.signup("tess")
	photo := b.upload(map[string]string{"title": "Survivor"}, "a.jpg", testJPEG(t, 300, 200)).Header.Get("Location")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // bounds the child
	defer cancel()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestStage6ChildWorker$")
	child.Env = append(os.Environ(), "QUEUE_CHILD_DATABASE_URL="+ta.dsn,
		"QUEUE_CHILD_REDIS_URL=redis://"+u.queue.Client().Options().Addr, "QUEUE_CHILD_DATA_DIR="+ta.cfg.DataDir)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	lines := bufio.NewScanner(out)
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "running ") {
	}
	if !strings.HasPrefix(lines.Text(), "running ") {
		t.Fatalf("the child worker never took the job (%v)", lines.Err())
	}
	child.Process.Kill() // SIGKILL, mid-job
	child.Wait()

	s, _ := u.queue.Stats(ctx)
	if s.Processing != 1 || s.Ready != 0 {
		t.Fatalf("stats %+v, want the dead worker's job in processing", s)
	}
	// Its lease ends (the test moves the clock; miniredis's does not run).
	u.queue.Now = func() time.Time { return time.Now().Add(u.queue.Lease + time.Second) }
	if _, err := u.queue.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	runQueued(t, u, 1)
	mustContain(t, b.get(photo), `src="`+photo+`/image"`)
	mustStatus(t, b.get(photo+"/thumb"), http.StatusOK)
	s, _ = u.queue.Stats(ctx)
	if s.Done != 1 || s.Reaped != 1 || s.Ready+s.Processing+s.Delayed+s.Dead != 0 {
		t.Fatalf("stats %+v, want the job reaped once and done once", s)
	}
}

// Without REDIS_URL, `flickrkillr queue` reads the queue in the embedded
// miniredis of the serve process on the same DATA_DIR (make run), and shows
// what recovery re-enqueued; once that process has closed, it says so.
func TestQueueCommandFindsTheEmbeddedRedis(t *testing.T) {
	if _, ok := LookupStage(6); !ok {
		t.Skip("a build without stage 6")
	}
	need, _ := SchemaFor(6)
	dataDir := t.TempDir()
	ta := newTestAppOn(t, 6, modeltest.NewDB(t, need), dataDir, "")
	if _, err := ta.deps.Redis(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := QueueCommand(context.Background(), Config{DataDir: dataDir}, QueueOp{}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"embedded miniredis of serve", "waiting", "recovered"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the queue command's output lacks %q:\n%s", want, out.String())
		}
	}
	ta.deps.Close()
	err := QueueCommand(context.Background(), Config{DataDir: dataDir}, QueueOp{}, io.Discard)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Name != "REDIS_URL" {
		t.Fatalf("after the serve process closed: %v, want a REDIS_URL configuration error", err)
	}
}

// Without REDIS_URL, `flickrkillr worker` makes the images of the uploads
// queued in the embedded miniredis of the serve process on the same
// DATA_DIR (make run), found the way `flickrkillr queue` finds it.
func TestWorkerFindsTheEmbeddedRedis(t *testing.T) {
	need, _ := SchemaFor(6)
	dsn, dataDir := modeltest.NewDB(t, need), t.TempDir()
	ta := newTestAppServing(t, Config{DatabaseURL: dsn, DataDir: dataDir, Stage: 6}, false)
	b := ta.browser(t)
	b.signup("wes")
	photo := b.upload(map[string]string{"title": "Found"}, "a.jpg", testJPEG(t, 300, 200)).Header.Get("Location")
	mustContain(t, b.get(photo), "/static/photo-processing.svg")
	var out bytes.Buffer
	cfg := Config{DatabaseURL: dsn, DataDir: dataDir, Stage: 6}
	queueConfig.set(&cfg, func(s *queueSettings) { s.Workers = 1 })
	if err := RunWorkers(context.Background(), cfg, true, &out, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "drained 1 jobs") {
		t.Fatalf("the worker said %q, want 1 job drained", out.String())
	}
	mustContain(t, b.get(photo), `src="`+photo+`/image"`)
}
