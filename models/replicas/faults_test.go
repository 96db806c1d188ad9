package replicas

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

type read struct {
	at, took time.Duration
	server   string
	err      error
}

// TestStandbyPausedThenKilledWhileReading: four readers loop on reads
// without a position while one standby is paused (SIGSTOP of its whole
// process group), resumed, then killed (SIGKILL). No read fails; none
// waits a second but those on the paused standby, which wait DownAfter
// for it to answer (plus a second); the victim serves nothing new while
// paused or dead.
func TestStandbyPausedThenKilledWhileReading(t *testing.T) {
	need(t)
	victim, err := startStandby(fast.PrimaryURL, "test_replicas_victim", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { victim.Remove(context.Background()) })
	e := newEnv(t, Options{}, victim, delayed)
	name := filepath.Base(victim.Dir)
	e.waitInRotation(t, true, name, "test_replicas_delayed")
	pid := victim.Process().Pid

	var mu sync.Mutex
	var reads []read
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				at := time.Since(start)
				srv, err := e.server(context.Background())
				mu.Lock()
				reads = append(reads, read{at, time.Since(start) - at, srv, err})
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Second)
	paused := time.Since(start)
	signalServer(t, pid, syscall.SIGSTOP)
	time.Sleep(1500 * time.Millisecond)
	resumed := time.Since(start)
	signalServer(t, pid, syscall.SIGCONT)
	time.Sleep(1500 * time.Millisecond)
	killed := time.Since(start)
	signalServer(t, pid, syscall.SIGKILL)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()

	var errs, total int
	var maxTook, maxPausedTook time.Duration
	var lastPaused, lastKilled time.Duration = -1, -1
	servedAfterResume := 0
	for _, r := range reads {
		total++
		if r.err != nil {
			errs++
			if errs <= 3 {
				t.Errorf("read at %s failed: %v", r.at, r.err)
			}
			continue
		}
		if r.at >= paused && r.at < resumed {
			maxPausedTook = max(maxPausedTook, r.took)
		} else {
			maxTook = max(maxTook, r.took)
		}
		end := r.at + r.took
		if r.server == name {
			switch {
			case r.at >= paused && r.at < resumed:
				lastPaused = max(lastPaused, end-paused)
			case r.at >= resumed && r.at < killed:
				servedAfterResume++
			case r.at >= killed:
				lastKilled = max(lastKilled, end-killed)
			}
		}
	}
	st := e.router.Stats()
	t.Logf("%d reads, %d errors, slowest %s (during the pause %s); victim served reads until %s into the pause and %s after the kill (-1: none); %d after resuming; fallbacks %d; victim left the rotation %d times",
		total, errs, maxTook.Round(time.Millisecond), maxPausedTook.Round(time.Millisecond), lastPaused.Round(time.Millisecond), lastKilled.Round(time.Millisecond), servedAfterResume, st.Fallbacks, st.Replicas[0].Left)
	if errs != 0 {
		t.Errorf("%d of %d reads failed", errs, total)
	}
	if maxTook >= time.Second {
		t.Errorf("a read took %s: reads must move off a dead standby within 1 s", maxTook)
	}
	// A paused standby looks slow until it has not answered for DownAfter
	// (a busy one answers late, and keeps its reads): its reads in flight
	// wait that long, then move.
	if limit := e.router.o.DownAfter + time.Second; maxPausedTook >= limit {
		t.Errorf("a read during the pause took %s: reads must move off a paused standby within DownAfter + 1 s (%s)", maxPausedTook, limit)
	}
	if servedAfterResume == 0 {
		t.Error("the resumed standby never rejoined the rotation")
	}
	if rs := st.Replicas[0]; rs.InRotation {
		t.Errorf("the killed standby is still in the rotation: %+v", rs)
	}
}

// TestALaggingReplicaLeavesAndRejoins: with MaxLag 200 ms, the standby
// 500 ms behind leaves the rotation while the primary writes, and comes
// back when the writes stop and it has caught up.
func TestALaggingReplicaLeavesAndRejoins(t *testing.T) {
	e := newEnv(t, Options{MaxLag: 200 * time.Millisecond}, delayed)
	e.waitInRotation(t, true, "test_replicas_delayed")
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			e.routed.WithContext(ctx).Exec(`INSERT INTO tags (name, photo_count) VALUES (md5(random()::text), 0)`)
		}
	}()
	e.waitInRotation(t, false, "test_replicas_delayed")
	rs := e.router.Stats().Replicas[0]
	t.Logf("left the rotation: lag %.3f s, %d bytes: %s", rs.LagSeconds, rs.LagBytes, rs.LastError)
	var srv string
	var err error
	if srv, err = e.server(ctx); err != nil || srv != "primary" {
		t.Errorf("a read while the only replica lags went to %q (%v)", srv, err)
	}
	<-done
	left := time.Now()
	e.waitInRotation(t, true, "test_replicas_delayed")
	t.Logf("rejoined %s after the writes stopped", time.Since(left).Round(time.Millisecond))
	if st := e.router.Stats(); st.NoReplicaReads == 0 {
		t.Errorf("no read counted as sent to the primary for want of a replica: %+v", st)
	}
}

func TestStickyKeepsTheHighestPosition(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	s := NewRedisSticky(rdb, "lsn:")
	ctx := context.Background()
	if l, err := s.Get(ctx, "ann"); err != nil || l != 0 {
		t.Fatalf("nothing kept: %v %v", l, err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Set(ctx, "ann", 0x3000060, 30*time.Second))
	must(s.Set(ctx, "ann", 0x3000010, 30*time.Second)) // an older request finishing late
	if l, _ := s.Get(ctx, "ann"); l != 0x3000060 {
		t.Errorf("kept %s, want 0/3000060", l)
	}
	mr.FastForward(31 * time.Second)
	if l, _ := s.Get(ctx, "ann"); l != 0 {
		t.Errorf("kept %s past its expiry", l)
	}
}

func TestIsRead(t *testing.T) {
	for q, want := range map[string]bool{
		"SELECT * FROM users":                                   true,
		"  (select 1)":                                          true,
		"SELECT nextval('users_id_seq')":                        false,
		"SELECT * FROM photos WHERE id = 1 FOR UPDATE":          false,
		"INSERT INTO users VALUES (1) RETURNING id":             false,
		"WITH d AS (DELETE FROM x RETURNING *) SELECT * FROM d": false,
		"UPDATE photos SET state = 'x' RETURNING id":            false,
	} {
		if got := isRead(q); got != want {
			t.Errorf("isRead(%q) = %v", q, got)
		}
	}
	if l, err := ParseLSN("16/B374D848"); err != nil || l.String() != "16/B374D848" {
		t.Errorf("LSN round trip: %v %v", l, err)
	}
}

// signalServer signals the postmaster and its children: each backend
// calls setsid() (InitPostmasterChild), so the postmaster's process group
// is only itself, and a paused postmaster alone still serves its open
// connections.
func signalServer(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	pids := []int{pid}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces: parse after ')'.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		var state string
		var ppid int
		if _, err := fmt.Sscan(rest, &state, &ppid); err == nil && ppid == pid {
			var child int
			fmt.Sscan(strings.TrimPrefix(filepath.Dir(f), "/proc/"), &child)
			pids = append(pids, child)
		}
	}
	for _, p := range pids {
		syscall.Kill(p, sig)
	}
	t.Logf("%s to the postmaster and %d children", sig, len(pids)-1)
}

// A poll that timed out (a server starved of CPU, or paused) keeps the
// replica in the rotation until DownAfter has passed without an answer; a
// refused or dropped connection (a dead server) takes it out at once. The
// errors are the real ones: a connection to a port nobody listens on, and
// a connection that cannot finish in time (a listener that never answers).
func TestAPollThatTimesOutIsSlowNotDown(t *testing.T) {
	ctx := context.Background()
	dead := listenAndClose(t)
	_, refused := pgx.Connect(ctx, "postgres://x@"+dead+"/x?connect_timeout=1")
	if refused == nil || isTimeout(refused) {
		t.Fatalf("a closed port: %v, want an error that is not a timeout", refused)
	}
	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, slow := pgx.Connect(tctx, "postgres://x@"+silent.Addr().String()+"/x")
	if slow == nil || !isTimeout(slow) {
		t.Fatalf("a server that does not answer: %v, want a timeout", slow)
	}
	const downAfter = 500 * time.Millisecond
	for _, c := range []struct {
		err   error
		since time.Duration
		want  bool
	}{
		{refused, 0, true},
		{slow, 100 * time.Millisecond, false},
		{slow, downAfter, true},
	} {
		if got := pollDown(isTimeout(c.err), c.since, downAfter); got != c.want {
			t.Errorf("pollDown(%v, %s since the last answer) = %v, want %v", c.err, c.since, got, c.want)
		}
	}
}

func listenAndClose(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
