package loadtest

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"time"
)

// WaitHealthy waits, up to limit, until the server at url answers /healthz
// with 200: a server the caller started (the sweep's runs) is measured only
// once it serves.
func WaitHealthy(ctx context.Context, url string, limit time.Duration) error {
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

// RunWithCPU is Run against a server this machine runs (serverPID, its
// process tree), with the CPU each side took over the measured window: the
// tool's, the server's, PostgreSQL's (postgresPID, the postmaster; 0 skips
// it) and the rest of the machine's. The CPU is returned whenever the window
// closed, even when the run then failed.
func RunWithCPU(ctx context.Context, o Options, serverPID, postgresPID int) (*Result, *CPU, error) {
	var before cpuReading
	var cpu *CPU
	var cpuErr error
	// A caller's own hook (the sweep's model mode reads its hosts) runs at
	// the same two moments, right after the CPU readings.
	outer := o.OnWindow
	o.OnWindow = func(open bool) {
		if outer != nil {
			defer outer(open)
		}
		r, err := readCPU(serverPID, postgresPID)
		if err != nil {
			cpuErr = err
			return
		}
		if open {
			before = r
			return
		}
		cpu = cpuBetween(before, r, 0, 0)
	}
	res, err := Run(ctx, o)
	if err != nil {
		return nil, cpu, err
	}
	if cpuErr != nil || cpu == nil {
		return nil, cpu, fmt.Errorf("reading CPU from /proc: %v", cpuErr)
	}
	cpu.Seconds, cpu.Requests = res.Elapsed, res.Total.Requests
	cpu.MachineS = res.Elapsed * float64(runtime.NumCPU())
	return res, cpu, nil
}
