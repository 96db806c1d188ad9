package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"flickrkillr/models"
	"flickrkillr/models/modeltest"
)

// redisServer is a real redis-server owned by one test, on its own port.
type redisServer struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
}

// startRedisServer runs redis-server. scripts/test.sh installs it before
// its real-Redis pass (REDIS_URL set), where a missing binary fails the
// test; elsewhere (the first pass, a developer machine) it is skipped.
func startRedisServer(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("REDIS_URL") != "" {
			t.Fatal("redis-server is not installed (scripts/test.sh installs it)")
		}
		t.Skip("redis-server is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	rs := &redisServer{t: t, port: port, dir: t.TempDir()}
	rs.start()
	return rs
}

func (rs *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", rs.port) }

func (rs *redisServer) start() {
	rs.t.Helper()
	rs.cmd = exec.Command("redis-server", "--port", strconv.Itoa(rs.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", rs.dir)
	if err := rs.cmd.Start(); err != nil {
		rs.t.Fatal(err)
	}
	cmd := rs.cmd
	rs.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		cmd.Wait()
	})
	for range 100 {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", rs.port)); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	rs.t.Fatal("redis-server did not start")
}

func (rs *redisServer) signal(sig syscall.Signal) {
	rs.t.Helper()
	if err := rs.cmd.Process.Signal(sig); err != nil {
		rs.t.Fatal(err)
	}
}

func (rs *redisServer) stop() {
	rs.signal(syscall.SIGKILL)
	rs.cmd.Wait()
}

// quick is a browser whose requests give up after 3 s: a request that hangs
// on a dead dependency fails the test instead of stalling it.
func quick(b *browser) *browser {
	b.c.Timeout = 3 * time.Second
	return b
}

// eventually retries get until it answers want, for at most 10 s.
func eventually(t *testing.T, b *browser, path string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res := b.get(path)
		if res.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s still answers %d, want %d", path, res.Status, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// With Redis paused (SIGSTOP) or gone: anonymous pages still answer 200 from
// the database (the cache fails open), pages with a session answer a 503
// page with Retry-After, the breaker opens so that further requests do not
// wait for Redis, and everything recovers without a restart.
func TestRedisFaultsFailFast(t *testing.T) {
	for _, s := range Stages() {
		stage := s.Number
		if stage < 2 || stage > 3 {
			continue // sessions (2) and the cache (3) in Redis; a workshop tag may have neither
		}
		t.Run(fmt.Sprintf("stage %d", stage), func(t *testing.T) {
			rs := startRedisServer(t)
			need, _ := SchemaFor(stage)
			ta := newTestAppOn(t, stage, modeltest.NewDB(t, need), t.TempDir(), rs.url())
			alice := ta.browser(t)
			alice.signup("alice") // bcrypt: slow on a busy machine, so before the timeouts
			res := alice.upload(map[string]string{"title": "Dock"}, "dock.jpg", testJPEG(t, 64, 64))
			mustStatus(t, res, http.StatusSeeOther)
			photo := res.Header.Get("Location")
			alice, anon := quick(alice), quick(ta.browser(t))
			mustStatus(t, anon.get(photo), http.StatusOK)
			br, err := ta.deps.RedisBreaker()
			if err != nil {
				t.Fatal(err)
			}

			t.Run("paused", func(t *testing.T) {
				rs.signal(syscall.SIGSTOP)
				t.Cleanup(func() { rs.signal(syscall.SIGCONT) })
				for range 5 {
					mustStatus(t, anon.get(photo), http.StatusOK)
					mustStatus(t, anon.get("/"), http.StatusOK)
					res := alice.get("/")
					mustStatus(t, res, http.StatusServiceUnavailable)
					mustContain(t, res, "cannot reach your session")
					if res.Header.Get("Retry-After") == "" {
						t.Fatal("no Retry-After on the 503")
					}
				}
				if !br.Open() {
					t.Fatal("the breaker is not open after repeated timeouts")
				}
				rs.signal(syscall.SIGCONT)
				eventually(t, alice, "/", http.StatusOK)
				mustContain(t, alice.get("/"), "Log out") // the session survived
			})
			t.Run("stopped and restarted", func(t *testing.T) {
				rs.stop()
				for range 5 {
					mustStatus(t, anon.get(photo), http.StatusOK)
					mustStatus(t, alice.get("/"), http.StatusServiceUnavailable)
				}
				if !br.Open() {
					t.Fatal("the breaker is not open after refused connections")
				}
				rs.start()
				eventually(t, alice, "/", http.StatusOK) // its session is gone with Redis: anonymous again
				mustStatus(t, anon.get(photo), http.StatusOK)
			})
		})
	}
}

// With the PostgreSQL backend serving the app paused (SIGSTOP), a request
// answers a 503 page at the request deadline instead of waiting for the
// pause to end; the app drops that connection and recovers by itself,
// even while the old backend is still stopped. (docs/reliability.md measures
// the whole server paused.)
func TestPostgresPausedAnswers503AtTheDeadline(t *testing.T) {
	// Stage 1: a long-running server with no cache in front of the database.
	if _, ok := LookupStage(1); !ok {
		t.Skip("this build has no stage 1")
	}
	need, _ := SchemaFor(1)
	dsn := modeltest.NewDB(t, need)
	setup := newTestAppOn(t, 1, dsn, t.TempDir(), "")
	b := setup.browser(t)
	b.signup("pat")
	res := b.upload(map[string]string{"title": "Quay"}, "quay.jpg", testJPEG(t, 64, 64))
	mustStatus(t, res, http.StatusSeeOther)
	photo := res.Header.Get("Location")

	// One connection, so that we know which backend to pause.
	db, err := models.Open(context.Background(), dsn, models.Options{MaxOpenConns: 1, StatementTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close(db) })
	d := &Deps{DB: db, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a, err := New(Config{DatabaseURL: dsn, DataDir: setup.cfg.DataDir, Stage: 1}, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	a.lim.reqTimeout = 500 * time.Millisecond
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	anon := quick((&testApp{App: a, srv: srv}).browser(t))
	mustStatus(t, anon.get(photo), http.StatusOK)

	var pid int
	if err := db.Raw("SELECT pg_backend_pid()").Scan(&pid).Error; err != nil {
		t.Fatal(err)
	}
	backend, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := backend.Signal(syscall.SIGSTOP); err != nil {
		t.Skipf("cannot pause the PostgreSQL backend %d (not root, and not its owner?): %v", pid, err)
	}
	t.Cleanup(func() { backend.Signal(syscall.SIGCONT) })

	res = anon.get(photo)
	mustStatus(t, res, http.StatusServiceUnavailable)
	if res.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After on the 503")
	}
	mustContain(t, res, "Please try again")
	eventually(t, anon, photo, http.StatusOK)
	backend.Signal(syscall.SIGCONT)
	mustStatus(t, anon.get("/readyz"), http.StatusOK)
}

// statement_timeout is set on the serving pool: PostgreSQL cancels a query
// that runs past it, and the app calls that a 503, not a 500.
func TestStatementTimeoutCancelsLongQueries(t *testing.T) {
	dsn := modeltest.NewDB(t, 0)
	db, err := models.Open(context.Background(), dsn, models.Options{StatementTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close(db) })
	err = db.Exec("SELECT pg_sleep(5)").Error
	if err == nil || !models.IsUnavailable(err) || !isUnavailable(err) {
		t.Fatalf("pg_sleep(5) under a 100 ms statement_timeout: %v, want a cancelled statement", err)
	}
}
