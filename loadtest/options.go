// Package loadtest is FlickrKillr's own load tool: virtual users with their
// own cookie jars browse a running server with a weighted, skewed mix of
// pages, images and writes, every response is checked, and latencies go into
// HdrHistograms per route. Closed loop (a fixed number of users) or open loop
// (a fixed arrival rate, latency measured from the intended send time, so a
// slow server cannot hide its queueing: no coordinated omission).
package loadtest

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Options say what to measure and how.
type Options struct {
	URL         string
	Duration    time.Duration
	Concurrency int           // closed loop: virtual users; open loop: at most this many requests in flight
	Rate        float64       // open loop when > 0: requests (actions) per second
	ThinkTime   time.Duration // closed loop: pause between a user's actions
	Scenario    string        // browse (default), static, or connections (RunConnections)
	Password    string        // of the seeded users
	Seed        uint64        // choices of users, photos and tags
	Anonymous   float64       // the share of users (0 to 1) who browse without an account (anonymousMix)
	Progress    func(Progress)
	// OnWindow is called when the measured window opens (true) and closes
	// (false), outside the timed requests: the sweep reads CPU counters there.
	OnWindow func(open bool)

	// The connections scenario (C10K): idle keep-alive connections held
	// beside the browse mix, opened at most DialRate per second.
	Connections int
	DialRate    float64
}

// Progress is the live state, reported about once a second.
type Progress struct {
	Elapsed  time.Duration
	Requests int64
	Errors   int64
	RPS      float64 // over the last interval
	// Waiting is, in the measured window, how many users are not signed in
	// yet (the server shed their sign-ins).
	Waiting int64
	// SigningIn marks the sign-in phase before the window: Elapsed counts
	// from its start, Requests are sign-in attempts, Shed of them shed, and
	// SignedIn of SignInUsers users are in.
	SigningIn             bool
	Shed                  int64
	SignedIn, SignInUsers int64
}

// Validate names the first bad option.
func (o Options) Validate() error {
	if _, err := newClient(o.URL, 0); err != nil {
		return err
	}
	switch {
	case o.Duration <= 0:
		return fmt.Errorf("--duration must be positive (got %s)", o.Duration)
	case o.Concurrency < 1:
		return fmt.Errorf("--concurrency must be at least 1 (got %d)", o.Concurrency)
	case o.Rate < 0:
		return fmt.Errorf("--rate must be positive (got %g)", o.Rate)
	case !(o.Anonymous >= 0 && o.Anonymous <= 1): // NaN too
		return fmt.Errorf("--anonymous must be a share between 0 and 1 (got %g)", o.Anonymous)
	case o.Anonymous > 0 && o.Scenario != "browse" && o.Scenario != "connections":
		return fmt.Errorf("--anonymous is a share of the browse mix's users: it takes --scenario browse or connections (got %s)", o.Scenario)
	}
	if o.Scenario == "connections" {
		switch {
		case o.Connections < 1:
			return fmt.Errorf("--scenario connections needs --connections N (at least 1, got %d)", o.Connections)
		case o.DialRate <= 0:
			return fmt.Errorf("--dial-rate must be positive (got %g)", o.DialRate)
		}
		return nil
	}
	if _, ok := scenarios[o.Scenario]; !ok {
		return fmt.Errorf("unknown --scenario %q (known: %s, connections)", o.Scenario, scenarioNames())
	}
	return nil
}

// isAnonymous says whether virtual user i (of 0, 1, …) browses without an
// account when a share of the users does: the anonymous users are spread
// evenly over the ids, round(share × users) of them in all.
func isAnonymous(i int, share float64) bool {
	return math.Floor(float64(i+1)*share+0.5) > math.Floor(float64(i)*share+0.5)
}

// ErrUnreachable is returned when the server does not answer /healthz.
var ErrUnreachable = errors.New("server unreachable")
