package tickets_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"flickrkillr/models/tickets"
)

// ticketServer sets the server at dsn up as the ticket server of parity
// offset (1 odd, 2 even) and opens it.
func ticketServer(t *testing.T, name, dsn string, offset int) tickets.Server {
	t.Helper()
	if err := tickets.Setup(context.Background(), dsn, offset, 0); err != nil {
		t.Fatal(err)
	}
	return tickets.Server{Name: name, DB: open(t, dsn)}
}

func TestNextIsUniqueUnderConcurrency(t *testing.T) {
	oddDSN, _ := testDB(t)
	evenDSN, _ := testDB(t)
	tk := tickets.New([]tickets.Server{
		ticketServer(t, "odd", oddDSN, 1),
		ticketServer(t, "even", evenDSN, 2),
	}, tickets.Options{})

	const goroutines, each = 8, 500
	ids := make([][]int64, goroutines)
	errs := make(chan error, goroutines*each)
	var wg sync.WaitGroup
	start := time.Now()
	for g := range goroutines {
		wg.Go(func() {
			for range each {
				id, err := tk.Next(context.Background())
				if err != nil {
					errs <- err
					continue
				}
				ids[g] = append(ids[g], id)
			}
		})
	}
	wg.Wait()
	close(errs)
	t.Logf("%d ids in %s", goroutines*each, time.Since(start).Round(time.Millisecond))
	for err := range errs {
		t.Errorf("Next: %v", err)
	}

	seen := map[int64]bool{}
	var odd, even int64
	for _, list := range ids {
		for _, id := range list {
			if seen[id] {
				t.Errorf("id %d issued twice", id)
			}
			seen[id] = true
			if id%2 == 1 {
				odd++
			} else {
				even++
			}
		}
	}
	if len(seen) != goroutines*each {
		t.Errorf("%d distinct ids, want %d", len(seen), goroutines*each)
	}
	// Asked in turn, the two share the work exactly; each one's count is
	// the ids of its parity.
	stats := tk.Stats()
	if stats[0].Issued != odd || stats[1].Issued != even {
		t.Errorf("Stats say odd %d, even %d issued; the ids say %d and %d", stats[0].Issued, stats[1].Issued, odd, even)
	}
	if odd != goroutines*each/2 || even != goroutines*each/2 {
		t.Errorf("odd %d, even %d: want half each", odd, even)
	}
	if stats[0].Failed+stats[1].Failed != 0 {
		t.Errorf("failures with both servers up: %+v", stats)
	}
}

// ways a ticket server goes down, and comes back.
var downs = []struct {
	name     string
	down, up func(*pgServer)
}{
	{"killed: its connections reset, new ones refused", (*pgServer).kill, (*pgServer).start},
	{"paused: connections open and nothing answers", (*pgServer).pause, (*pgServer).resume},
}

func TestNextWhenBothServersAreDown(t *testing.T) {
	const timeout, rest = 300 * time.Millisecond, time.Second
	for _, tc := range downs {
		t.Run(tc.name, func(t *testing.T) {
			// Both ticket servers as two databases of one server of the
			// test's own, so that one signal takes both down.
			srv := newServer(t)
			tk := tickets.New([]tickets.Server{
				ticketServer(t, "odd", srv.createDB("tickets_odd"), 1),
				ticketServer(t, "even", srv.createDB("tickets_even"), 2),
			}, tickets.Options{Timeout: timeout, Rest: rest})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for range 2 { // a connection open to each
				if _, err := tk.Next(ctx); err != nil {
					t.Fatal(err)
				}
			}
			tc.down(srv)

			// The first Next finds both not resting, the next ones both
			// resting: either way each is asked once, so a Next takes at
			// most two timeouts.
			const nexts = 3
			for i := range nexts {
				start := time.Now()
				id, err := tk.Next(ctx)
				took := time.Since(start)
				t.Logf("Next %d: %s: %v", i+1, took.Round(time.Millisecond), err)
				if !errors.Is(err, tickets.ErrNoServer) {
					t.Errorf("Next %d: id %d, error %v; want ErrNoServer", i+1, id, err)
				}
				if took > 2*timeout+time.Second {
					t.Errorf("Next %d took %s; want about two timeouts (%s) at most", i+1, took, 2*timeout)
				}
			}
			for _, s := range tk.Stats() {
				if s.Failed != nexts || !s.Down {
					t.Errorf("%s: failed %d times, down %v; want asked once per Next (%d) and down", s.Name, s.Failed, s.Down, nexts)
				}
			}
		})
	}
}

func TestNextWithNoServers(t *testing.T) {
	_, err := tickets.New(nil, tickets.Options{}).Next(context.Background())
	if !errors.Is(err, tickets.ErrNoServer) {
		t.Errorf("error %v, want ErrNoServer", err)
	}
}

func TestNextCancelledByItsCaller(t *testing.T) {
	oddDSN, _ := testDB(t)
	evenDSN, _ := testDB(t)
	tk := tickets.New([]tickets.Server{
		ticketServer(t, "odd", oddDSN, 1),
		ticketServer(t, "even", evenDSN, 2),
	}, tickets.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a request whose client went away
	if _, err := tk.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
	// The caller gave up, not the server: resting it would send every
	// other caller to the other server for Rest.
	for _, s := range tk.Stats() {
		if s.Failed != 0 || s.Down {
			t.Errorf("%s: failed %d, down %v after a cancelled Next; want neither", s.Name, s.Failed, s.Down)
		}
	}
}
