package loadtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
)

// Signing in under overload. The server runs a few bcrypt checks at a time
// and answers the other sign-ins at once with a 503 page and Retry-After
// (docs/reliability.md): it sheds work that can wait. A person then waits and
// tries again, waiting longer each time they are turned away; so does a
// virtual user, until the run's time is up. Shed sign-ins are not errors:
// they are counted apart ("shed"), so that "0 errors" still means that no
// page failed, while a 503 of any other kind (a breaker, the request
// deadline, a page) stays an error.

// The server's sign-in gate marks its 503 with this header (app/auth.go's
// shedHeader): a 503 to a sign-in that says it was shed. Any other 503 (a
// breaker, the request deadline) has none.
const (
	shedHeader = "X-Shed"
	shedSignIn = "sign-in"
)

// How a virtual user waits after a refused sign-in.
const (
	// defaultRetryAfter is the wait when a refusal names none.
	defaultRetryAfter = time.Second
	// signInBackoffCap bounds the doubling window: a person turned away
	// again and again still tries every ten seconds or so, not every few
	// minutes.
	signInBackoffCap = 10 * time.Second
)

// isShed says whether a sign-in's answer is the sign-in gate's 503.
func isShed(res *response) bool {
	return res.status == http.StatusServiceUnavailable && string(res.shed) == shedSignIn
}

// retryAfter reads a Retry-After value (delay-seconds or an HTTP date); 0
// when there is none or it cannot be read.
func retryAfter(v []byte, now time.Time) time.Duration {
	if len(v) == 0 {
		return 0
	}
	if s, err := strconv.Atoi(string(v)); err == nil {
		return time.Duration(max(s, 0)) * time.Second
	}
	if t, err := http.ParseTime(string(v)); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// signInWait is how long to wait after the n-th refusal in a row (n from 0):
// the server's Retry-After (ra; a second when it named none, or 0: a
// person does not retry in the same instant), then a random
// part of a window that doubles with each refusal, from ra up to
// signInBackoffCap ("full jitter"). The wait is never shorter than
// Retry-After. The random part is what lets the gate work: hundreds of users
// turned away together, who all waited Retry-After and twice it, would come
// back in bursts, each shed but for the few the gate holds, while the gate
// idled between them; spread over the window, they arrive about as fast as
// the gate lets people in. Measured with `loadtest --concurrency 512
// --duration 15s` against one stage-6 server on a 2-core machine (a
// 2,000-user seed): with waits of 1, 2, 4… s plus up to half again, 201 of
// the 512 got in by the end (15 s of sign-in phase, 15 s of window); with
// this wait, 404.
func signInWait(ra time.Duration, n int, rng *rand.Rand) time.Duration {
	if ra <= 0 {
		ra = defaultRetryAfter
	}
	window := signInBackoffCap
	if n < 16 && ra < signInBackoffCap { // no overflow for a huge Retry-After
		window = min(ra<<n, signInBackoffCap)
	}
	return ra + time.Duration(rng.Int64N(int64(window)+1))
}

// signIns is a run's sign-in state, shared by its virtual users.
type signIns struct {
	window                 chan struct{} // closed when the measured window opens
	attempts, shed, errors atomic.Int64
	before, during         atomic.Int64  // users signed in before the window, and inside it
	users                  int           // virtual users that sign in
	phase                  time.Duration // the sign-in phase before the window
}

func newSignIns() *signIns { return &signIns{window: make(chan struct{})} }

func (s *signIns) windowOpen() bool {
	select {
	case <-s.window:
		return true
	default:
		return false
	}
}

// SignInResult is how the virtual users' sign-ins went over the whole run:
// the sign-in phase before the measured window, and the sign-ins of users
// who were still waiting when it opened (those are also requests of their
// route, "login", in the table).
type SignInResult struct {
	Users  int   `json:"users"` // virtual users that sign in (the anonymous ones do not)
	Before int64 `json:"signed_in_before_window"`
	During int64 `json:"signed_in_during_window"`
	// Waiting is how many users were still not signed in when the run
	// ended: they made no page requests.
	Waiting int64 `json:"still_waiting"`
	// PhaseS is how long the sign-in phase before the window took: until
	// every user was in, or at most the run's duration.
	PhaseS   float64 `json:"phase_s"`
	Attempts int64   `json:"attempts"`
	// Shed is how many sign-ins the server's sign-in gate turned away (503
	// with Retry-After): waited on and tried again, not errors.
	Shed int64 `json:"shed"`
	// Errors are the other refused or failed sign-ins (a 503 that is not the
	// gate's, a 429, no answer): waited on and tried again like the shed ones.
	Errors int64 `json:"errors"`
}

func (s *signIns) result() *SignInResult {
	if s.users == 0 {
		return nil
	}
	r := &SignInResult{Users: s.users, Before: s.before.Load(), During: s.during.Load(), PhaseS: s.phase.Seconds(),
		Attempts: s.attempts.Load(), Shed: s.shed.Load(), Errors: s.errors.Load()}
	r.Waiting = int64(r.Users) - r.Before - r.During
	return r
}

// signIn posts a sign-in form (POST /login or /signup) until the server lets
// the user in (303), waiting after each refusal as signInWait says, until ctx
// (the run) ends. Before the measured window the attempts count only in the
// run's sign-in figures; inside it each is also a request of route, its
// shed answers counted as shed and its other refusals as errors. Before the
// window, an answer that no wait can change (a wrong password: 422) fails
// the run at once, as a configuration mistake; inside it, it is an error of
// the route, waited on like the rest. who names the user for that message.
func (vu *vuser) signIn(ctx context.Context, route, path, who string, form url.Values) error {
	s := vu.signIns
	for refusals := 0; ; refusals++ {
		inWindow := s.windowOpen()
		start := time.Now()
		err := vu.client.do(ctx, http.MethodPost, path, form, &vu.res)
		latency := time.Since(start)
		if ctx.Err() != nil {
			return ctx.Err() // cut off by the run's end: not counted
		}
		s.attempts.Add(1)
		shed := err == nil && isShed(&vu.res)
		failure := err
		if err == nil && !shed && vu.res.status != http.StatusSeeOther {
			failure = fmt.Errorf("status %d, want 303", vu.res.status)
		}
		if inWindow {
			vu.reqs.Add(1)
			if failure != nil {
				vu.errs.Add(1)
			}
			vu.rec.recordAnswer(route, latency, int64(len(vu.res.body)), failure, shed)
			vu.rec.recordTiming(route, vu.res.timing)
		}
		switch {
		case shed:
			s.shed.Add(1)
		case failure != nil:
			s.errors.Add(1)
			retryable := err != nil || vu.res.status == http.StatusServiceUnavailable || vu.res.status == http.StatusTooManyRequests
			if !inWindow && !retryable {
				return fmt.Errorf("%s: %w (is --password right?)", who, failure)
			}
		default:
			if inWindow {
				s.during.Add(1)
			} else {
				s.before.Add(1)
			}
			return nil
		}
		var ra time.Duration
		if err == nil {
			ra = retryAfter(vu.res.retryAfter, time.Now())
		}
		if !sleepUntil(ctx, time.Now().Add(signInWait(ra, refusals, vu.rng))) {
			return ctx.Err()
		}
	}
}

// The sign-in storm (scenario "signin-storm"): every user signs in, again
// and again, as a random seeded user with the right password, waiting after
// each refusal as a person would (signInWait); nothing else. Its attempts
// are the route "login": 303s, shed ones (the sign-in gate's 503, counted
// apart) and errors. Run beside a browse run on the same server, it shows
// whether a log-in storm takes the pages' share of the server (issue 36:
// 256 users signing in beside 32 browsing; scripts/signin-storm.sh).
func stormStep(ctx context.Context, vu *vuser) {
	b := vu.shared.(*browse)
	form := url.Values{"name": {"user" + strconv.Itoa(1+vu.rng.IntN(b.users))}, "password": {b.o.Password}}
	for refusals := 0; ; refusals++ {
		start := time.Now()
		err := vu.client.do(ctx, http.MethodPost, "/login", form, &vu.res)
		latency := time.Since(start)
		if ctx.Err() != nil {
			return // cut off by the run's end: not counted
		}
		vu.reqs.Add(1)
		shed := err == nil && isShed(&vu.res)
		failure := err
		if err == nil && !shed && vu.res.status != http.StatusSeeOther {
			failure = fmt.Errorf("status %d, want 303", vu.res.status)
		}
		if failure != nil {
			vu.errs.Add(1)
		}
		vu.rec.recordAnswer("login", latency, int64(len(vu.res.body)), failure, shed)
		vu.rec.recordTiming("login", vu.res.timing)
		if !shed && failure == nil {
			return // in: the next step signs in again
		}
		var ra time.Duration
		if err == nil {
			ra = retryAfter(vu.res.retryAfter, time.Now())
		}
		if !sleepUntil(ctx, time.Now().Add(signInWait(ra, refusals, vu.rng))) {
			return
		}
	}
}
