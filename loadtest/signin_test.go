package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// gatePage is the body of the server's sign-in gate's 503 (app/auth.go),
// which fakeSite's refusals send with its X-Shed header.
const gatePage = "We are busy signing people in. Please try again in a moment."

// loginLog is what a fake server saw of the log-ins, per connection (each
// virtual user keeps its own): when each attempt arrived.
type loginLog struct {
	mu       sync.Mutex
	attempts map[string][]time.Time
}

// refuse answers the first n attempts of each connection with status,
// Retry-After: 1 and body, and lets the later ones through to the site.
func (l *loginLog) refuse(n, status int, body string) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		l.mu.Lock()
		if l.attempts == nil {
			l.attempts = map[string][]time.Time{}
		}
		l.attempts[r.RemoteAddr] = append(l.attempts[r.RemoteAddr], time.Now())
		seen := len(l.attempts[r.RemoteAddr])
		l.mu.Unlock()
		if n >= 0 && seen > n {
			return false
		}
		w.Header().Set("Retry-After", "1")
		if body == gatePage {
			w.Header().Set(shedHeader, shedSignIn) // the gate's 503 (app/auth.go)
		}
		http.Error(w, body, status)
		return true
	}
}

// A server that sheds every user's first log-in (503, Retry-After: 1, the
// gate's page) and then admits it: the run finishes with no errors, the shed
// sign-ins counted apart, and no retry came sooner than Retry-After, as the
// server saw them. Only lower bounds on the waits: a timer never fires
// early, while a busy machine may make anything late (the backoff's window
// is checked in TestRetryAfterAndTheWait).
func TestShedSignInsAreWaitedOnAndCountedApart(t *testing.T) {
	t.Parallel()
	var log loginLog
	site := &fakeSite{login: log.refuse(1, http.StatusServiceUnavailable, gatePage)}
	res := runFake(t, site, Options{Duration: 2 * time.Second, Concurrency: 4, Seed: 5})
	s := res.SignIn
	// Whether a retry lands before the window or in it depends on the
	// machine's speed; that every user got in, after 4 shed, does not.
	if s == nil || s.Users != 4 || s.Before+s.During != 4 || s.Waiting != 0 || s.Shed != 4 || s.Errors != 0 || s.Attempts != 8 {
		t.Fatalf("sign-in %+v; want 4 users in after 4 shed of 8 attempts", s)
	}
	if res.Total.Errors != 0 || res.Total.Shed > 4 || route(res, "photo").Requests == 0 {
		t.Fatalf("%d errors, %d shed in the window, routes %+v; want no errors and the users browsing", res.Total.Errors, res.Total.Shed, res.Routes)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.attempts) != 4 {
		t.Fatalf("log-ins came on %d connections, want one per user (4)", len(log.attempts))
	}
	for conn, at := range log.attempts {
		if len(at) != 2 {
			t.Fatalf("%s: %d attempts, want 2", conn, len(at))
		}
		if gap := at[1].Sub(at[0]); gap < time.Second-slack {
			t.Errorf("%s: retried %s after a 503 with Retry-After: 1", conn, gap)
		}
	}
	var buf bytes.Buffer
	WriteText(&buf, res)
	if !strings.Contains(buf.String(), "4 shed by the server's sign-in gate") || !strings.Contains(buf.String(), "none still waiting") {
		t.Errorf("the report does not say what was shed:\n%s", buf.String())
	}
}

// slack is the clock's granularity in the waits' lower bounds, nothing else.
const slack = 10 * time.Millisecond

// A server that sheds every log-in for the whole run: the run still ends,
// with every user still waiting and counted so, no page requested by users
// who are not in, and the shed attempts inside the window in the login
// route's shed column, not its errors.
func TestARunThatShedsEverySignInFinishes(t *testing.T) {
	t.Parallel()
	var log loginLog
	site := &fakeSite{login: log.refuse(-1, http.StatusServiceUnavailable, gatePage)}
	res := runFake(t, site, Options{Duration: 1500 * time.Millisecond, Concurrency: 3})
	log.mu.Lock()
	for conn, at := range log.attempts {
		// Every retry waited Retry-After (1s) at least.
		for i := 1; i < len(at); i++ {
			if at[i].Sub(at[i-1]) < time.Second-slack {
				t.Errorf("%s: refusal %d was retried after %s, want 1s at least", conn, i, at[i].Sub(at[i-1]))
			}
		}
	}
	log.mu.Unlock()
	s := res.SignIn
	if s == nil || s.Waiting != 3 || s.Before != 0 || s.During != 0 || s.Shed < 3 || s.Errors != 0 {
		t.Fatalf("sign-in %+v; want all 3 users still waiting, their attempts shed", s)
	}
	for _, r := range res.Routes {
		if r.Route != "login" {
			t.Errorf("route %s requested by users who never got in", r.Route)
		}
	}
	if res.Total.Errors != 0 || res.Total.Shed != route(res, "login").Shed || res.Total.Shed > s.Shed {
		t.Fatalf("total %+v, sign-in %+v: shed attempts must not be errors", res.Total, s)
	}
	site.mu.Lock()
	defer site.mu.Unlock()
	for p := range site.paths {
		if p != "/login" && p != "/" && p != "/healthz?data=1" && !strings.HasPrefix(p, "/users/user") {
			t.Errorf("%s requested, though no user got in (only the set-up's pages and /login may be)", p)
		}
	}
	var buf bytes.Buffer
	WriteText(&buf, res)
	if !strings.Contains(buf.String(), "3 STILL WAITING at the end") {
		t.Errorf("the report does not say who is still waiting:\n%s", buf.String())
	}
	if os.Getenv("SHOW") != "" {
		t.Log(buf.String())
	}
	b, _ := json.Marshal(res)
	if !bytes.Contains(b, []byte(`"still_waiting":3`)) || !bytes.Contains(b, []byte(`"shed":`)) {
		t.Errorf("the JSON does not say it: %s", b)
	}
}

// Only the sign-in gate's 503s are shed: a 503 to a log-in with another
// page (a breaker, the request deadline) is an error, waited on all the
// same, and a page's 503 is an error of its route even with the gate's words.
func TestOtherServiceUnavailablesAreErrors(t *testing.T) {
	t.Parallel()
	t.Run("a log-in's 503 that is not the gate's", func(t *testing.T) {
		t.Parallel()
		var log loginLog
		site := &fakeSite{login: log.refuse(1, http.StatusServiceUnavailable, "The site is overloaded or a service it needs is not answering.")}
		res := runFake(t, site, Options{Duration: 2 * time.Second, Concurrency: 2})
		if s := res.SignIn; s == nil || s.Errors != 2 || s.Shed != 0 || s.Before+s.During != 2 {
			t.Fatalf("sign-in %+v; want 2 errors, none shed, both users in", s)
		}
	})
	t.Run("a 429 with Retry-After", func(t *testing.T) {
		t.Parallel()
		var log loginLog
		site := &fakeSite{login: log.refuse(1, http.StatusTooManyRequests, "Too many failed attempts.")}
		res := runFake(t, site, Options{Duration: 2 * time.Second, Concurrency: 2})
		if s := res.SignIn; s == nil || s.Errors != 2 || s.Shed != 0 || s.Before+s.During != 2 {
			t.Fatalf("sign-in %+v; want 2 errors, none shed, both users in", s)
		}
	})
	t.Run("a page's 503", func(t *testing.T) {
		t.Parallel()
		site := &fakeSite{broken: "/tags/", brokenStatus: http.StatusServiceUnavailable, brokenBody: gatePage}
		res := runFake(t, site, Options{Duration: time.Second, Concurrency: 2})
		tag := route(res, "tag")
		if tag.Requests == 0 || tag.Errors != tag.Requests || tag.Shed != 0 || res.Total.Shed != 0 {
			t.Fatalf("tag %+v, total shed %d: a page's 503 is an error, never shed", tag, res.Total.Shed)
		}
	})
}

// A wrong password is not overload: it fails the run at once, as before.
func TestAWrongPasswordFailsTheRun(t *testing.T) {
	site := &fakeSite{comments: map[string][]string{}, login: func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "That user name and password do not match.", http.StatusUnprocessableEntity)
		return true
	}}
	srv := newFakeServer(t, site)
	_, err := Run(context.Background(), Options{URL: srv, Duration: time.Hour, Concurrency: 2})
	if err == nil || !strings.Contains(err.Error(), "--password") {
		t.Fatalf("Run: %v, want the wrong password named", err)
	}
}

// The text report's table has a shed column when sign-ins were shed in the
// window, and reads as before when none were.
func TestReportShowsShedApart(t *testing.T) {
	res := fixedResult(6, "queue", true, 100, 50)
	var plain bytes.Buffer
	WriteText(&plain, res)
	if strings.Contains(plain.String(), "shed") {
		t.Errorf("a run without sign-ins or sheds mentions them:\n%s", plain.String())
	}
	res.Routes = append(res.Routes, RouteResult{Route: "login", Requests: 40, RPS: 4, Shed: 35, Errors: 1})
	res.Total.Shed, res.Total.Errors = 35, 1
	res.SignIn = &SignInResult{Users: 512, Before: 400, During: 100, Waiting: 12, PhaseS: 30, Attempts: 15756, Shed: 15256, Errors: 1}
	var buf bytes.Buffer
	WriteText(&buf, res)
	for _, want := range []string{
		"sign-in:  512 users sign in: 400 got in before the window (in 30.0s), 100 inside it; 12 STILL WAITING at the end (they made no page requests). 15,756 attempts: 15,256 shed by the server's sign-in gate",
		", 1 refused or failed otherwise (errors, retried)",
		"errors  shed  MB/s",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
	if !strings.Contains(buf.String(), "      1    35  ") {
		t.Errorf("the login row's errors and shed are not apart:\n%s", buf.String())
	}
}

func TestRetryAfterAndTheWait(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0}, {"3", 3 * time.Second}, {"-1", 0}, {"soon", 0},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second},
	} {
		if got := retryAfter([]byte(tt.v), now); got != tt.want {
			t.Errorf("retryAfter(%q) = %s, want %s", tt.v, got, tt.want)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	// Retry-After, then a random part of a window that doubles up to 10 s.
	for n, window := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second} {
		var longest time.Duration
		for range 200 {
			d := signInWait(time.Second, n, rng)
			if d < time.Second || d > time.Second+window {
				t.Fatalf("refusal %d: waited %s, want 1s to %s", n, d, time.Second+window)
			}
			longest = max(longest, d)
		}
		if longest < time.Second+window*3/4 {
			t.Errorf("refusal %d: the longest of 200 waits was %s: the window of %s is not used", n, longest, window)
		}
	}
	if d := signInWait(0, 0, rng); d < time.Second {
		t.Errorf("no Retry-After: waited %s, want a second at least", d)
	}
	if d := signInWait(30*time.Second, 3, rng); d < 30*time.Second || d > 40*time.Second {
		t.Errorf("Retry-After 30s above the cap: waited %s, want Retry-After honoured, and 10s of window at most", d)
	}
	if d := signInWait(1000*time.Hour, 15, rng); d < 1000*time.Hour {
		t.Errorf("Retry-After 1000h: waited %s", d)
	}
}

func newFakeServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
