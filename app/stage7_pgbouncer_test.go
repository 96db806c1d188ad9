package app

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"flickrkillr/migrations"
)

// ownCluster starts a PostgreSQL cluster of the test's own (initdb in a
// temporary folder, as scripts/pg.sh does for the project's clusters) with
// maxConns connections, and returns the URL of a database migrated to
// schema version; the cluster is stopped and removed when the test ends.
// The shared test cluster has max_connections 200 and every test's
// connections: a run that is about connection limits needs its own.
func ownCluster(t *testing.T, maxConns int, version int64) string {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Strings(bins)
	if len(bins) == 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("initdb is not installed (scripts/pg.sh installs postgresql)")
		}
		t.Skip("initdb is not installed (apt-get install postgresql)")
	}
	bin := filepath.Dir(bins[len(bins)-1])
	dir, err := os.MkdirTemp("", "flickrkillr-pg-")
	if err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) *exec.Cmd { return exec.Command(filepath.Join(bin, name), args...) }
	if os.Geteuid() == 0 { // PostgreSQL refuses root: the cluster is the postgres user's
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("running as root without a postgres user to own a cluster: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		os.Chown(dir, uid, gid)
		run = func(name string, args ...string) *exec.Cmd {
			return exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(bin, name)}, args...)...)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	addr := mustFreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf("listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = ''\nmax_connections = %d\n"+
		"fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 64MB\n", port, maxConns)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(conf)
	f.Close()
	logFile := filepath.Join(dir, "postgres.log")
	if out, err := run("pg_ctl", "-D", data, "-l", logFile, "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		b, _ := os.ReadFile(logFile)
		os.RemoveAll(dir)
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, b)
	}
	t.Cleanup(func() {
		if out, err := run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop").CombinedOutput(); err != nil {
			t.Logf("pg_ctl stop: %v\n%s", err, out)
		}
		os.RemoveAll(dir)
	})
	admin := "postgres://postgres@" + addr + "/postgres?sslmode=disable"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE flickrkillr"); err != nil {
		t.Fatal(err)
	}
	dsn := "postgres://postgres@" + addr + "/flickrkillr?sslmode=disable"
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := migrations.To(ctx, db, version, func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	return dsn
}

// Stage 7 at eight instances on a cluster with max_connections 100: each
// instance's pool can grow to 80 (8 × 80 = 640), and without PgBouncer
// PostgreSQL refused them ("too many clients"). Through PgBouncer they
// share one pool sized to the server, and bounded traffic from 128 clients (which, with PGBOUNCER=0, got "too many clients")
// at once gets no error; the eight instances have eight distinct ports
// (nginx -t refused a duplicate), PgBouncer is in /topology and its pools on
// the supervisor's metrics, and the statement timeout reaches the server
// connections as the role's default. The load figures (256 users, with and
// without PgBouncer) are in docs/stages/07-scale-out.md, from the load tool.
func TestStage7EightInstancesThroughPgBouncer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary, starts a PostgreSQL cluster, PgBouncer, nginx, Redis and eight instances")
	}
	needCommands(t, "nginx", "pgbouncer")
	redisURL := topologyRedis(t)
	dsn := ownCluster(t, 100, stageSchema(t, scaleOutStage))
	sup, addr, admin := serveCommand(t, dsn, []string{"--stage", "7", "--instances", "8"}, "REDIS_URL="+redisURL, "PGBOUNCER=")
	work := sup.Dir // the topology's folder: PgBouncer's auth_file is there
	logs, _ := runTopology(t, sup, admin, 180*time.Second, "eight instances to serve through nginx")
	base := "http://" + addr
	topo := readTopology(t, admin)
	insts := topo.instances()
	seen := map[string]string{}
	for _, in := range insts {
		for _, a := range []string{in.Addr, in.Admin} {
			if other, dup := seen[a]; dup {
				t.Errorf("%s and %s share %s", other, in.Name, a)
			}
			seen[a] = in.Name
		}
	}
	pooler := topo.instance("pgbouncer")
	if len(insts) != 8 || !pooler.Up || pooler.Role != "PostgreSQL pooler" {
		t.Fatalf("/topology.json has %d instances and pgbouncer %+v; want 8 and pgbouncer up", len(insts), pooler)
	}

	// The timeout is the role's default, which every server connection
	// PgBouncer opens gets (a startup parameter would be refused).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// PgBouncer authenticates its clients (auth_type scram-sha-256): the
	// password generated for this start is in the auth_file of the
	// topology's folder, as the instances get it in their DATABASE_URL.
	_, port, _ := net.SplitHostPort(addr)
	userlist, err := os.ReadFile(filepath.Join(work, ".run", "nginx-"+port, "pgbouncer", "userlist.txt"))
	if err != nil {
		t.Fatal(err)
	}
	password := regexpFind(`(?m)^"postgres" "([^"]+)"$`, string(userlist))
	if password == "" {
		t.Fatalf("no password for postgres in PgBouncer's auth_file:\n%s", userlist)
	}
	if c, err := pgx.Connect(ctx, "postgres://postgres@"+pooler.Addr+"/flickrkillr?sslmode=disable"); err == nil {
		c.Close(ctx)
		t.Error("PgBouncer served a client without the password")
	}
	viaPooler, err := pgx.Connect(ctx, "postgres://postgres:"+password+"@"+pooler.Addr+"/flickrkillr?sslmode=disable&default_query_exec_mode=exec")
	if err != nil {
		t.Fatal(err)
	}
	var timeout string
	err = viaPooler.QueryRow(ctx, "SHOW statement_timeout").Scan(&timeout)
	viaPooler.Close(ctx)
	if err != nil || timeout != "5s" {
		t.Errorf("statement_timeout through PgBouncer: %q (%v), want 5s", timeout, err)
	}

	// Bounded traffic: 128 clients at once reading pages that query the
	// database, as 8 signed-up users (signed up one at a time first: the
	// sign-up's password hashing has an admission limit of its own, which
	// answers 503 to a crowd by design). Logged in, so that the pages are
	// not the anonymous view cache's but the database's (anonymous, the same
	// run passed without PgBouncer too). On a loaded machine the session
	// store (Redis, 200 ms read timeouts) answers some 503s: loading or
	// committing a session, the Redis breaker's business (the issue
	// "Nothing lost, nothing hung"). So a 503 fails this test when the
	// instances logged a database connection error; other 503s are counted
	// and shown; any other status fails it.
	const users, clients, pages = 8, 128, 20
	jars := make([]http.CookieJar, users)
	for i := range users {
		jars[i], _ = cookiejar.New(nil)
		b := &browser{t: t, base: base, c: &http.Client{Jar: jars[i], Timeout: 30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
		b.signup(fmt.Sprintf("load%d", i))
	}
	var requests, failures, sessionStore atomic.Int64 // sessionStore: the 503s
	var first atomic.Value
	fail := func(err error) {
		failures.Add(1)
		first.CompareAndSwap(nil, err)
	}
	// PostgreSQL's side, sampled while the traffic runs: its client
	// connections to the app's database stay within PgBouncer's pool (40 at
	// max_connections 100: half of what the superuser's reserve leaves, at
	// most 40), however many the eight instances' pools hold.
	watch, err := pgx.Connect(ctx, strings.Replace(dsn, "/flickrkillr?", "/postgres?", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(context.Background())
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer wcancel()
	var maxBackends atomic.Int64
	watching := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			var n int64
			if err := watch.QueryRow(wctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = 'flickrkillr' AND backend_type = 'client backend'`).Scan(&n); err == nil && n > maxBackends.Load() {
				maxBackends.Store(n)
			}
			select {
			case <-watching:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Jar: jars[i%users], Timeout: 60 * time.Second,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			for j := range pages {
				path := []string{"/", fmt.Sprintf("/users/load%d", i%users), fmt.Sprintf("/users/load%d", (i+1)%users), "/upload"}[j%4]
				requests.Add(1)
				res, err := c.Get(base + path)
				if err != nil {
					fail(err)
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				switch res.StatusCode {
				case http.StatusOK:
				case http.StatusServiceUnavailable:
					sessionStore.Add(1)
				default:
					fail(fmt.Errorf("GET %s: status %d", path, res.StatusCode))
				}
			}
		}()
	}
	wg.Wait()
	close(watching)
	<-watched
	if m := maxBackends.Load(); m == 0 || m > 40 {
		t.Errorf("PostgreSQL had up to %d client connections to the app's database during the traffic, want 1 to 40 (PgBouncer's pool)", m)
	} else {
		t.Logf("PostgreSQL had at most %d client connections to the app's database", m)
	}
	if n, f := requests.Load(), failures.Load(); n != clients*pages || f != 0 {
		t.Errorf("%d of %d requests failed (first: %v), want 0", f, n, first.Load())
	}
	l := logs.String()
	if strings.Contains(l, "too many clients") || strings.Contains(l, "failed to connect to `user=") {
		t.Errorf("the instances could not connect to the database (%d 503s); their log has it", sessionStore.Load())
	} else if strings.Count(l, "session") < int(sessionStore.Load()) {
		t.Errorf("%d 503s, and fewer session-store errors in the instances' log", sessionStore.Load())
	}
	t.Logf("%d requests from %d clients at once through 8 instances and PgBouncer: %d failed, %d 503s of the session store (Redis)",
		requests.Load(), clients, failures.Load(), sessionStore.Load())

	// PgBouncer's pools are on the supervisor's metrics (the dashboard's panels).
	res, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{"pgbouncer_clients_active", "pgbouncer_servers_idle", "pgbouncer_transactions_total"} {
		if !strings.Contains(string(body), want+`{instance="pgbouncer"}`) {
			t.Errorf("the supervisor's /metrics lacks %s", want)
		}
	}
	if m := regexpFind(`pgbouncer_transactions_total\{instance="pgbouncer"\} ([0-9.e+]+)`, string(body)); m == "" || m == "0" {
		t.Errorf("PgBouncer counted no transactions (%q)", m)
	}
	dash := (&browser{t: t, base: "http://" + admin, c: http.DefaultClient}).get("/dashboard/data.json")
	mustContain(t, dash, "PgBouncer pools (SHOW POOLS)", "PgBouncer traffic (SHOW STATS)")
}

// regexpFind is pattern's first group in s, or "".
func regexpFind(pattern, s string) string {
	if m := regexp.MustCompile(pattern).FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return ""
}
