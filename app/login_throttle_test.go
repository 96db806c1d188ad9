package app

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"flickrkillr/app/guard"
)

// post sends a form straight into the App as if from the TCP peer addr,
// with extra headers: the tests need several client addresses.
func (ta *testApp) postFrom(t *testing.T, addr, path string, form url.Values, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.RemoteAddr = addr + ":40000"
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	ta.ServeHTTP(rec, req)
	return rec
}

func login(name, password string) url.Values {
	return url.Values{"name": {name}, "password": {password}}
}

// After about ten wrong passwords an account answers 429 with Retry-After,
// even for the right password and from another address; other accounts and
// the same account after a success are unaffected.
func TestLoginsAreThrottledPerAccount(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	ta.browser(t).signup("victim")
	ta.browser(t).signup("bystander")
	const limit = 4 // maxNameFailures in production; fewer bcrypt runs here
	ta.lim.names = guard.NewThrottle(limit, failureWindow)

	for i := range limit {
		// From many addresses, so that only the account's count trips.
		rec := ta.postFrom(t, "10.0.0."+strconv.Itoa(i+1), "/login", login("victim", "wrong password"))
		if rec.Code != http.StatusUnprocessableEntity {
			t.Fatalf("failure %d: status %d, want 422", i+1, rec.Code)
		}
	}
	rec := ta.postFrom(t, "10.0.1.1", "/login", login("victim", "correct horse battery"))
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("status %d after %d failures, want 429", rec.Code, limit)
	}
	if s, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || s < 1 || s > int(failureWindow.Seconds())+1 {
		t.Fatalf("Retry-After %q, want seconds up to the window", rec.Header().Get("Retry-After"))
	}
	if !strings.Contains(rec.Body.String(), "Too many failed attempts") {
		t.Fatalf("the 429 page does not say why:\n%.1000s", rec.Body.String())
	}
	if rec := ta.postFrom(t, "10.0.1.1", "/login", login("bystander", "correct horse battery")); rec.Code != http.StatusSeeOther {
		t.Fatalf("another account: status %d, want 303", rec.Code)
	}
}

// Per client address: many names from one address trip it; X-Forwarded-For
// cannot buy a fresh address, and another address is unaffected.
func TestLoginsAreThrottledPerAddress(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	ta.browser(t).signup("walter")
	const limit = 4 // maxAddrFailures in production
	ta.lim.addrs = guard.NewThrottle(limit, failureWindow)
	for i := range limit {
		rec := ta.postFrom(t, "192.0.2.7", "/login", login("nobody"+strconv.Itoa(i), "wrong password"),
			"X-Forwarded-For", "198.51.100."+strconv.Itoa(i), "X-Real-IP", "198.51.100."+strconv.Itoa(i))
		if rec.Code != http.StatusUnprocessableEntity {
			t.Fatalf("failure %d: status %d, want 422", i+1, rec.Code)
		}
	}
	rec := ta.postFrom(t, "192.0.2.7", "/login", login("walter", "correct horse battery"), "X-Forwarded-For", "203.0.113.9")
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("status %d from a tripped address, want 429", rec.Code)
	}
	if rec := ta.postFrom(t, "192.0.2.8", "/login", login("walter", "correct horse battery")); rec.Code != http.StatusSeeOther {
		t.Fatalf("another address: status %d, want 303", rec.Code)
	}
}

// Failed sign-ups (an invalid form, a taken name) count the same way.
func TestSignupsAreThrottled(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	for i := range maxAddrFailures {
		rec := ta.postFrom(t, "192.0.2.9", "/signup", url.Values{"name": {"name" + strconv.Itoa(i)}, "password": {"short"}})
		if rec.Code != http.StatusUnprocessableEntity {
			t.Fatalf("attempt %d: status %d, want 422", i+1, rec.Code)
		}
	}
	rec := ta.postFrom(t, "192.0.2.9", "/signup", url.Values{"name": {"fresh_name"}, "password": {"long enough"}})
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d (Retry-After %q), want 429 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if rec := ta.postFrom(t, "192.0.2.10", "/signup", url.Values{"name": {"fresh_name"}, "password": {"long enough"}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("another address: status %d, want 303", rec.Code)
	}
}

// A success clears the account's count.
func TestASuccessfulLoginResetsTheAccount(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	ta.browser(t).signup("yara")
	const limit = 3
	ta.lim.names = guard.NewThrottle(limit, failureWindow)
	for round := range 3 {
		for i := range limit - 1 {
			ta.postFrom(t, "10.1."+strconv.Itoa(round)+"."+strconv.Itoa(i+1), "/login", login("yara", "wrong password"))
		}
		if rec := ta.postFrom(t, "10.2.0."+strconv.Itoa(round+1), "/login", login("yara", "correct horse battery")); rec.Code != http.StatusSeeOther {
			t.Fatalf("round %d: status %d, want 303", round, rec.Code)
		}
	}
}

// 200 log-ins at once: bcrypt runs a few at a time, the rest queue or get a
// quick 503 with Retry-After, and nothing is a 500.
func TestConcurrentLoginsNeverFail500(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	ta.browser(t).signup("crowd")
	const n = 200
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pw := "correct horse battery"
			if i%2 == 1 {
				pw = "wrong password"
			}
			b := ta.browser(t)
			req, _ := http.NewRequest(http.MethodPost, ta.srv.URL+"/login", strings.NewReader(login("crowd", pw).Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			res, err := b.c.Do(req)
			if err != nil {
				codes <- -1
				return
			}
			res.Body.Close()
			if res.StatusCode == http.StatusServiceUnavailable && (res.Header.Get("Retry-After") == "" || res.Header.Get("X-Shed") != "sign-in") {
				codes <- -2 // the gate's 503 says when to come back, and that it shed the log-in
				return
			}
			codes <- res.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	seen := map[int]int{}
	for c := range codes {
		seen[c]++
	}
	t.Logf("statuses: %v", seen)
	for c, k := range seen {
		switch c {
		case http.StatusSeeOther, http.StatusUnprocessableEntity, http.StatusTooManyRequests, http.StatusServiceUnavailable:
		default:
			t.Errorf("%d responses with status %d", k, c)
		}
	}
	if seen[http.StatusSeeOther] == 0 {
		t.Error("no log-in succeeded")
	}
}
