package topology

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"
)

// Service is a process a later stage brings into the topology, which the
// instances need before they start (stage 9: a streaming standby of the
// database). The topology prepares it, starts it after Redis and before
// PgBouncer, supervises it like every other process (restarted when it
// dies, placed in its scale-model host), shows it in /topology, stops it
// after PgBouncer and then removes what Prepare made.
type Service struct {
	Name string // in /topology and the log: "replica-1"
	Role string // what /topology calls it: "PostgreSQL standby"
	Addr string // where it listens, for /topology; held from the topology's start until it starts (FreePorts)
	// Host is its scale-model host and HostRole that host's role
	// (Options.Place): a standby is a database host of its own.
	Host, HostRole string
	// Prepare makes what the process needs before its first start (a
	// standby's base backup); nil: nothing.
	Prepare func(ctx context.Context) error
	// Command is the process in the foreground; Cred, when set, the user
	// it runs as (PostgreSQL refuses root); StopSignal its graceful stop.
	Command    func() *exec.Cmd
	Cred       func() *syscall.Credential // asked after Prepare; nil: ourselves
	StopSignal syscall.Signal
	// Ready returns once the process serves (a standby accepts queries),
	// waited for after its first start, at most ReadyWithin (default 60 s).
	Ready       func(ctx context.Context) error
	ReadyWithin time.Duration
	// Status, when set, says how the service is doing, for /topology (a
	// standby's lag), bounded by ctx.
	Status func(ctx context.Context) string
	// Remove undoes Prepare after the process has stopped for good (a
	// standby's replication slot, which would keep WAL on the primary for
	// ever); nil: nothing. It runs on every exit path once Prepare began,
	// also after a Prepare that failed half-way.
	Remove func(ctx context.Context) error
}

// service is a started Service.
type service struct {
	Service
	*proc
}

// startServices prepares and starts Options.Services in order, and waits
// for each to be ready. A Service that cannot start stops the topology:
// its instances would not find what they were told to use.
func (t *topology) startServices(ctx context.Context) error {
	for _, s := range t.o.Services {
		sv := &service{Service: s}
		t.services = append(t.services, sv) // removed at the end, even when Prepare fails half-way
		if s.Prepare != nil {
			t.log.Info("preparing "+s.Name, "role", s.Role)
			if err := s.Prepare(ctx); err != nil {
				return fmt.Errorf("topology: prepare %s: %w", s.Name, err)
			}
		}
		sig := s.StopSignal
		if sig == 0 {
			sig = syscall.SIGTERM
		}
		sv.proc = t.inHost(newProc(s.Name, t.log, sig, s.Command), s.Host, s.HostRole)
		if s.Cred != nil {
			sv.proc.cred = s.Cred()
		}
		t.ports.release(s.Addr)
		if err := sv.start(t.servicesCtx); err != nil {
			return err
		}
		if s.Ready == nil {
			continue
		}
		within := s.ReadyWithin
		if within == 0 {
			within = 60 * time.Second
		}
		rctx, cancel := context.WithTimeout(ctx, within)
		err := s.Ready(rctx)
		cancel()
		if err != nil {
			return fmt.Errorf("topology: %s is not ready: %w", s.Name, err)
		}
		t.log.Info(s.Name+" is up", "role", s.Role, "addr", s.Addr)
	}
	return nil
}

// stopServices stops the services (the caller has cancelled their
// context) and removes what their Prepare made, each bounded in time.
func (t *topology) stopServices() {
	for _, s := range t.services {
		if s.proc != nil {
			<-s.done // closed also when it never started
		}
		if s.Remove == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := s.Remove(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.log.Error("could not remove what "+s.Name+" left", "err", err)
		}
		cancel()
	}
}
