package tickets_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"flickrkillr/models"
	"flickrkillr/models/modeltest"
)

// need skips the test without a test cluster, saying how to get one (under
// CI modeltest fails it instead).
func need(t *testing.T) {
	t.Helper()
	if os.Getenv("TEST_DATABASE_URL") == "" && os.Getenv("CI") == "" {
		t.Skip("TEST_DATABASE_URL is not set: export TEST_DATABASE_URL=$(scripts/pg.sh start test), or run `make test`")
	}
	modeltest.AdminURL(t)
}

// testDB is a fresh database on the test cluster (TEST_DATABASE_URL) and a
// pool to it, closed when the test ends.
func testDB(t *testing.T) (string, *gorm.DB) {
	t.Helper()
	need(t)
	dsn := modeltest.NewDB(t, 0) // a ticket server needs no schema: Setup makes its sequence
	return dsn, open(t, dsn)
}

// open is models.Open on dsn, closed when the test ends.
func open(t *testing.T, dsn string) *gorm.DB {
	t.Helper()
	db, err := models.Open(context.Background(), dsn, models.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
	})
	return db
}

// pgServer is a PostgreSQL server of the test's own, in a temporary
// directory: a ticket server the test can kill, pause and start again,
// which the shared test cluster must never be.
type pgServer struct {
	t      *testing.T
	bin    string // the server binaries' directory
	dir    string // the temporary directory; data/ holds the cluster
	port   int
	cred   *syscall.Credential // the postgres user when we are root (PostgreSQL refuses root)
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd is gone
}

// newServer initdb's a cluster in a temporary directory and starts it on a
// free port of 127.0.0.1. It is killed and removed when the test ends,
// whatever state the test left it in.
func newServer(t *testing.T) *pgServer {
	t.Helper()
	need(t) // no test cluster, no server of our own either: the same switch for every test
	bin, err := findBin("initdb")
	if err != nil {
		t.Skip(err)
	}
	s := &pgServer{t: t, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("running as root needs a postgres user to run the server as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// Not t.TempDir: its parent is 0700 root's, which the postgres user
	// cannot pass through. A short path also keeps the socket under its
	// length limit (we listen on TCP only anyway).
	if s.dir, err = os.MkdirTemp("", "tickets-test-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.remove)
	if s.cred != nil {
		if err := os.Chown(s.dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	l.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", s.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v: %s", err, out)
	}
	s.start()
	return s
}

func (s *pgServer) data() string { return filepath.Join(s.dir, "data") }

// url is a connection URL for database db on the server.
func (s *pgServer) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// start runs the server (in its own process group, out of the way of a
// terminal's ^C) and waits until it answers.
func (s *pgServer) start() {
	s.t.Helper()
	logf, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", s.data(),
		"-p", strconv.Itoa(s.port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
		"-c", "fsync=off", "-c", "shared_buffers=16MB", "-c", "max_connections=40")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: s.cred}
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.t.Fatalf("start postgres: %v", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(s.exited) }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, s.url("postgres"))
		if err == nil {
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return
		}
		select {
		case <-s.exited:
			s.t.Fatalf("postgres exited while starting: %s", s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("postgres not ready after 10 s: %v: %s", err, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill is the server's sudden death: SIGKILL to the postmaster and every
// backend at once, so that clients see their connections reset and new
// ones refused.
func (s *pgServer) kill() {
	s.t.Helper()
	if s.cmd == nil {
		return
	}
	s.signal(syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		s.t.Errorf("postgres (pid %d) still there 5 s after SIGKILL", s.cmd.Process.Pid)
	}
	s.cmd = nil
}

// pause stops the server and its backends (SIGSTOP) without closing a
// socket: connections open and queries go out, and nothing answers, like
// a host that hangs or drops off the network. It returns once every one of
// them is stopped. resume undoes it.
func (s *pgServer) pause() {
	s.t.Helper()
	for _, pid := range s.signal(syscall.SIGSTOP) {
		for deadline := time.Now().Add(2 * time.Second); !stopped(pid); {
			if time.Now().After(deadline) {
				s.t.Fatalf("postgres process %d not stopped 2 s after SIGSTOP", pid)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func (s *pgServer) resume() { s.signal(syscall.SIGCONT) }

// signal sends sig to the postmaster and its children, and returns their
// pids. A process-group signal is not enough: each child of the postmaster
// calls setsid. The postmaster is stopped first, so that it forks no
// backend we miss.
func (s *pgServer) signal(sig syscall.Signal) []int {
	pid := s.cmd.Process.Pid
	syscall.Kill(pid, syscall.SIGSTOP)
	for deadline := time.Now().Add(2 * time.Second); !stopped(pid) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // a fork under way finishes before the stop
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if child, err := strconv.Atoi(f); err == nil {
			syscall.Kill(child, sig)
			pids = append(pids, child)
		}
	}
	syscall.Kill(pid, sig)
	return append(pids, pid)
}

// stopped says whether process pid is stopped (or gone).
func stopped(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	rest := string(b[bytes.LastIndexByte(b, ')')+1:])
	f := strings.Fields(rest)
	return len(f) > 0 && (f[0] == "T" || f[0] == "t" || f[0] == "Z" || f[0] == "X")
}

// remove kills the server if it runs and removes its directory.
func (s *pgServer) remove() {
	s.kill()
	if err := os.RemoveAll(s.dir); err != nil {
		s.t.Logf("remove %s: %v", s.dir, err)
	}
}

func (s *pgServer) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(bytes.ToValidUTF8(b, nil)))
}

// createDB makes database name on the server.
func (s *pgServer) createDB(name string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.url("postgres"))
	if err != nil {
		s.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		s.t.Fatal(err)
	}
	return s.url(name)
}

// findBin is the directory holding a PostgreSQL server tool, found like
// scripts/pg.sh and app/standby.FindBin do: PATH first (a symlink there
// points at the directory of the other tools), then Debian's
// /usr/lib/postgresql/<major>/bin, the newest first. The tests of
// models/tickets are in every workshop tag, app/standby only in stage 9's
// and later.
func findBin(tool string) (string, error) {
	if p, err := exec.LookPath(tool); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if fileExists(filepath.Join(d, tool)) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%s not found: PostgreSQL's server tools are not installed (apt-get install postgresql)", tool)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
