// Package standby makes one PostgreSQL streaming standby of a primary and
// gives its supervisor what it needs to run it: the command, the user it
// runs as, the signal that stops it, and how to tear it down (its
// replication slot on the primary, its data directory). It supervises
// nothing itself: app/topology's proc restarts processes, and a standby is
// one more process for it (Command, Cred, StopSignal follow proc's shape).
// Start and Stop are the small version of that for tests and tools.
//
// It never imports package app and knows nothing of gorm: it talks to the
// servers with pgx and runs PostgreSQL's own tools.
package standby

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options say which primary to copy and where the standby lives.
type Options struct {
	// PrimaryURL is a libpq connection string or URL of the primary, for a
	// role with the REPLICATION attribute (initdb's postgres user has it;
	// initdb's pg_hba.conf lets local replication connections in).
	// pg_basebackup -R writes it into the standby as primary_conninfo.
	PrimaryURL string
	Dir        string // the standby's data directory; removed and remade by Make
	Port       int    // the port it listens on, on 127.0.0.1
	// Slot is the physical replication slot made on the primary (-C -S):
	// the primary keeps the WAL the standby has not received yet, so a
	// standby that was down catches up instead of needing a new base
	// backup. The primary keeps that WAL forever (max_slot_wal_keep_size
	// -1 by default): drop the slot with Remove or DropSlot.
	Slot string
	// ApplyDelay, when positive, holds each transaction back this long
	// before replaying it (recovery_min_apply_delay): a fixed lag to test
	// read-your-writes against.
	ApplyDelay time.Duration
	// Bin is the directory of the PostgreSQL server binaries (postgres and
	// pg_basebackup); empty finds the server like scripts/pg.sh does (PATH,
	// then /usr/lib/postgresql/*/bin).
	Bin string
}

// StopSignal is the signal that stops a standby: SIGINT is PostgreSQL's
// "fast" shutdown (SIGTERM, "smart", waits for every client to leave).
const StopSignal = syscall.SIGINT

// Standby is one made standby.
type Standby struct {
	Options
	cred *syscall.Credential // the postgres user when we are root

	cmd    *exec.Cmd     // set by Start
	exited chan struct{} // closed when the process started by Start is gone
}

// Make removes what a killed earlier run left under the same Dir and Slot
// (a postmaster still running there, the slot, the directory), then copies
// the primary with pg_basebackup and writes the standby's settings. It does
// not start the standby: see Command and Start.
func Make(ctx context.Context, o Options) (*Standby, error) {
	if o.PrimaryURL == "" || o.Dir == "" || o.Port == 0 || o.Slot == "" {
		return nil, errors.New("standby: PrimaryURL, Dir, Port and Slot are required")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("standby: %w", err)
	}
	o.Dir = dir
	if o.Bin == "" {
		if o.Bin, err = FindBin("postgres"); err != nil { // the server, not only the client tools (Debian puts wrappers of those in /usr/bin)
			return nil, err
		}
	}
	s := &Standby{Options: o}
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root (scripts/pg.sh runs it as the
		// postgres user with runuser); we set the user on the process.
		if s.cred, err = postgresCred(); err != nil {
			return nil, err
		}
	}
	if err := s.cleanLeftovers(ctx); err != nil {
		return nil, err
	}
	if err := s.makeDir(); err != nil {
		return nil, err
	}
	if err := CheckPrimary(ctx, o.PrimaryURL); err != nil {
		return nil, err
	}
	bb := exec.CommandContext(ctx, filepath.Join(o.Bin, "pg_basebackup"),
		"-d", o.PrimaryURL, "-D", o.Dir, "-R", "-S", o.Slot, "-C", "-X", "stream", "-c", "fast", "--no-sync")
	bb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	var out bytes.Buffer
	bb.Stdout, bb.Stderr = &out, &out
	if err := bb.Run(); err != nil {
		return nil, fmt.Errorf("standby: pg_basebackup into %s: %w: %s", o.Dir, err, strings.TrimSpace(out.String()))
	}
	if err := s.writeConf(); err != nil {
		return nil, err
	}
	return s, nil
}

// writeConf appends the standby's own settings to postgresql.auto.conf,
// after what pg_basebackup -R wrote there (primary_conninfo,
// primary_slot_name) and after the primary's ALTER SYSTEM settings it
// copied: the last line of a setting wins.
func (s *Standby) writeConf() error {
	sock := s.Dir
	if len(sock)+len("/.s.PGSQL.65535") > 100 {
		// A Unix socket path has a limit of about 107 bytes; past it
		// PostgreSQL refuses to start. TCP on 127.0.0.1 is what we use.
		sock = ""
	}
	var b strings.Builder
	b.WriteString("\n# written by flickrkillr's standby.Make\n")
	fmt.Fprintf(&b, "port = %d\n", s.Port)
	b.WriteString("listen_addresses = '127.0.0.1'\n")
	// The socket goes inside Dir, not /var/run/postgresql, which a
	// non-packaged run may not have or may not be allowed to write.
	fmt.Fprintf(&b, "unix_socket_directories = '%s'\n", strings.ReplaceAll(sock, "'", "''"))
	b.WriteString("hot_standby = on\n")
	// Without feedback the primary's VACUUM removes rows a standby query
	// still reads, and the standby cancels that query ("canceling statement
	// due to conflict with recovery"): seen on this machine after a DELETE
	// and a VACUUM on the primary (issue 34). With it the primary keeps
	// those rows until the standby's queries are done.
	b.WriteString("hot_standby_feedback = on\n")
	if s.ApplyDelay > 0 {
		fmt.Fprintf(&b, "recovery_min_apply_delay = '%dms'\n", s.ApplyDelay.Milliseconds())
	}
	// Its log goes to the stderr its supervisor gives it.
	b.WriteString("logging_collector = off\n")
	f, err := os.OpenFile(filepath.Join(s.Dir, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("standby: %w", err)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return fmt.Errorf("standby: write postgresql.auto.conf: %w", err)
	}
	return f.Close()
}

// Command is the standby's server in the foreground (postgres -D dir), for
// a supervisor to start, wait for and restart. The caller sets
// SysProcAttr; when Cred is not nil it must be its Credential.
func (s *Standby) Command() *exec.Cmd {
	return exec.Command(filepath.Join(s.Bin, "postgres"), "-D", s.Dir)
}

// Cred is the user the server must run as: the postgres user when we are
// root (PostgreSQL refuses root), else nil (ourselves).
func (s *Standby) Cred() *syscall.Credential { return s.cred }

// URL is a connection URL for database db on the standby.
func (s *Standby) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// Start runs Command in its own process group (stopped with SIGTERM if we
// die), its log in Dir/standby.log, and waits until it accepts queries.
func (s *Standby) Start(ctx context.Context) error {
	logf, err := os.OpenFile(filepath.Join(s.Dir, "standby.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("standby: %w", err)
	}
	cmd := s.Command()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM, Credential: s.cred}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("standby: start postgres on port %d: %w", s.Port, err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(s.exited) }()
	return s.WaitReady(ctx, 60*time.Second)
}

// Process is the server started by Start (nil before), for tests that kill
// or pause it.
func (s *Standby) Process() *os.Process {
	if s.cmd == nil {
		return nil
	}
	return s.cmd.Process
}

// Stop stops the server started by Start (fast shutdown; SIGKILL after
// 10 s) and waits until it is gone. A stopped or killed one is no error.
func (s *Standby) Stop() error {
	if s.cmd == nil {
		return nil
	}
	select {
	case <-s.exited:
		return nil
	default:
	}
	s.cmd.Process.Signal(syscall.SIGCONT) // a paused (SIGSTOP) server cannot shut down
	s.cmd.Process.Signal(StopSignal)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	return nil
}

// Remove stops the server, drops its slot on the primary and removes its
// directory: what a teardown must do, or the primary keeps WAL forever.
func (s *Standby) Remove(ctx context.Context) error {
	s.Stop()
	return s.cleanLeftovers(ctx)
}

// cleanLeftovers undoes what a killed run (or a Make that failed half-way)
// left: a server still running from Dir, the slot, the directory.
func (s *Standby) cleanLeftovers(ctx context.Context) error {
	if err := s.stopStray(); err != nil {
		return err
	}
	if err := DropSlot(ctx, s.PrimaryURL, s.Slot); err != nil {
		return err
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("standby: remove %s: %w", s.Dir, err)
	}
	return nil
}

// stopStray stops a postmaster whose postmaster.pid is in Dir and that is
// still running from Dir (its working directory: a recycled PID of some
// other process is left alone), with an immediate shutdown (SIGQUIT) and
// SIGKILL after 10 s.
func (s *Standby) stopStray() error {
	b, err := os.ReadFile(filepath.Join(s.Dir, "postmaster.pid"))
	if err != nil {
		return nil // no server ran here, or it shut down cleanly
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 0 {
		return nil
	}
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err != nil || cwd != s.Dir {
		return nil
	}
	syscall.Kill(pid, syscall.SIGCONT)
	syscall.Kill(pid, syscall.SIGQUIT)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			time.Sleep(200 * time.Millisecond)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// makeDir creates Dir (0700, as PostgreSQL requires) owned by the user the
// server runs as, and lets that user reach it through its parents.
func (s *Standby) makeDir() error {
	if err := os.MkdirAll(filepath.Dir(s.Dir), 0o755); err != nil {
		return fmt.Errorf("standby: %w", err)
	}
	if err := os.Mkdir(s.Dir, 0o700); err != nil {
		return fmt.Errorf("standby: %w", err)
	}
	if s.cred == nil {
		return nil
	}
	if err := os.Chown(s.Dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
		return fmt.Errorf("standby: %w", err)
	}
	// Like scripts/pg.sh's ensure_reachable: mktemp -d (and t.TempDir)
	// make 0700 directories that the postgres user cannot pass through.
	for d := filepath.Dir(s.Dir); d != "/"; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("standby: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("standby: allow the postgres user through %s: %w", d, err)
			}
		}
	}
	return nil
}

func postgresCred() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("standby: running as root needs a postgres user to run the server as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// FindBin is the directory holding the PostgreSQL tool named, found like
// scripts/pg.sh does: PATH first, then Debian's /usr/lib/postgresql/N/bin,
// newest N first. The error says the tool is missing, for tests to skip.
func FindBin(tool string) (string, error) {
	if p, err := exec.LookPath(tool); err == nil {
		// A symlink in PATH (/usr/local/bin/postgres here) points at the
		// directory that holds the other server tools.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, tool)); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("standby: %s not found (install Debian's postgresql package): %w", tool, ErrNoBinaries)
}

// ErrNoBinaries is wrapped by FindBin's error.
var ErrNoBinaries = errors.New("PostgreSQL binaries missing")

func versionOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Supervised is a standby for a supervisor that starts, restarts and stops
// its server itself (package topology's services): made by Prepare, its
// server's output appended to Dir/standby.log, removed with its slot by
// Remove, which also undoes a Prepare that failed half-way.
type Supervised struct {
	o   Options
	s   *Standby
	log *os.File // Dir/standby.log, open from Prepare to Remove
}

// Supervise is the standby o describes, made when Prepare runs.
func Supervise(o Options) *Supervised { return &Supervised{o: o} }

// Prepare makes the standby (Make) and opens its log.
func (v *Supervised) Prepare(ctx context.Context) (err error) {
	if v.s, err = Make(ctx, v.o); err != nil {
		return err
	}
	v.log, err = os.OpenFile(filepath.Join(v.s.Dir, "standby.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	return err
}

// Command is the server in the foreground, its output in Dir/standby.log.
func (v *Supervised) Command() *exec.Cmd {
	cmd := v.s.Command()
	cmd.Stdout, cmd.Stderr = v.log, v.log
	return cmd
}

// Cred is the user the server runs as (after Prepare).
func (v *Supervised) Cred() *syscall.Credential { return v.s.Cred() }

// Ready waits until the server accepts queries in recovery.
func (v *Supervised) Ready(ctx context.Context) error { return v.s.WaitReady(ctx, time.Minute) }

// Remove drops the slot and the directory once the server is stopped.
// After a Prepare that failed (pg_basebackup makes the slot first), or
// was interrupted, it drops what there is.
func (v *Supervised) Remove(ctx context.Context) error {
	if v.log != nil {
		v.log.Close()
	}
	if v.s != nil {
		return v.s.Remove(ctx)
	}
	return (&Standby{Options: v.o}).cleanLeftovers(ctx)
}
