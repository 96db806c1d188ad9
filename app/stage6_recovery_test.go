package app

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
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
		Addr: os.Getenv("RECOVER_CHILD_ADDR"), Stage: 6, Workers: workers}
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
