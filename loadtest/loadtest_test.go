package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSite answers like FlickrKillr with tiny pages: enough for the browse
// scenario's checks. broken names a path prefix that answers brokenStatus
// (500 when 0) with brokenBody, and dropComments makes posted comments
// never show up. login, when set, answers POST /login instead of the site
// (it returns false to let the site log the user in). Pages say "Log out"
// to a request with a cookie and link /login to one without, and the site
// counts the requests that carried a cookie and the log-ins.
type fakeSite struct {
	broken       string
	brokenStatus int
	brokenBody   string
	dropComments bool
	login        func(w http.ResponseWriter, r *http.Request) bool
	mu           sync.Mutex
	comments     map[string][]string
	withCookie   int
	logins       int
	paths        map[string]int // requests per path, query included
}

func (f *fakeSite) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	f.mu.Lock()
	if r.Header.Get("Cookie") != "" {
		f.withCookie++
	}
	if p == "/login" {
		f.logins++
	}
	if f.paths == nil {
		f.paths = map[string]int{}
	}
	f.paths[r.URL.RequestURI()]++
	f.mu.Unlock()
	if f.broken != "" && strings.HasPrefix(p, f.broken) {
		if f.brokenStatus == 0 {
			http.Error(w, "boom", 500)
			return
		}
		w.Header().Set("Retry-After", "1")
		http.Error(w, f.brokenBody, f.brokenStatus)
		return
	}
	if p == "/login" && r.Method == http.MethodPost && f.login != nil && f.login(w, r) {
		return
	}
	nav := "Log out"
	if r.Header.Get("Cookie") == "" {
		nav = `<a href="/login">Log in</a>`
	}
	page := func(markers ...string) {
		fmt.Fprintf(w, "<html>%s %s</html>", strings.Join(markers, " "), nav)
	}
	// A listing's "Older photos" link: three pages back from the first.
	pager := func(base string) string {
		before := 4
		fmt.Sscanf(r.URL.Query().Get("before"), "%d", &before)
		if before <= 1 {
			return ""
		}
		return fmt.Sprintf(`<p class="pager"><a href="%s?before=%d" rel="next">Older photos →</a></p>`, base, before-1)
	}
	switch {
	case p == "/healthz":
		io.WriteString(w, `{"status":"ok","stage":4,"stage_name":"indexes","pid":1,"rows":{"users":5,"photos":10}}`)
	case p == "/":
		var b strings.Builder
		for i := 10; i >= 1; i-- {
			fmt.Fprintf(&b, `<a href="/photos/%d">`, i)
		}
		b.WriteString(`<a href="/tags/sea"> <a href="/tags/dog">`)
		page("Recent photos", b.String())
	case p == "/login" && r.Method == http.MethodPost:
		http.SetCookie(w, &http.Cookie{Name: "s", Value: r.FormValue("name")})
		http.Redirect(w, r, "/", http.StatusSeeOther)
	case strings.HasPrefix(p, "/users/user"):
		var n int
		fmt.Sscanf(p, "/users/user%d", &n)
		if n < 1 || n > 3 { // three seeded users, though the estimate says 5
			http.NotFound(w, r)
			return
		}
		page("member since", pager(p))
	case strings.HasPrefix(p, "/tags/"):
		page("Photos tagged", pager(p))
	case p == "/upload":
		page(`enctype="multipart/form-data"`)
	case strings.HasSuffix(p, "/thumb") || strings.HasSuffix(p, "/image"):
		w.Header().Set("Content-Type", "image/jpeg")
		w.Write([]byte{0xff, 0xd8, 0xff, 0xe0, 1, 2, 3})
	case strings.HasSuffix(p, "/favorite"):
		http.Redirect(w, r, "/", http.StatusSeeOther)
	case strings.HasSuffix(p, "/comments"):
		if !f.dropComments {
			f.mu.Lock()
			f.comments[strings.TrimSuffix(p, "/comments")] = append(f.comments[strings.TrimSuffix(p, "/comments")], r.FormValue("body"))
			f.mu.Unlock()
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	case strings.HasPrefix(p, "/photos/"):
		f.mu.Lock()
		cs := strings.Join(f.comments[p], " ")
		f.mu.Unlock()
		page(`class="photo"`, cs)
	default:
		http.NotFound(w, r)
	}
}

func runFake(t *testing.T, site *fakeSite, o Options) *Result {
	t.Helper()
	site.comments = map[string][]string{}
	srv := httptest.NewServer(site)
	t.Cleanup(srv.Close)
	o.URL = srv.URL
	if o.Scenario == "" {
		o.Scenario = "browse"
	}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func route(res *Result, name string) RouteResult {
	for _, r := range res.Routes {
		if r.Route == name {
			return r
		}
	}
	return RouteResult{Route: name}
}

func TestBrowseHonoursTheMixWeights(t *testing.T) {
	res := runFake(t, &fakeSite{}, Options{Duration: 1500 * time.Millisecond, Concurrency: 4, Seed: 3})
	if res.Total.Errors != 0 {
		t.Fatalf("%d errors against a healthy site: %+v", res.Total.Errors, res.Routes)
	}
	actions := float64(res.Total.Requests - route(res, "comment").Requests) // each comment also reads its photo
	if actions < 2000 {
		t.Fatalf("only %.0f requests: too few to judge the mix", actions)
	}
	for _, a := range browseMix.actions {
		want := float64(a.weight) / float64(browseMix.total)
		n := route(res, a.name).Requests
		if a.name == "photo" {
			n -= route(res, "comment").Requests
		}
		got := float64(n) / actions
		if got < want*0.75 || got > want*1.25 {
			t.Errorf("%s: %.1f%% of actions, want %.1f%% ±25%%", a.name, got*100, want*100)
		}
	}
}

func TestBrowseFindsTheSeededUsers(t *testing.T) {
	site := &fakeSite{comments: map[string][]string{}}
	srv := httptest.NewServer(site)
	defer srv.Close()
	c, err := newClient(srv.URL, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := browseSetup(context.Background(), c, Options{URL: srv.URL}, ServerInfo{Rows: map[string]int64{"users": 5}})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.(*browse); got.users != 3 || got.photos != 10 || len(got.tags) != 2 {
		t.Fatalf("learned %d users, %d photos, tags %v; want 3, 10, [sea dog]", got.users, got.photos, got.tags)
	}
}

func TestErrorsAreCountedNotDropped(t *testing.T) {
	t.Run("a route that answers 500", func(t *testing.T) {
		res := runFake(t, &fakeSite{broken: "/tags/"}, Options{Duration: time.Second, Concurrency: 2})
		tag := route(res, "tag")
		if tag.Requests == 0 || tag.Errors != tag.Requests {
			t.Fatalf("tag: %d requests, %d errors; want all failed", tag.Requests, tag.Errors)
		}
		if res.Total.Errors != tag.Errors || route(res, "home").Errors != 0 {
			t.Fatalf("errors leaked into other routes: %+v", res.Routes)
		}
		if len(tag.Causes) == 0 || !strings.Contains(strings.Join(topCauses(tag.Causes, 1), ""), "status 500") {
			t.Fatalf("causes %v do not say why", tag.Causes)
		}
	})
	t.Run("a comment that does not show up", func(t *testing.T) {
		res := runFake(t, &fakeSite{dropComments: true}, Options{Duration: time.Second, Concurrency: 2})
		c := route(res, "comment")
		if c.Errors == 0 || c.Causes["posted comment not visible on the next read"] == 0 {
			t.Fatalf("comment: %+v; want the invisible comments counted", c)
		}
	})
}

// With a server that takes 50 ms and one request in flight, an open loop at
// 50/s falls further behind every request: latency measured from the intended
// send time grows to hundreds of ms. A tool that measured from the actual
// send (coordinated omission) would report a flat 50 ms.
func TestOpenLoopMeasuresFromTheIntendedSendTime(t *testing.T) {
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			io.WriteString(w, `{"status":"ok"}`)
			return
		}
		time.Sleep(50 * time.Millisecond)
	})
	srv := httptest.NewServer(slow)
	defer srv.Close()
	res, err := Run(context.Background(), Options{URL: srv.URL, Scenario: "static", Duration: time.Second, Concurrency: 1, Rate: 50})
	if err != nil {
		t.Fatal(err)
	}
	if res.Settings.Mode != "open" {
		t.Fatalf("mode %q", res.Settings.Mode)
	}
	if res.Total.Max < 400 || res.Total.P50 < 150 {
		t.Fatalf("p50 %.0f ms, max %.0f ms: queueing behind the slow server is not in the latencies", res.Total.P50, res.Total.Max)
	}
	// Closed loop on the same server: each request waits for the last, ~50 ms.
	closed, err := Run(context.Background(), Options{URL: srv.URL, Scenario: "static", Duration: time.Second, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	if closed.Total.P50 > 100 {
		t.Fatalf("closed loop p50 %.0f ms, want about 50", closed.Total.P50)
	}
}

func TestBadOptions(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"zero duration", Options{URL: "http://x", Duration: 0, Concurrency: 1, Scenario: "browse"}, "--duration"},
		{"unknown scenario", Options{URL: "http://x", Duration: time.Second, Concurrency: 1, Scenario: "surf"}, "--scenario"},
		{"not a URL", Options{URL: "localhost:8080", Duration: time.Second, Concurrency: 1, Scenario: "browse"}, "--url"},
		{"no users", Options{URL: "http://x", Duration: time.Second, Concurrency: 0, Scenario: "browse"}, "--concurrency"},
		{"an anonymous share above 1", Options{URL: "http://x", Duration: time.Second, Concurrency: 1, Scenario: "browse", Anonymous: 1.5}, "--anonymous"},
		{"a negative anonymous share", Options{URL: "http://x", Duration: time.Second, Concurrency: 1, Scenario: "browse", Anonymous: -0.1}, "--anonymous"},
		{"an anonymous share that is not a number", Options{URL: "http://x", Duration: time.Second, Concurrency: 1, Scenario: "browse", Anonymous: math.NaN()}, "--anonymous"},
		{"anonymous uploaders", Options{URL: "http://x", Duration: time.Second, Concurrency: 1, Scenario: "upload", Anonymous: 0.5}, "--anonymous"},
		{"anonymous writers", Options{URL: "http://x", Duration: time.Second, Concurrency: 1, Scenario: "writes", Anonymous: 0.5}, "--anonymous"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.o.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %v, want an error naming %s", err, tt.want)
			}
		})
	}
	t.Run("unreachable server", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		_, err := Run(context.Background(), Options{URL: url, Duration: time.Second, Concurrency: 1, Scenario: "browse"})
		if !errors.Is(err, ErrUnreachable) {
			t.Fatalf("Run: %v, want ErrUnreachable", err)
		}
	})
}

func TestInterruptedRunReportsPartialResults(t *testing.T) {
	site := &fakeSite{comments: map[string][]string{}}
	srv := httptest.NewServer(site)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	// The run is asked for an hour; ended by its context after 0.5 s, it must
	// stop long before that. The bound is half the hour, not a guess at how
	// fast a busy machine stops.
	res, err := Run(ctx, Options{URL: srv.URL, Scenario: "browse", Duration: time.Hour, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || res.Total.Requests == 0 || res.Elapsed > (30*time.Minute).Seconds() {
		t.Fatalf("interrupted %v, %d requests in %.1fs", res.Interrupted, res.Total.Requests, res.Elapsed)
	}
	var buf bytes.Buffer
	WriteText(&buf, res)
	if !strings.Contains(buf.String(), "INTERRUPTED") {
		t.Fatalf("the report does not say it is partial:\n%s", buf.String())
	}
}

func fixedResult(stage int, name string, indexes bool, rps, p99 float64) *Result {
	return &Result{
		Tool:     "flickrkillr loadtest",
		Settings: Settings{Scenario: "browse", Mode: "closed", Concurrency: 32, Duration: "30s"},
		Server:   ServerInfo{Stage: stage, StageName: name, Indexes: indexes, Rows: map[string]int64{"users": 100000, "photos": 1500000}},
		Elapsed:  30,
		Routes:   []RouteResult{{Route: "photo", Requests: int64(rps * 30 / 2), RPS: rps / 2, P99: p99}, {Route: "thumb", Requests: int64(rps * 15), RPS: rps / 2, P99: p99 / 2}},
		Total:    RouteResult{Route: "total", Requests: int64(rps * 30), RPS: rps, P50: p99 / 4, P99: p99, P999: p99 * 2},
	}
}

// A /proc/<pid>/stat line whose command name holds spaces and parentheses.
func TestParseStat(t *testing.T) {
	line := "4242 (flickr (kill) r) S 17 4242 17 0 -1 4194560 1234 0 0 0 150 30 7 3 20 0 9 0 12345 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	st, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{PID: 4242, PPID: 17, UTime: 150, STime: 30, CUTime: 7, CSTime: 3}
	if st != want {
		t.Fatalf("parseStat = %+v, want %+v", st, want)
	}
	for _, bad := range []string{"", "12 no parentheses S 1", "12 (short) S 1 2 3"} {
		if _, err := parseStat(bad); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
	busy, err := parseMachineBusy("cpu  100 5 50 1000 40 3 2 1 0 0\ncpu0 50 2 25 500 20 1 1 0 0 0\n")
	if err != nil || busy != 100+5+50+3+2+1 {
		t.Fatalf("parseMachineBusy = %d, %v; want 161 (idle and iowait left out)", busy, err)
	}
}

// The CPU of a process tree: its own, its waited-for children's and its live
// children's, so that a CGI child is counted whether or not it has exited.
func TestTreeTicksCountsWaitedAndLiveChildren(t *testing.T) {
	tbl := procTable{
		stat: map[int]procStat{
			10: {PID: 10, PPID: 1, UTime: 100, STime: 20, CUTime: 50, CSTime: 5},
			11: {PID: 11, PPID: 10, UTime: 7, STime: 3},
			12: {PID: 12, PPID: 11, UTime: 1, STime: 1},
			20: {PID: 20, PPID: 1, UTime: 999},
		},
		children: map[int][]int{1: {10, 20}, 10: {11}, 11: {12}},
	}
	if got, ok := tbl.treeTicks(10); !ok || got != 100+20+50+5+7+3+1+1 {
		t.Fatalf("treeTicks(10) = %d, %v", got, ok)
	}
	if _, ok := tbl.treeTicks(99); ok {
		t.Fatal("a missing process has a tree")
	}
	c := cpuBetween(cpuReading{tool: 1, server: 10, postgres: 5, postgresOK: true}, cpuReading{tool: 4, server: 12, postgres: 9, postgresOK: true}, 30, 100)
	if c.ToolS != 3 || c.ServerS != 2 || c.PostgresS != 4 || !c.ToolOverServer || c.PerRequestMS(c.ServerS) != 20 {
		t.Fatalf("cpuBetween = %+v", c)
	}
}

// This process's own reading from the real /proc: positive and growing.
func TestReadCPUOfThisProcess(t *testing.T) {
	a, err := readCPU(os.Getpid(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50_000_000; i++ {
		_ = i * i
	}
	b, err := readCPU(os.Getpid(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if b.tool < a.tool || b.server < a.server || a.postgresOK {
		t.Fatalf("readings %+v then %+v", a, b)
	}
}
