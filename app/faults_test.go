package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
	"gorm.io/gorm"

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

// With PostgreSQL hung (every backend of the test's database paused with
// SIGSTOP: the pool's and the watchdog's) while requests wait on it, the
// watchdog opens the breaker, and the requests waiting then fail at once
// (a 503), not at their 5 s deadline: the target of issue 31 is that none
// waits over 2 s (asserted here with room for a loaded machine: 2.5 s; the
// trip comes 1 to 1.5 s after the pause). A page asked after the trip
// answers the database's 503 page with Retry-After at once, and /readyz
// says why. When the backends resume, the probe's answer closes the
// breaker and the pages answer 200 again, without a restart. Only this
// database's backends are paused, so other packages' tests on the shared
// cluster go on. (docs/reliability.md measures the whole cluster paused
// under load.)
func TestPostgresPausedOpensTheBreaker(t *testing.T) {
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

	w, err := newPostgresWatch(dsn, faultLog())
	if err != nil {
		t.Fatal(err)
	}
	// Two connections, both open before the pause: a request cannot reach
	// PostgreSQL on a fresh, unpaused backend.
	db, err := models.Open(context.Background(), dsn, w.options(models.Options{MaxOpenConns: 2, StatementTimeout: 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close(db) })
	var warm errgroup.Group
	for range 2 {
		warm.Go(func() error { return db.Exec("SELECT pg_sleep(0.1)").Error })
	}
	if err := warm.Wait(); err != nil {
		t.Fatal(err)
	}
	anon := watchedServer(t, dsn, setup.cfg.DataDir, w, db)
	mustStatus(t, anon.get(photo), http.StatusOK)
	waitUntil(t, 10*time.Second, "the watchdog's first probe", func() bool { last, _ := w.dog.RoundTrips(); return last > 0 })

	resume := pauseBackends(t, dsn)
	// Requests that reach the paused backends and wait: the pile-up the
	// watchdog looks for. They end at the trip, with a 503.
	var waiting errgroup.Group
	for range 4 {
		waiting.Go(func() error {
			start := time.Now()
			res := anon.get(photo)
			if took := time.Since(start); took > 2500*time.Millisecond {
				return fmt.Errorf("a request caught by the pause waited %v (answered %d), want < 2.5 s", took.Round(time.Millisecond), res.Status)
			}
			if res.Status != http.StatusServiceUnavailable {
				return fmt.Errorf("a request caught by the pause answered %d, want 503", res.Status)
			}
			return nil
		})
	}
	if err := waiting.Wait(); err != nil {
		t.Fatal(err)
	}
	if !w.breaker.Open() {
		t.Fatal("the requests failed and the breaker is closed")
	}

	res = anon.get(photo)
	mustStatus(t, res, http.StatusServiceUnavailable)
	if res.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After on the 503")
	}
	mustContain(t, res, "The database is not answering")
	res = anon.get("/readyz")
	mustStatus(t, res, http.StatusServiceUnavailable)
	mustContain(t, res, "no answer in")

	resume()
	eventually(t, anon, photo, http.StatusOK)
	mustStatus(t, anon.get("/readyz"), http.StatusOK)
}

// A database that accepts nothing (a blackholed host: packets dropped,
// modelled by a proxy that stops forwarding and never forwards a new
// connection) met by an empty pool: every request waits in the pool's
// dial, with no statement sent. The watchdog counts the dials as calls
// waiting, trips, and the dials in flight fail then: each request answers
// 503 within 2.5 s, not at its 5 s deadline.
func TestWatchdogTripsOnAHungDial(t *testing.T) {
	if _, ok := LookupStage(1); !ok {
		t.Skip("this build has no stage 1")
	}
	need, _ := SchemaFor(1)
	dsn := modeltest.NewDB(t, need)
	hole := newStallProxy(t, dsn)
	w, err := newPostgresWatch(hole.url, faultLog())
	if err != nil {
		t.Fatal(err)
	}
	db, err := models.Open(context.Background(), hole.url, w.options(models.Options{MaxOpenConns: 4, StatementTimeout: 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close(db) })
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	sqlDB.SetMaxIdleConns(0) // the pool keeps no connection: each request dials
	anon := watchedServer(t, dsn, t.TempDir(), w, db)
	mustStatus(t, anon.get("/"), http.StatusOK)
	waitUntil(t, 10*time.Second, "the watchdog's first probe", func() bool { last, _ := w.dog.RoundTrips(); return last > 0 })

	hole.stall()
	var waiting errgroup.Group
	for range 2 {
		waiting.Go(func() error {
			start := time.Now()
			res := anon.get("/")
			if took := time.Since(start); took > 2500*time.Millisecond {
				return fmt.Errorf("a request dialling the blackholed database waited %v (answered %d), want < 2.5 s", took.Round(time.Millisecond), res.Status)
			}
			if res.Status != http.StatusServiceUnavailable {
				return fmt.Errorf("a request dialling the blackholed database answered %d, want 503", res.Status)
			}
			return nil
		})
	}
	if err := waiting.Wait(); err != nil {
		t.Fatal(err)
	}
	if !w.breaker.Open() {
		t.Fatal("the breaker is closed")
	}
}

// Behind a pooler that queues (stage 7's PgBouncer, no reserve pool), the
// pool's statements wait while PostgreSQL itself answers: a full pool, not
// a hung server. The watchdog probes WATCHDOG_DATABASE_URL (PostgreSQL
// directly), not DATABASE_URL, so it keeps the breaker closed. Modelled
// by a proxy in front of the pool's path that stops forwarding.
func TestWatchdogProbesPostgresNotThePooler(t *testing.T) {
	if _, ok := LookupStage(1); !ok {
		t.Skip("this build has no stage 1")
	}
	need, _ := SchemaFor(1)
	dsn := modeltest.NewDB(t, need)
	queue := newStallProxy(t, dsn)
	cfg := Config{DatabaseURL: queue.url, WatchdogURL: dsn, Stage: 1, DataDir: t.TempDir()}
	d, done, err := bootWatched(context.Background(), cfg, faultLog(), models.Options{StatementTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(done)
	waitUntil(t, 10*time.Second, "the watchdog's first probe", func() bool { last, _ := d.pg.dog.RoundTrips(); return last > 0 })
	queue.stall()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var queued errgroup.Group
	for range 2 {
		queued.Go(func() error { d.DB.WithContext(ctx).Exec("SELECT 1"); return nil })
	}
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if d.pg.breaker.Open() {
			t.Fatalf("statements queued in front of an answering PostgreSQL opened the breaker: %v", d.pg.breaker.Cause())
		}
	}
	cancel()
	queued.Wait()
}

// faultLog is the log of the watchdog tests: shown with -v.
func faultLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// watchedServer serves stage 1 on db behind the watchdog w, with the
// production request deadline (5 s), and returns a browser whose requests
// give up after 10 s.
func watchedServer(t *testing.T, dsn, dataDir string, w *postgresWatch, db *gorm.DB) *browser {
	t.Helper()
	d := &Deps{DB: db, Log: faultLog(), pg: w}
	t.Cleanup(w.start())
	a, err := New(Config{DatabaseURL: dsn, DataDir: dataDir, Stage: 1}, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if a.lim.reqTimeout != requestTimeout {
		t.Fatalf("the request deadline is %v, want the production %v", a.lim.reqTimeout, requestTimeout)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	anon := quick((&testApp{App: a, srv: srv}).browser(t))
	anon.c.Timeout = 10 * time.Second
	return anon
}

// stallProxy forwards TCP to a PostgreSQL until stall: from then on it
// forwards nothing either way, and accepts new connections that it never
// forwards. So it models a blackholed host, or a pooler that queues every
// client.
type stallProxy struct {
	url     string
	stalled chan struct{}
	closed  chan struct{}
}

func newStallProxy(t *testing.T, dsn string) *stallProxy {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.Host = ln.Addr().String()
	p := &stallProxy{url: u.String(), stalled: make(chan struct{}), closed: make(chan struct{})}
	var mu sync.Mutex
	var conns []net.Conn
	keep := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		close(p.closed)
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			select {
			case <-p.stalled: // what arrives now is never delivered
				<-p.closed
				return
			default:
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			keep(c)
			select {
			case <-p.stalled:
				continue // accepted, never answered
			default:
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			keep(s)
			go pipe(s, c)
			go pipe(c, s)
		}
	}()
	return p
}

func (p *stallProxy) stall() { close(p.stalled) }

// Slow statements that complete never open the breaker: three queries of
// two seconds each (twice the watchdog's bound) fill the pool while the
// probe, on its own connection, keeps answering.
func TestSlowPostgresKeepsTheBreakerClosed(t *testing.T) {
	dsn := modeltest.NewDB(t, 0)
	w, err := newPostgresWatch(dsn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	db, err := models.Open(context.Background(), dsn, w.options(models.Options{MaxOpenConns: 3}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close(db) })
	t.Cleanup(w.start())
	var slow errgroup.Group
	for range 6 { // twice the pool: half of them wait for a connection too
		slow.Go(func() error { return db.Exec("SELECT pg_sleep(2)").Error })
	}
	done := make(chan error)
	go func() { done <- slow.Wait() }()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if _, slowest := w.dog.RoundTrips(); slowest == 0 {
				t.Fatal("the probe never answered")
			}
			return
		case <-time.After(20 * time.Millisecond):
			if w.breaker.Open() {
				t.Fatalf("slow queries opened the breaker: %v", w.breaker.Cause())
			}
		}
	}
}

// pauseBackends stops (SIGSTOP) every backend of dsn's database but the
// one that lists them, and returns what resumes them (also run at cleanup).
func pauseBackends(t *testing.T, dsn string) (resume func()) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(),
		"SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
	if err != nil {
		t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	var paused []*os.Process
	resume = func() {
		for _, p := range paused {
			p.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	for _, pid := range pids {
		p, _ := os.FindProcess(int(pid))
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			resume()
			t.Skipf("cannot pause the PostgreSQL backend %d (not root, and not its owner?): %v", pid, err)
		}
		paused = append(paused, p)
	}
	return resume
}

// waitUntil polls cond until it holds, failing the test after limit.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
