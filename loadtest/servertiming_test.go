package loadtest

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

// timedSite is the fake site with a fixed Server-Timing on its photo pages.
type timedSite struct{ *fakeSite }

const photoTiming = `db;dur=2.00;desc="3 queries", cache;dur=0.50;desc="1 hit, 1 miss", session;dur=1.00;desc="2 queries", render;dur=0.25, total;dur=5.00`

func (s timedSite) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/photos/") && !strings.Contains(r.URL.Path[len("/photos/"):], "/") {
		w.Header().Set("Server-Timing", photoTiming)
	}
	s.fakeSite.ServeHTTP(w, r)
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestServerTimingIsAddedUpPerRoute(t *testing.T) {
	site := &fakeSite{comments: map[string][]string{}}
	res := runFake(t, site, Options{Duration: 300 * time.Millisecond, Concurrency: 2, Password: "pw", Seed: 3})
	if route(res, "photo").Requests == 0 {
		t.Skip("the mix sent no photo page") // cannot happen with this seed and duration
	}
	if route(res, "photo").Timing != nil {
		t.Fatal("timing without a Server-Timing header")
	}

	srv := timedSite{site}
	res = runHandler(t, srv, Options{Duration: 300 * time.Millisecond, Concurrency: 2, Password: "pw", Seed: 3})
	photo := route(res, "photo")
	tm := photo.Timing
	if tm == nil || tm.Responses != photo.Requests {
		t.Fatalf("photo: %d requests, timing %+v", photo.Requests, tm)
	}
	if !near(tm.SQLPerRequest, 5) || !near(tm.DB, 2) || !near(tm.Cache, .5) || !near(tm.Session, 1) ||
		!near(tm.Render, .25) || !near(tm.Total, 5) || !near(tm.Other, 1.25) {
		t.Fatalf("photo timing %+v; want 5 SQL, db 2, cache 0.5, session 1, render 0.25, other 1.25, total 5", tm)
	}
	if route(res, "home").Timing != nil {
		t.Fatal("home has timing but sent no header")
	}
	if res.Total.Timing == nil || res.Total.Timing.Responses != photo.Requests {
		t.Fatalf("total timing %+v, want the photo pages'", res.Total.Timing)
	}
	var text bytes.Buffer
	if err := WriteText(&text, res); err != nil {
		t.Fatal(err)
	}
	if !regexpMatch(`photo\s+5\.0\s+2\.00\s+0\.50\s+1\.00\s+0\.25\s+1\.25\s+5\.00`, text.String()) {
		t.Fatalf("the report lacks the photo row of where the time goes:\n%s", text.String())
	}

}

func TestServerTimingParsesQuotedCommas(t *testing.T) {
	var s timingStats
	s.add([]byte(`db;dur=1.5;desc="12 queries", cache;dur=0.25;desc="2 hits, 0 misses", queue;dur=3, total;dur=9`))
	if s.sql != 12 || !near(s.ms[0], 1.5) || !near(s.ms[1], .25) || !near(s.total, 9) || !near(s.other["queue"], 3) {
		t.Fatalf("parsed %+v", s)
	}
}

// runHandler is runFake for any handler.
func runHandler(t *testing.T, h http.Handler, o Options) *Result {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	o.URL, o.Scenario = srv.URL, "browse"
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
