package loadtest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// SweepOptions say how to measure every stage in turn.
type SweepOptions struct {
	Run     Options       // the measurement of each stage (URL is set by the sweep)
	Stages  []int         // in order
	Warmup  time.Duration // unrecorded load before each measurement
	Exe     string        // the flickrkillr binary that migrates and serves
	Addr    string        // where each stage's server listens
	Env     []string      // DATABASE_URL, DATA_DIR, REDIS_URL for the server
	Command string        // how the sweep was started, for the report
	Log     func(format string, args ...any)
}

// SweepResult is a sweep: one Result per stage.
type SweepResult struct {
	Command string       `json:"command"`
	Host    HostInfo     `json:"host"`
	Started time.Time    `json:"started"`
	Stages  []*Result    `json:"stages"`
	Failed  []StageError `json:"failed,omitempty"`
}

// StageError is a stage that could not be measured.
type StageError struct {
	Stage int    `json:"stage"`
	Error string `json:"error"`
}

// HostInfo describes the machine for the record.
type HostInfo struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Memory string `json:"memory"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
}

// Sweep migrates, starts, warms up, measures and stops each stage in turn.
func Sweep(ctx context.Context, so SweepOptions) (*SweepResult, error) {
	if so.Log == nil {
		so.Log = func(string, ...any) {}
	}
	sr := &SweepResult{Command: so.Command, Host: hostInfo(), Started: time.Now().UTC()}
	for _, stage := range so.Stages {
		res, err := sweepStage(ctx, so, stage)
		if ctx.Err() != nil {
			return sr, ctx.Err()
		}
		if err != nil {
			so.Log("stage %d failed: %v", stage, err)
			sr.Failed = append(sr.Failed, StageError{stage, err.Error()})
			continue
		}
		so.Log("stage %d: %.1f req/s, p99 %.1f ms, %d errors", stage, res.Total.RPS, res.Total.P99, res.Total.Errors)
		sr.Stages = append(sr.Stages, res)
	}
	return sr, nil
}

func sweepStage(ctx context.Context, so SweepOptions, stage int) (*Result, error) {
	so.Log("stage %d: migrating", stage)
	migrate := exec.CommandContext(ctx, so.Exe, "migrate", "--stage", fmt.Sprint(stage))
	migrate.Env = append(os.Environ(), so.Env...)
	if out, err := migrate.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("migrate: %v\n%s", err, out)
	}
	so.Log("stage %d: starting the server on %s", stage, so.Addr)
	logPath := filepath.Join(os.TempDir(), fmt.Sprintf("flickrkillr-sweep-stage%d.log", stage))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	srv := exec.Command(so.Exe, "serve", "--stage", fmt.Sprint(stage), "--addr", so.Addr)
	srv.Env = append(os.Environ(), so.Env...)
	srv.Stdout, srv.Stderr = logFile, logFile
	if err := srv.Start(); err != nil {
		return nil, err
	}
	defer stopServer(srv)
	url := "http://" + so.Addr
	if err := waitHealthy(ctx, url, 30*time.Second); err != nil {
		return nil, fmt.Errorf("%w (server log: %s)", err, logPath)
	}
	o := so.Run
	o.URL = url
	if so.Warmup > 0 {
		so.Log("stage %d: warming up for %s", stage, so.Warmup)
		w := o
		w.Duration, w.Progress = so.Warmup, nil
		if _, err := Run(ctx, w); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	so.Log("stage %d: measuring for %s", stage, o.Duration)
	return Run(ctx, o)
}

func stopServer(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

func waitHealthy(ctx context.Context, url string, limit time.Duration) error {
	c, err := newClient(url, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	var res response
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if err := c.do(ctx, http.MethodGet, "/healthz", nil, &res); err == nil && res.status == http.StatusOK {
			return nil
		}
		if !sleepUntil(ctx, time.Now().Add(200*time.Millisecond)) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("the server did not become healthy within %s", limit)
}

func hostInfo() HostInfo {
	h := HostInfo{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				fmt.Sscanf(strings.TrimPrefix(line, "MemTotal:"), "%d", &kb)
			}
		}
		h.Memory = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return h
}
