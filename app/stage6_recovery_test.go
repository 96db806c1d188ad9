package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"flickrkillr/models"
	"flickrkillr/models/modeltest"
)

// A queue that lost its jobs (the embedded miniredis gone with its process):
// recovery enqueues one new job per processing photo, however many processes
// recover at once; the jobs make every photo ready; a second pass finds
// nothing; a photo whose job the queue still holds is left to that job.
func TestStage6RecoveryEnqueuesLostJobsOnce(t *testing.T) {
	ta, u := newQueueTestApp(t)
	u.recoverGrace = 0
	ctx := context.Background()
	b := ta.browser(t)
	b.signup("rita")
	var photos []string
	for i := range 3 {
		res := b.upload(map[string]string{"title": "Lost " + string(rune('a'+i))}, "a.jpg", testJPEG(t, 300, 200))
		mustStatus(t, res, http.StatusSeeOther)
		photos = append(photos, res.Header.Get("Location"))
	}
	// The queue loses everything it held (its keys in Redis: jobqueue's
	// layout, the sessions beside them stay).
	loseQueue := func() {
		t.Helper()
		if err := u.queue.Client().Del(ctx, "queue:images:ready", "queue:images:jobs").Err(); err != nil {
			t.Fatal(err)
		}
	}
	loseQueue()

	var wg sync.WaitGroup
	counts := make([]int, 4)
	for i := range counts {
		wg.Go(func() {
			n, err := u.recoverUploads(ctx)
			if err != nil {
				t.Error(err)
			}
			counts[i] = n
		})
	}
	wg.Wait()
	if total := counts[0] + counts[1] + counts[2] + counts[3]; total != 3 {
		t.Fatalf("four recoveries at once enqueued %v jobs, want 3 in all", counts)
	}
	if s, _ := u.queue.Stats(ctx); s.Ready != 3 || s.Recovered != 3 {
		t.Fatalf("stats %+v, want 3 ready and 3 recovered", s)
	}
	runQueued(t, u, 3)
	for _, p := range photos {
		mustContain(t, b.get(p), `src="`+p+`/image"`)
	}
	if n, err := u.recoverUploads(ctx); n != 0 || err != nil {
		t.Fatalf("a second pass recovered %d (%v), want 0", n, err)
	}

	t.Run("a job the queue still holds is not doubled", func(t *testing.T) {
		mustStatus(t, b.upload(map[string]string{"title": "Waiting"}, "a.jpg", testJPEG(t, 300, 200)), http.StatusSeeOther)
		if n, err := u.recoverUploads(ctx); n != 0 || err != nil {
			t.Fatalf("recovered %d (%v), want 0: the job waits in the queue", n, err)
		}
		runQueued(t, u, 1)
	})

	t.Run("a young photo waits for its own job", func(t *testing.T) {
		u.recoverGrace = time.Hour
		mustStatus(t, b.upload(map[string]string{"title": "Young"}, "a.jpg", testJPEG(t, 300, 200)), http.StatusSeeOther)
		loseQueue()
		if n, err := u.recoverUploads(ctx); n != 0 || err != nil {
			t.Fatalf("recovered %d (%v), want 0 within the grace", n, err)
		}
	})
}

// The child half of TestStage6UploadsSurviveTheServerStopping: `serve` at
// stage 6 in its own process, stopped by SIGINT (Ctrl-C) or SIGKILL.
func TestStage6ChildServer(t *testing.T) {
	dsn := os.Getenv("RECOVER_CHILD_DATABASE_URL")
	if dsn == "" {
		t.Skip("the child of TestStage6UploadsSurviveTheServerStopping")
	}
	recoverGrace = 0 // this process's own copy: recover the parent's fresh uploads at once
	workers := 0
	if os.Getenv("RECOVER_CHILD_WORKERS") == "1" {
		workers = 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg := Config{DatabaseURL: dsn, RedisURL: os.Getenv("RECOVER_CHILD_REDIS_URL"), DataDir: os.Getenv("RECOVER_CHILD_DATA_DIR"),
		Addr: os.Getenv("RECOVER_CHILD_ADDR"), Stage: 6}
	queueConfig.set(&cfg, func(s *queueSettings) { s.Workers = workers })
	if err := Serve(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
		t.Fatal(err)
	}
}

// Uploads answered 303 are processed across Ctrl-C and SIGKILL of the server
// with their jobs still queued: after a restart every photo ends ready, once,
// with one row and one set of files each. With the embedded miniredis the
// queue dies with the process and recovery finds the photos again; with a
// redis-server (REDIS_URL) the queue itself survives.
func TestStage6UploadsSurviveTheServerStopping(t *testing.T) {
	for _, how := range []struct {
		name string
		sig  syscall.Signal
	}{{"Ctrl-C", syscall.SIGINT}, {"SIGKILL", syscall.SIGKILL}} {
		t.Run(how.name, func(t *testing.T) {
			need, _ := SchemaFor(6)
			dsn, dataDir, redisURL := modeltest.NewDB(t, need), t.TempDir(), testRedisURL(t)
			addr := mustFreeAddr(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // bounds the children
			defer cancel()
			start := func(workers string) *exec.Cmd {
				child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestStage6ChildServer$")
				child.Env = append(os.Environ(), "RECOVER_CHILD_DATABASE_URL="+dsn, "RECOVER_CHILD_REDIS_URL="+redisURL,
					"RECOVER_CHILD_DATA_DIR="+dataDir, "RECOVER_CHILD_ADDR="+addr, "RECOVER_CHILD_WORKERS="+workers, "ADMIN_ADDR=")
				if testing.Verbose() {
					child.Stderr = os.Stderr
				}
				if err := child.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { child.Process.Kill(); child.Wait() })
				waitFor(t, 30*time.Second, "the child server to answer", func() bool { return ready(addr) })
				return child
			}

			first := start("0") // no workers: every upload's job waits in the queue
			jar, _ := cookiejar.New(nil)
			b := &browser{t: t, base: "http://" + addr, c: &http.Client{Jar: jar,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
			b.signup("kim")
			const uploads = 4
			for i := range uploads {
				res := b.upload(map[string]string{"title": "Kept " + string(rune('a'+i))}, "a.jpg", testJPEG(t, 300, 200))
				mustStatus(t, res, http.StatusSeeOther)
			}
			first.Process.Signal(how.sig)
			first.Wait()

			start("1") // one worker, and recovery at start
			db, err := models.Open(ctx, dsn, models.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer models.Close(db)
			var states []string
			waitFor(t, 60*time.Second, "every uploaded photo to be ready", func() bool {
				states = nil
				db.Raw(`SELECT state FROM photos ORDER BY id`).Scan(&states)
				return len(states) == uploads && !strings.Contains(strings.Join(states, " "), "processing")
			})
			if strings.Join(states, " ") != strings.TrimSpace(strings.Repeat("ready ", uploads)) {
				t.Fatalf("photo states %v, want %d ready", states, uploads)
			}
			// One original and one thumbnail a photo, and no upload left waiting.
			var left []string
			for _, f := range files(t, dataDir) {
				if !strings.Contains(f, ".uploads") {
					left = append(left, f)
				} else {
					t.Errorf("an upload is still waiting: %s", f)
				}
			}
			if len(left) != 2*uploads {
				t.Errorf("%d image files, want %d (one original and one thumbnail a photo): %v", len(left), 2*uploads, left)
			}
		})
	}
}

// recoverAfterCreate is a gallery that runs after once a photo's row is
// written and before its upload enqueues the job: the moment a recovery in
// another process may read the row.
type recoverAfterCreate struct {
	models.Gallery
	after func()
}

func (g recoverAfterCreate) CreatePhoto(ctx context.Context, p models.NewPhoto) (int64, error) {
	id, err := g.Gallery.CreatePhoto(ctx, p)
	if err == nil {
		g.after()
	}
	return id, err
}

// An upload reserves its job before it names it on the photo's row, as
// recovery does: a recovery that reads the row before the job is enqueued
// (a slow transaction, or another host whose clock runs past the grace)
// leaves the job to the upload instead of enqueuing a second one.
func TestStage6RecoveryLeavesAnUploadsJobToIt(t *testing.T) {
	ta, u := newQueueTestApp(t)
	u.recoverGrace = -time.Minute // another host's clock, a minute ahead: every row looks old enough
	ctx := context.Background()
	b := ta.browser(t)
	b.signup("uma")
	var recovered int
	var rerr error
	u.gallery = recoverAfterCreate{Gallery: u.gallery, after: func() { recovered, rerr = u.recoverUploads(ctx) }}
	mustStatus(t, b.upload(map[string]string{"title": "Raced"}, "a.jpg", testJPEG(t, 300, 200)), http.StatusSeeOther)
	if rerr != nil || recovered != 0 {
		t.Fatalf("a recovery between the row and the enqueue recovered %d (%v), want 0", recovered, rerr)
	}
	runQueued(t, u, 1)
	if s, _ := u.queue.Stats(ctx); s.Done != 1 || s.Recovered != 0 || s.Ready != 0 {
		t.Fatalf("stats %+v, want the upload's one job done and none recovered", s)
	}
}

// With PostgreSQL hung and its breaker open (the backends of the test's
// database paused, as TestPostgresPausedOpensTheBreaker pauses them), a
// worker's job fails at once on every statement: that is an outage, not an
// attempt. The worker holds the job and waits for the database; no attempt
// is counted (with one attempt allowed, a counted one would kill the job),
// nothing dies, no photo is marked failed; once the backends resume every
// job completes.
func TestStage6PostgresOutageKillsNoJob(t *testing.T) {
	need, _ := SchemaFor(6)
	dsn := modeltest.NewDB(t, need)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	w, err := newPostgresWatch(dsn, log)
	if err != nil {
		t.Fatal(err)
	}
	db, err := models.Open(context.Background(), dsn, w.options(models.Options{MaxOpenConns: 2}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close(db) })
	d := &Deps{DB: db, Log: log, pg: w}
	t.Cleanup(w.start())
	a, err := New(Config{DatabaseURL: dsn, RedisURL: testRedisURL(t), DataDir: t.TempDir(), Stage: 6}, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	u := a.uploads.(*queuedUploads)
	u.queue.MaxAttempts = 1
	b := (&testApp{App: a, srv: srv}).browser(t)
	b.signup("otto")
	const uploads = 3
	for i := range uploads {
		mustStatus(t, b.upload(map[string]string{"title": "Outage " + string(rune('a'+i))}, "a.jpg", testJPEG(t, 300, 200)), http.StatusSeeOther)
	}
	waitUntil(t, 10*time.Second, "the watchdog's first probe", func() bool { last, _ := w.dog.RoundTrips(); return last > 0 })
	// A probe sent before the pool's last answer does not judge (the
	// database made progress meanwhile) and waits for its own answer: the
	// probes from now on start with nothing answered since.
	time.Sleep(300 * time.Millisecond)

	resume := pauseBackends(t, dsn)
	// A statement in flight and unanswered, as the watchdog counts them (a
	// real one may hang instead in pgx's ping of an idle connection, which
	// the watchdog does not see): with the probe unanswered, the breaker opens.
	w.dog.Begin()
	defer w.dog.End(false)
	// 40 s: past the watchdog's 30 s wait for one probe, should one have
	// been sent in the moment before the pause.
	waitUntil(t, 40*time.Second, "the breaker to open", w.breaker.Open)

	ran := make(chan error, 1)
	go func() { _, err := u.RunQueued(context.Background()); ran <- err }()
	ctx := context.Background()
	for range 3 * 10 { // 3 s of outage, looked at every 100 ms
		time.Sleep(100 * time.Millisecond)
		s, err := u.queue.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := u.queue.Client().HLen(ctx, "queue:images:attempts").Val(); n != 0 || s.Retried+s.Dead != 0 {
			t.Fatalf("during the outage: stats %+v, %d jobs with attempts; want none counted", s, n)
		}
	}
	if s, _ := u.queue.Stats(ctx); s.Processing != 1 || s.Ready != uploads-1 {
		t.Fatalf("stats %+v, want one job held by the worker and the others waiting", s)
	}
	resume()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the jobs did not finish within 30 s of the resume")
	}
	s, _ := u.queue.Stats(ctx)
	if s.Done != uploads || s.Dead+s.Retried+s.Ready+s.Processing+s.Delayed != 0 {
		t.Fatalf("stats %+v, want every job done once, none retried or dead", s)
	}
	var states []string
	db.Raw(`SELECT state FROM photos ORDER BY id`).Scan(&states)
	if strings.Join(states, " ") != strings.TrimSpace(strings.Repeat("ready ", uploads)) {
		t.Fatalf("photo states %v, want %d ready", states, uploads)
	}
}

// A dead job whose photo still shows "processing" (its worker could not
// write "failed": the database was away, or the process ended) is found by
// recovery, which marks the photo failed instead of leaving it to wait
// for a job that will never finish it.
func TestStage6RecoveryMarksTheLeftoversOfDeadJobsFailed(t *testing.T) {
	ta, u := newQueueTestApp(t)
	u.recoverGrace = 0
	ctx := context.Background()
	b := ta.browser(t)
	b.signup("vic")
	photo := b.upload(map[string]string{"title": "Orphan"}, "a.jpg", testJPEG(t, 300, 200)).Header.Get("Location")
	j, ok, err := u.queue.Fetch(ctx, 0)
	if err != nil || !ok {
		t.Fatalf("fetch: %v, %v", ok, err)
	}
	// The job dies; its hook (jobDied) never runs.
	if dead, err := u.queue.Fail(ctx, j.ID, errors.New("a corrupt image"), true); err != nil || !dead {
		t.Fatalf("fail: %v, %v", dead, err)
	}
	mustContain(t, b.get(photo), "/static/photo-processing.svg")
	if n, err := u.recoverUploads(ctx); n != 0 || err != nil {
		t.Fatalf("recovered %d (%v), want 0: the job is dead, not lost", n, err)
	}
	mustContain(t, b.get(photo), "/static/photo-failed.svg")
	if s, _ := u.queue.Stats(ctx); s.Dead != 1 || s.Ready != 0 {
		t.Fatalf("stats %+v, want the job still dead (for queue --retry) and nothing enqueued", s)
	}
}
