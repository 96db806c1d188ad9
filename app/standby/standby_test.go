package standby

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// primaryURL is the test cluster (scripts/pg.sh start test), skipping when
// it is missing, pg_basebackup is missing, or it cannot feed standbys.
func primaryURL(t *testing.T) string {
	t.Helper()
	if _, err := FindBin("postgres"); err != nil {
		t.Skipf("no PostgreSQL server binaries on this machine: %v", err)
	}
	if bin, _ := FindBin("postgres"); !exists(filepath.Join(bin, "pg_basebackup")) {
		t.Skipf("no pg_basebackup next to %s/postgres", bin)
	}
	url := os.Getenv("TEST_DATABASE_URL")
	if url == "" {
		t.Skip("TEST_DATABASE_URL not set: export TEST_DATABASE_URL=$(scripts/pg.sh start test)")
	}
	if err := CheckPrimary(context.Background(), url); err != nil {
		if errors.Is(err, ErrPrimaryNotReady) {
			t.Skipf("the test cluster cannot feed standbys: %v", err)
		}
		t.Fatal(err)
	}
	return url
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func exec1(t *testing.T, url, q string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func has(url, table string, id int) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return false
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s WHERE id = $1`, table), id).Scan(&n)
	return err == nil && n == 1
}

// waitFor polls until the standby shows the row, and says how long it took.
func waitFor(t *testing.T, url, table string, id int, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for !has(url, table, id) {
		if time.Since(start) > limit {
			t.Fatalf("row %d of %s not replayed after %s", id, table, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func slotExists(t *testing.T, url, slot string) bool {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func makeStarted(t *testing.T, o Options) *Standby {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	s, err := Make(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	made := time.Since(start)
	if err := s.Start(ctx); err != nil {
		s.Remove(context.Background())
		t.Fatal(err)
	}
	t.Logf("standby %s: made in %s, ready %s later", o.Slot, made.Round(time.Millisecond), (time.Since(start) - made).Round(time.Millisecond))
	return s
}

func TestMakeReplaysARowAndRemoveDropsTheSlot(t *testing.T) {
	url := primaryURL(t)
	dir := filepath.Join(t.TempDir(), "standby")
	slot := "test_standby_replays"
	s := makeStarted(t, Options{PrimaryURL: url, Dir: dir, Port: freePort(t), Slot: slot})
	t.Cleanup(func() { s.Remove(context.Background()) })
	if !slotExists(t, url, slot) {
		t.Fatal("no slot on the primary")
	}
	exec1(t, url, `DROP TABLE IF EXISTS standby_replays; CREATE TABLE standby_replays (id int PRIMARY KEY)`)
	t.Cleanup(func() { exec1(t, url, `DROP TABLE IF EXISTS standby_replays`) })
	for i := 1; i <= 5; i++ {
		exec1(t, url, `INSERT INTO standby_replays VALUES ($1)`, i)
		took := waitFor(t, s.URL("postgres"), "standby_replays", i, 5*time.Second)
		t.Logf("row %d visible on the standby after %s (polled with a new connection each 5 ms)", i, took.Round(time.Millisecond))
	}
	replayWait(t, url, s.URL("postgres"), "standby_replays")
	lag, err := ReadLag(context.Background(), s.URL("postgres"), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lag when idle: %+v", lag)

	if err := s.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	if slotExists(t, url, slot) {
		t.Error("Remove left the slot on the primary: it would keep WAL forever")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Remove left %s: %v", dir, err)
	}
}

func TestApplyDelayHoldsARowBack(t *testing.T) {
	url := primaryURL(t)
	const delay = 500 * time.Millisecond
	s := makeStarted(t, Options{PrimaryURL: url, Dir: filepath.Join(t.TempDir(), "standby"), Port: freePort(t),
		Slot: "test_standby_delayed", ApplyDelay: delay})
	t.Cleanup(func() { s.Remove(context.Background()) })
	exec1(t, url, `DROP TABLE IF EXISTS standby_delayed; CREATE TABLE standby_delayed (id int PRIMARY KEY)`)
	t.Cleanup(func() { exec1(t, url, `DROP TABLE IF EXISTS standby_delayed`) })
	for i := 1; i <= 3; i++ {
		exec1(t, url, `INSERT INTO standby_delayed VALUES ($1)`, i)
		committed := time.Now()
		time.Sleep(delay / 2)
		if has(s.URL("postgres"), "standby_delayed", i) {
			t.Fatalf("row %d visible %s after its commit, before the %s delay", i, time.Since(committed), delay)
		}
		waitFor(t, s.URL("postgres"), "standby_delayed", i, 5*time.Second)
		took := time.Since(committed)
		// The delay counts from the primary's commit timestamp, a little
		// before our Exec returned: allow a few ms.
		if took < delay-20*time.Millisecond {
			t.Fatalf("row %d visible after %s, before the %s delay", i, took, delay)
		}
		t.Logf("row %d visible on the delayed standby %s after its commit", i, took.Round(time.Millisecond))
	}
}

func TestMakeCleansWhatAKilledRunLeft(t *testing.T) {
	url := primaryURL(t)
	o := Options{PrimaryURL: url, Dir: filepath.Join(t.TempDir(), "standby"), Port: freePort(t), Slot: "test_standby_leftover"}
	s := makeStarted(t, o)
	// A killed supervisor leaves the server (its children), its slot and
	// its directory behind: SIGKILL the postmaster, which stays in Dir's
	// postmaster.pid, and forget s.
	if err := s.Process().Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.exited
	if !slotExists(t, url, o.Slot) {
		t.Fatal("the killed run left no slot: nothing to test")
	}
	s2 := makeStarted(t, o)
	t.Cleanup(func() { s2.Remove(context.Background()) })
	if err := s2.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	if slotExists(t, url, o.Slot) {
		t.Error("slot left after Remove")
	}
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

// replayWait measures, with the commit made durable (synchronous_commit on
// for the session: the test cluster turns it off, and then WAL reaches a
// standby only when the WAL writer flushes, every 200 ms), how long after
// a commit returns the standby's replay position passes the commit's.
func replayWait(t *testing.T, primary, standbyURL, table string) {
	ctx := context.Background()
	p, err := pgx.Connect(ctx, primary)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	sb, err := pgx.Connect(ctx, standbyURL)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close(ctx)
	if _, err := p.Exec(ctx, `SET synchronous_commit = on`); err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	for i := 100; i < 300; i++ {
		var lsn string
		if err := p.QueryRow(ctx, `WITH i AS (INSERT INTO `+table+` VALUES ($1)) SELECT pg_current_wal_insert_lsn()::text`, i).Scan(&lsn); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for {
			var done bool
			if err := sb.QueryRow(ctx, `SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn`, lsn).Scan(&done); err != nil {
				t.Fatal(err)
			}
			if done {
				break
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("standby not past %s after 5 s", lsn)
			}
		}
		waits = append(waits, time.Since(start))
	}
	sort.Slice(waits, func(i, j int) bool { return waits[i] < waits[j] })
	t.Logf("replay past a durable commit's insert LSN, 200 commits: p50 %s, p99 %s, max %s",
		waits[100], waits[197], waits[199])
}

// TestRestartAfterAKillCatchesUp is what a supervisor does when a standby
// dies: run Command again on the same Dir. It recovers and streams from
// its slot what it missed.
func TestRestartAfterAKillCatchesUp(t *testing.T) {
	url := primaryURL(t)
	s := makeStarted(t, Options{PrimaryURL: url, Dir: filepath.Join(t.TempDir(), "standby"), Port: freePort(t), Slot: "test_standby_restart"})
	t.Cleanup(func() { s.Remove(context.Background()) })
	exec1(t, url, `DROP TABLE IF EXISTS standby_restart; CREATE TABLE standby_restart (id int PRIMARY KEY)`)
	t.Cleanup(func() { exec1(t, url, `DROP TABLE IF EXISTS standby_restart`) })
	if err := s.Process().Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.exited
	exec1(t, url, `INSERT INTO standby_restart VALUES (1)`) // written while it is down
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The postmaster's children notice its death and exit on their own;
	// until they have, a new postmaster refuses the data directory
	// ("pre-existing shared memory block is still in use"). A supervisor
	// retries after a backoff (app/topology's proc: 200 ms, doubling), and
	// so does this test.
	start := time.Now()
	for attempt, backoff := 1, 200*time.Millisecond; ; attempt, backoff = attempt+1, backoff*2 {
		err := s.Start(ctx)
		if err == nil {
			break
		}
		if attempt == 4 {
			t.Fatal(err)
		}
		t.Logf("start %d failed (retrying after %s): %v", attempt, backoff, err)
		time.Sleep(backoff)
	}
	waitFor(t, s.URL("postgres"), "standby_restart", 1, 10*time.Second)
	t.Logf("restarted after SIGKILL: ready and caught up in %s", time.Since(start).Round(time.Millisecond))
}
