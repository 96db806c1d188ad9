package topology

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one child process the supervisor owns: started, restarted when it
// exits on its own (after a backoff that doubles from 200 ms to 5 s while it
// keeps dying young), and stopped with its graceful signal when its context
// ends (SIGKILL after 12 s). Children are in their own process group, so a
// terminal's Ctrl-C reaches the supervisor only, which stops them in order;
// and they get SIGTERM if the supervisor itself dies (Pdeathsig).
type proc struct {
	name    string
	log     *slog.Logger
	stopSig syscall.Signal
	command func() *exec.Cmd
	done    chan struct{} // closed when supervision has ended and the process is gone
	// placed, when set, puts each process it starts into its scale-model
	// host (Options.Place) before the process is counted as up.
	placed func(pid int) error
	// cred, when set, is the user the process runs as (a root supervisor's
	// memcached, which refuses root). Set here rather than with its -u
	// flag: a process that changes its own user loses its Pdeathsig and
	// outlives a supervisor killed with SIGKILL, holding its port (and its
	// scale-model host); Go sets the user before the Pdeathsig.
	cred *syscall.Credential

	mu       sync.Mutex
	st       procStatus
	bouncing bool          // an intentional restart: no backoff
	exited   chan struct{} // closed when the current process exits
}

// procStatus is what the operator view shows of a process.
type procStatus struct {
	Name     string    `json:"name"`
	PID      int       `json:"pid"`
	Up       bool      `json:"up"`
	Since    time.Time `json:"since"`
	Starts   int       `json:"starts"`
	Restarts int       `json:"restarts"` // after it exited on its own (crashes, kills)
	LastExit string    `json:"last_exit,omitempty"`
}

func newProc(name string, log *slog.Logger, stopSig syscall.Signal, command func() *exec.Cmd) *proc {
	return &proc{name: name, log: log, stopSig: stopSig, command: command, done: make(chan struct{}), st: procStatus{Name: name}}
}

func (p *proc) status() procStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// start starts the first process and supervises it in the background until
// ctx ends; an error is a process that could not start at all.
func (p *proc) start(ctx context.Context) error {
	cmd, err := p.spawn()
	if err != nil {
		close(p.done)
		return err
	}
	go p.supervise(ctx, cmd)
	return nil
}

func (p *proc) spawn() (*exec.Cmd, error) {
	cmd := p.command()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM, Credential: p.cred}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("topology: start %s: %w", p.name, err)
	}
	if p.placed != nil {
		if err := p.placed(cmd.Process.Pid); err != nil {
			cmd.Process.Kill() // never a process outside its host while the model is claimed
			cmd.Wait()
			return nil, fmt.Errorf("topology: place %s in its host: %w", p.name, err)
		}
	}
	p.mu.Lock()
	p.st.PID, p.st.Up, p.st.Since = cmd.Process.Pid, true, time.Now()
	p.st.Starts++
	p.exited = make(chan struct{})
	p.mu.Unlock()
	return cmd, nil
}

func (p *proc) supervise(ctx context.Context, cmd *exec.Cmd) {
	defer close(p.done)
	failures := 0
	for {
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		var err error
		select {
		case err = <-waited:
		case <-ctx.Done():
			cmd.Process.Signal(p.stopSig)
			select {
			case err = <-waited:
			case <-time.After(12 * time.Second):
				p.log.Warn("did not stop in 12 s; killing it", "process", p.name, "pid", cmd.Process.Pid)
				cmd.Process.Kill()
				err = <-waited
			}
			p.exit(err)
			return
		}
		lived := p.exit(err)
		if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		bounced := p.bouncing
		p.bouncing = false
		if !bounced {
			p.st.Restarts++
		}
		p.mu.Unlock()
		delay := time.Duration(0)
		if !bounced {
			if lived >= 10*time.Second {
				failures = 0
			}
			delay = min(200*time.Millisecond<<failures, 5*time.Second)
			failures++
			p.log.Warn("exited; restarting it", "process", p.name, "pid", cmd.Process.Pid, "exit", describeExit(err), "after", delay)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		for {
			if cmd, err = p.spawn(); err == nil {
				break
			}
			p.log.Error("restart failed", "process", p.name, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
		}
	}
}

// exit records the end of the current process and says how long it lived.
func (p *proc) exit(err error) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.st.Up = false
	p.st.LastExit = describeExit(err)
	close(p.exited)
	return time.Since(p.st.Since)
}

// bounce stops the current process with its graceful signal and lets the
// supervisor start it again at once; it returns once the old one is gone.
func (p *proc) bounce(ctx context.Context) error {
	p.mu.Lock()
	if !p.st.Up {
		p.mu.Unlock()
		return fmt.Errorf("%s is not running", p.name)
	}
	p.bouncing = true
	pid, exited := p.st.PID, p.exited
	p.mu.Unlock()
	p.log.Info("restarting", "process", p.name, "pid", pid)
	if err := syscall.Kill(pid, p.stopSig); err != nil {
		return err
	}
	select {
	case <-exited:
	case <-ctx.Done():
		return ctx.Err()
	}
	// Wait for the new process to be spawned.
	for ctx.Err() == nil {
		if st := p.status(); st.Up && st.PID != pid {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ctx.Err()
}

func describeExit(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// childPIDs lists pid's children (/proc/<pid>/task/<pid>/children).
func childPIDs(pid int) []int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// waitHTTP polls url until it answers 200, p's process exits, or limit passes.
func waitHTTP(ctx context.Context, p *proc, url string, limit time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	pid := p.status().PID
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if st := p.status(); st.PID != pid || !st.Up {
			return fmt.Errorf("%s exited before it was ready (%s)", p.name, st.LastExit)
		}
		if res, err := c.Get(url); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer %s within %s", p.name, url, limit)
}
