package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server runs one build at one stage.
type server struct {
	db      *databases
	dataDir string
	tmp     string
	stage   int
}

// appEnv are the variables flickrkillr reads (serve --help's "env …" and
// the topology's own): dropped from the caller's environment so that both
// builds run with the flags given here and nothing else.
var appEnv = []string{"ADDR", "ADMIN_ADDR", "STAGE", "INDEXES", "DATABASE_URL", "REDIS_URL",
	"REDIS_CACHE_URL", "REDIS_CACHE_MAXMEMORY", "DATA_DIR", "DB_LATENCY", "DRAIN_DELAY", "FRONT_CACHE",
	"INSTANCES", "INSTANCE", "INSTANCE_CPUS", "METRICS", "MODEL", "PGBOUNCER", "TRUSTED_PROXIES",
	"UPSTREAMS", "WORKERS", "WORKER_PROCS", "WATCHDOG_DATABASE_URL", "LOG_LEVEL"}

// serverEnv is the environment without appEnv, plus set.
func serverEnv(set ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, a := range appEnv {
			if name == a {
				keep = false
			}
		}
		if keep {
			env = append(env, kv)
		}
	}
	return append(env, set...)
}

// freePort asks the kernel for a port nobody listens on. Another program
// could take it before the server does; then the server fails to start and
// the run says so.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// pages migrates a fresh copy of the database to the stage's schema with
// bin, serves the stage with bin and fetches every page.
func (s server) pages(ctx context.Context, bin, label string) ([]page, error) {
	dbURL, err := s.db.fresh(ctx)
	if err != nil {
		return nil, err
	}
	env := serverEnv("DATABASE_URL="+dbURL, "DATA_DIR="+s.dataDir, "REDIS_URL=", "REDIS_CACHE_URL=")
	stage := strconv.Itoa(s.stage)
	mig := exec.CommandContext(ctx, bin, "migrate", "--stage", stage)
	mig.Env = env
	if out, err := mig.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("migrate --stage %s: %v: %s", stage, err, out)
	}

	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	// Its own folder: a topology (stage 7) keeps its configs and its Redis's
	// data under .run/ in the working directory, so each server starts
	// without what the one before left.
	dir := filepath.Join(s.tmp, fmt.Sprintf("run-%s-%d", label, s.stage))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "serve.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "serve", "--stage", stage, "--addr", addr, "--admin-addr", "")
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer stop(cmd)
	base := "http://" + addr
	if err := waitHealthy(ctx, base, cmd); err != nil {
		return nil, fmt.Errorf("serve --stage %s: %w\n%s", stage, err, tail(logPath))
	}
	ps, err := fetchAll(base)
	if err != nil {
		return nil, fmt.Errorf("serve --stage %s: %w\n%s", stage, err, tail(logPath))
	}
	return ps, nil
}

// waitHealthy waits for /healthz to answer 200: up to a minute, as a
// topology starts nginx, Redis, PgBouncer and the instances first.
func waitHealthy(ctx context.Context, base string, cmd *exec.Cmd) error {
	exited := make(chan struct{})
	go func() {
		// Only a signal that the process is gone; stop waits for it.
		for cmd.ProcessState == nil {
			if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
				close(exited)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		res, err := http.Get(base + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("the server exited before answering /healthz")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("no 200 from /healthz within a minute")
}

// stop ends the server as Ctrl-C would (a topology stops its children on
// it), and kills its process group if it has not exited within 30 s.
func stop(cmd *exec.Cmd) {
	cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// tail is the end of a server's log, for an error message.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return "--- end of " + path + ":\n" + string(bytes.TrimSpace(b))
}
