package loadtest

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

// --anonymous 1: nobody logs in and no request carries a cookie; every
// route is an anonymous one, in the mix's proportions, and the listings'
// older pages are read too.
func TestAnonymousVisitorsNeverSignIn(t *testing.T) {
	site := &fakeSite{}
	res := runFake(t, site, Options{Duration: 1500 * time.Millisecond, Concurrency: 4, Seed: 3, Anonymous: 1})
	site.mu.Lock()
	logins, cookies := site.logins, site.withCookie
	site.mu.Unlock()
	if logins != 0 || cookies != 0 {
		t.Fatalf("%d log-ins and %d requests with a cookie from anonymous visitors", logins, cookies)
	}
	if res.Total.Errors != 0 || res.SignIn != nil || res.Settings.AnonymousUsers != 4 {
		t.Fatalf("%d errors, sign-in %+v, %d anonymous users; want 0, none, 4: %+v", res.Total.Errors, res.SignIn, res.Settings.AnonymousUsers, res.Routes)
	}
	for _, r := range res.Routes {
		if !strings.HasPrefix(r.Route, "anon-") {
			t.Errorf("route %s from an anonymous visitor", r.Route)
		}
	}
	if route(res, "anon-user-older").Requests == 0 || route(res, "anon-tag-older").Requests == 0 {
		t.Errorf("no older pages read: %+v", res.Routes)
	}
	// The mix's proportions, the older pages aside (they follow a page of the mix).
	actions := float64(res.Total.Requests - route(res, "anon-user-older").Requests - route(res, "anon-tag-older").Requests)
	if actions < 2000 {
		t.Fatalf("only %.0f requests: too few to judge the mix", actions)
	}
	for _, a := range anonymousMix.actions {
		want := float64(a.weight) / float64(anonymousMix.total)
		if got := float64(route(res, a.name).Requests) / actions; got < want*0.75 || got > want*1.25 {
			t.Errorf("%s: %.1f%% of actions, want %.1f%% ±25%%", a.name, got*100, want*100)
		}
	}
	var buf bytes.Buffer
	WriteText(&buf, res)
	if !strings.Contains(buf.String(), "--anonymous 1: 4 of the 4 virtual users browse without an account") {
		t.Errorf("the settings do not say the mix:\n%s", buf.String())
	}
}

// A share: that many users browse anonymously, the others log in and use the
// logged-in mix, and the report tells their routes apart.
func TestAPartlyAnonymousMix(t *testing.T) {
	site := &fakeSite{}
	res := runFake(t, site, Options{Duration: time.Second, Concurrency: 4, Anonymous: 0.5})
	if res.Total.Errors != 0 || res.Settings.AnonymousUsers != 2 || res.SignIn == nil || res.SignIn.Users != 2 || res.SignIn.Before != 2 {
		t.Fatalf("%d errors, %d anonymous users, sign-in %+v; want 0, 2, 2 users in", res.Total.Errors, res.Settings.AnonymousUsers, res.SignIn)
	}
	if route(res, "anon-photo").Requests == 0 || route(res, "photo").Requests == 0 || route(res, "favorite").Requests == 0 {
		t.Fatalf("want both mixes' routes: %+v", res.Routes)
	}
	site.mu.Lock()
	defer site.mu.Unlock()
	if site.logins != 2 {
		t.Fatalf("%d log-ins, want one per logged-in user (2)", site.logins)
	}
}

func TestAnonymousShare(t *testing.T) {
	for _, tt := range []struct {
		share float64
		users int
		want  int
	}{{0, 32, 0}, {1, 32, 32}, {0.9, 32, 29}, {0.9, 256, 230}, {0.5, 3, 2}, {0.1, 5, 1}, {0.01, 32, 0}} {
		n := 0
		for i := range tt.users {
			if isAnonymous(i, tt.share) {
				n++
			}
		}
		if n != tt.want || n != int(math.Floor(tt.share*float64(tt.users)+0.5)) {
			t.Errorf("--anonymous %g of %d users: %d anonymous, want %d", tt.share, tt.users, n, tt.want)
		}
	}
}
