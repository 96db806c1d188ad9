package topology

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// The rolling restart (SIGHUP): every instance again, one at a time, without a failed request.

// rollingRestart restarts the instances one at a time without failing a
// request: nginx is reloaded without the instance (its old workers finish
// what they have in flight and exit, closing their idle connections to it),
// the instance is stopped (it has nothing left to answer), started again,
// and once ready nginx is reloaded with it. Stopping an instance nginx still
// used failed POSTs on idle keepalive connections that the instance closed
// as nginx sent on them (measured: one or two per restart), and took it out
// of rotation for fail_timeout (a second stop then left nginx none: 502).
// With one instance there is nothing to drain to: its restart fails what
// arrives meanwhile.
func (t *topology) rollingRestart(ctx context.Context) {
	t.log.Info("rolling restart", "instances", len(t.instances))
	for _, in := range t.instances {
		if in.proc == nil {
			t.log.Info("a remote instance is restarted on its own host", "instance", in.Name, "addr", in.Addr)
			continue
		}
		if len(t.instances) > 1 {
			if err := t.reloadNginx(in); err != nil {
				t.log.Error("rolling restart stopped", "instance", in.Name, "err", err)
				return
			}
		}
		if err := in.bounce(ctx); err != nil {
			t.log.Error("rolling restart stopped", "instance", in.Name, "err", err)
			return
		}
		if err := in.waitReady(ctx, 60*time.Second); err != nil {
			t.log.Error("rolling restart stopped", "instance", in.Name, "err", err)
			return
		}
	}
	if len(t.instances) > 1 {
		if err := t.reloadNginx(nil); err != nil {
			t.log.Error("rolling restart: nginx reload", "err", err)
			return
		}
	}
	t.log.Info("rolling restart done")
}

// reloadNginx rewrites the configuration with every instance but except
// (nil: all), reloads nginx (SIGHUP: new workers, the old ones finish their
// requests and exit) and waits, up to 15 s, for the old workers to be gone.
func (t *topology) reloadNginx(except *instance) error {
	var live []*instance
	for _, in := range t.instances {
		if in != except {
			live = append(live, in)
		}
	}
	conf, err := t.writeNginxConfig(live)
	if err != nil {
		return err
	}
	if err := checkNginxConfig(t.nginxExe, t.dir, conf); err != nil {
		return err
	}
	master := t.nginx.status().PID
	old := childPIDs(master)
	if err := syscall.Kill(master, syscall.SIGHUP); err != nil {
		return fmt.Errorf("topology: reload nginx: %w", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		gone := true
		for _, pid := range old {
			if syscall.Kill(pid, 0) == nil {
				gone = false
			}
		}
		if gone {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.log.Warn("nginx's old workers are still finishing requests after 15 s; going on")
	return nil
}
