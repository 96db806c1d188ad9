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

// twoServers is an odd and an even ticket server, each a database of the
// test cluster.
func twoServers(t *testing.T) *tickets.Tickets {
	t.Helper()
	oddDSN, _ := testDB(t)
	evenDSN, _ := testDB(t)
	return tickets.New([]tickets.Server{
		ticketServer(t, "odd", oddDSN, 1),
		ticketServer(t, "even", evenDSN, 2),
	}, tickets.Options{})
}

func TestNextIsUniqueUnderConcurrency(t *testing.T) {
	tk := twoServers(t)

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

// call is one Next as a caller saw it.
type call struct {
	id         int64
	err        error
	start, end time.Time
}

func (c call) took() time.Duration { return c.end.Sub(c.start) }

// callers call Next from goroutines until stopped, as the shards' inserts
// do, each keeping what it saw.
type callers struct {
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	calls [][]call
}

// startCallers starts n callers; they stop when the test ends at the latest.
func startCallers(t *testing.T, tk *tickets.Tickets, n int) *callers {
	c := &callers{stop: make(chan struct{}), calls: make([][]call, n)}
	for g := range n {
		c.wg.Go(func() {
			for {
				select {
				case <-c.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				start := time.Now()
				id, err := tk.Next(ctx)
				cancel()
				c.calls[g] = append(c.calls[g], call{id: id, err: err, start: start, end: time.Now()})
				time.Sleep(time.Millisecond) // callers, not a benchmark: leave the two cores some room
			}
		})
	}
	t.Cleanup(func() { c.wait() })
	return c
}

// wait stops the callers and returns every call they made.
func (c *callers) wait() []call {
	c.once.Do(func() { close(c.stop) })
	c.wg.Wait()
	var all []call
	for _, list := range c.calls {
		all = append(all, list...)
	}
	return all
}

// waitFor polls cond until it holds, or fails the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not after %s", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// ways a ticket server goes down, and comes back.
var downs = []struct {
	name     string
	down, up func(*pgServer)
}{
	{"killed: its connections reset, new ones refused", (*pgServer).kill, (*pgServer).start},
	{"paused: connections open and nothing answers", (*pgServer).pause, (*pgServer).resume},
}

func TestNextWhileOneServerIsDown(t *testing.T) {
	const timeout, rest, downFor = 200 * time.Millisecond, 500 * time.Millisecond, 1500 * time.Millisecond
	for _, tc := range downs {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t) // the odd server: a process of the test's own, to take down
			evenDSN, _ := testDB(t)
			tk := tickets.New([]tickets.Server{
				ticketServer(t, "odd", srv.url("postgres"), 1),
				ticketServer(t, "even", evenDSN, 2),
			}, tickets.Options{Timeout: timeout, Rest: rest})
			const goroutines = 8
			c := startCallers(t, tk, goroutines)
			waitFor(t, 5*time.Second, "both servers issue", func() bool {
				s := tk.Stats()
				return s[0].Issued > 0 && s[1].Issued > 0
			})

			tc.down(srv)
			downAt := time.Now() // down when down returns: the server killed, or every process of it stopped
			time.Sleep(downFor)
			failedWhileDown := tk.Stats()[0].Failed
			upAt := time.Now()
			issuedAtUp := tk.Stats()[0].Issued
			tc.up(srv)
			back := waitFor(t, 4*rest+5*time.Second, "the odd server issues again", func() bool {
				return tk.Stats()[0].Issued > issuedAtUp
			})
			calls := c.wait()

			seen := map[int64]bool{}
			// Until a question to it times out, nothing tells the down
			// server from a slow one: every caller may wait on it once.
			// After that it rests, and costs one Next per Rest.
			detected := downAt.Add(timeout + 100*time.Millisecond)
			var down, slow, slowAfter, fromEvenWhileDown int
			var longest time.Duration
			for _, cl := range calls {
				if cl.err != nil {
					t.Errorf("Next at +%s: %v", cl.start.Sub(downAt).Round(time.Millisecond), cl.err)
					continue
				}
				if seen[cl.id] {
					t.Errorf("id %d issued twice", cl.id)
				}
				seen[cl.id] = true
				if cl.start.Before(downAt) || cl.end.After(upAt) {
					continue
				}
				down++
				if cl.id%2 == 1 {
					t.Errorf("odd id %d from a Next made while the odd server was down", cl.id)
				} else {
					fromEvenWhileDown++
				}
				longest = max(longest, cl.took())
				if cl.took() >= timeout*9/10 { // waited on the down server, not on a busy core
					slow++
					if cl.start.After(detected) {
						slowAfter++
					}
				}
			}
			t.Logf("%d calls, %d while down (%d ids from the even server); while down: longest Next %s, %d took >= %s (%d after the first %s), the odd server failed %d times; asked again %s after it came back",
				len(calls), down, fromEvenWhileDown, longest.Round(time.Millisecond), slow, timeout*9/10, slowAfter, detected.Sub(downAt), failedWhileDown, back.Round(time.Millisecond))

			if down < 100 {
				t.Errorf("only %d Next calls while the odd server was down: the test measured nothing", down)
			}
			// One Next asks the down server at most once, then the other:
			// its timeout, not more (with a second of slack for two busy cores).
			if longest > timeout+time.Second {
				t.Errorf("a Next took %s while one server was down; want about the timeout %s at most", longest, timeout)
			}
			// Then the down server costs its timeout once per Rest (one
			// caller probes it; the others skip it meanwhile), not once
			// per id, nor once per caller.
			if limit := int(downFor/rest) + 1; slowAfter > limit {
				t.Errorf("%d Next calls took >= %s once the down server was found out; want at most %d (one per Rest of %s)", slowAfter, timeout*9/10, limit, rest)
			}
			if limit := goroutines + int(downFor/rest) + 1; slow > limit {
				t.Errorf("%d Next calls took >= %s while one server was down; want at most %d (one per caller, then one per Rest)", slow, timeout*9/10, limit)
			}
			// The failures at the moment it went down are one per caller at
			// most (each may have had a question out); then one per Rest.
			if limit := int64(goroutines) + int64(downFor/rest) + 2; failedWhileDown > limit {
				t.Errorf("the down server failed %d times; want at most %d", failedWhileDown, limit)
			}
			if back > 3*rest+2*time.Second {
				t.Errorf("the odd server was asked again %s after it came back; want about Rest (%s)", back, rest)
			}
		})
	}
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
	tk := twoServers(t)
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
