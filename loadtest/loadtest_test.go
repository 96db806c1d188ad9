package loadtest

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
	for _, a := range browseMix {
		want := float64(a.weight) / float64(mixTotal)
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

// fiveStages are stages 0-4 of the design: the indexes come with stage 4.
var fiveStages = []StageSchemas{
	{Stage: 0, Name: "cgi", Own: 1, Indexed: 2}, {Stage: 1, Name: "db-sessions", Own: 1, Indexed: 2}, {Stage: 2, Name: "mem-sessions", Own: 1, Indexed: 2}, {Stage: 3, Name: "cache", Own: 1, Indexed: 2}, {Stage: 4, Name: "indexes", Own: 2, Indexed: 2},
}

func TestSweepPlan(t *testing.T) {
	labels := func(runs []*SweepRun) string {
		var l []string
		for _, r := range runs {
			l = append(l, r.Label())
		}
		return strings.Join(l, ", ")
	}
	t.Run("both ladders from the index schema: no migration until the tagged runs, stage 4 measured once", func(t *testing.T) {
		runs, ladders, err := planSweep(fiveStages, "both", 2)
		if err != nil {
			t.Fatal(err)
		}
		want := "0 cgi --indexes, 1 db-sessions --indexes, 2 mem-sessions --indexes, 3 cache --indexes, 4 indexes, 0 cgi, 1 db-sessions, 2 mem-sessions, 3 cache"
		if got := labels(runs); got != want {
			t.Fatalf("runs %s\nwant %s", got, want)
		}
		if len(ladders) != 2 || ladders[0].Name != LadderTagged || ladders[1].Name != LadderAlone {
			t.Fatalf("ladders %+v", ladders)
		}
		for _, l := range ladders {
			if len(l.Steps) != 5 || runs[l.Steps[4].Run].Label() != "4 indexes" {
				t.Fatalf("%s: steps %+v", l.Name, l.Steps)
			}
		}
		if got := runs[4].Ladders; len(got) != 2 {
			t.Fatalf("stage 4 serves ladders %v, want both", got)
		}
		if restoreArgs(fiveStages, 2)[1] != "4" {
			t.Fatalf("restore to version 2 with %v", restoreArgs(fiveStages, 2))
		}
	})
	t.Run("from the schema without indexes: the tagged runs first", func(t *testing.T) {
		runs, _, _ := planSweep(fiveStages, "both", 1)
		if got := labels(runs[:4]); got != "0 cgi, 1 db-sessions, 2 mem-sessions, 3 cache" {
			t.Fatalf("first runs %s", got)
		}
	})
	t.Run("later stages with their own migrations join both ladders", func(t *testing.T) {
		more := append(append([]StageSchemas{}, fiveStages...), StageSchemas{Stage: 5, Name: "fanout", Own: 2, Indexed: 2}, StageSchemas{Stage: 6, Name: "queue", Own: 3, Indexed: 3}, StageSchemas{Stage: 7, Name: "scale-out", Own: 3, Indexed: 3})
		runs, ladders, err := planSweep(more, "both", 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 12 || len(ladders[1].Steps) != 8 {
			t.Fatalf("%d runs (%s), alone steps %d; want 12 and 8", len(runs), labels(runs), len(ladders[1].Steps))
		}
		if got := labels(runs[len(runs)-2:]); got != "6 queue, 7 scale-out" {
			t.Fatalf("the highest schema should come last: %s", labels(runs))
		}
	})
	t.Run("one ladder", func(t *testing.T) {
		runs, ladders, _ := planSweep(fiveStages[1:3], LadderAlone, 2)
		if got := labels(runs); got != "1 db-sessions --indexes, 2 mem-sessions --indexes" || len(ladders) != 1 {
			t.Fatalf("runs %s, %d ladders", got, len(ladders))
		}
	})
	t.Run("a build without the index migration has no alone ladder", func(t *testing.T) {
		tag := []StageSchemas{{Stage: 0, Name: "cgi", Own: 1, Indexed: 0}, {Stage: 1, Name: "db-sessions", Own: 1, Indexed: 0}}
		if _, _, err := planSweep(tag, "both", 1); err == nil || !strings.Contains(err.Error(), "--ladder tagged") {
			t.Fatalf("planSweep: %v", err)
		}
		if runs, _, err := planSweep(tag, LadderTagged, 1); err != nil || len(runs) != 2 {
			t.Fatalf("tagged: %v, %d runs", err, len(runs))
		}
	})
}

func fixedSweep() *SweepResult {
	runs, ladders, _ := planSweep(fiveStages, "both", 2)
	figures := map[string]float64{
		"0 cgi --indexes": 20, "1 db-sessions --indexes": 800, "2 mem-sessions --indexes": 1400, "3 cache --indexes": 2000,
		"4 indexes": 1990, "0 cgi": 5, "1 db-sessions": 10, "2 mem-sessions": 12, "3 cache": 15,
	}
	for _, r := range runs {
		v := figures[r.Label()]
		r.Result = fixedResult(r.Stage, r.Name, r.Indexes || r.Stage == 4, v, 40000/v)
		r.CPU = &CPU{Seconds: 30, Requests: int64(v * 30), ToolS: 5, ServerS: 30, PostgresS: 20, PostgresOK: true, OthersS: 3, MachineS: 60}
	}
	runs[2].CPU.ToolS, runs[2].CPU.ToolOverServer = 40, true
	return &SweepResult{
		Command: "flickrkillr loadtest sweep --duration 30s",
		Rerun:   `make loadtest-sweep SWEEP_FLAGS="--duration 30s"`,
		Note:    "four other helpers shared the machine",
		Warmup:  "10s",
		Host:    HostInfo{CPU: "Test CPU", Cores: 2, Memory: "24 GiB", Go: "go1.26"},
		Started: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC),
		Runs:    runs, Ladders: ladders,
	}
}

func TestSweepReportFromFixedInputs(t *testing.T) {
	sr := fixedSweep()
	var md bytes.Buffer
	if err := writeSweepMarkdown(&md, sr); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"flickrkillr loadtest sweep --duration 30s",
		`make loadtest-sweep SWEEP_FLAGS="--duration 30s"`,
		"four other helpers shared the machine",
		"Test CPU, 2 cores, 24 GiB memory",
		"100,000 users, 1,500,000 photos",
		"| stage | as the tags build it: req/s | × previous | p99 ms | each step alone (--indexes): req/s | × previous | p99 ms | the talk, 2007: req/s | × previous |",
		"| 0 cgi | 5.0 | — | 8000.0 | 20.0 | — | 2000.0 | 23 | — |",
		"| 1 db-sessions | 10.0 | 2.00× | 4000.0 | 800.0 | 40.00× | 50.0 | 139 | 6.04× |",
		"| 4 indexes | 1990.0 ‡ | 132.67× | 20.1 | 1990.0 ‡ | 0.99× | 20.1 | 616 (without the index: 28) | 22.00× over no index |",
		"‡ one run that both ladders share",
		"its × previous is this sweep's run-to-run noise",
		"### Step 2: mem-sessions\n\n**Buys:** sessions stop loading the database.",
		"- as the tags build it: 10.0 → 12.0 req/s (**1.20×**), p99 4000.0 → 3333.3 ms; CPU per request: server 100.00 → 83.33, PostgreSQL 66.67 → 55.56, tool 16.67 → 13.89 ms",
		"- each step alone (--indexes): 800.0 → 1400.0 req/s (**1.75×**)",
		"| route | tagged: 1 db-sessions | tagged: 2 mem-sessions | alone: 1 db-sessions --indexes | alone: 2 mem-sessions --indexes |",
		"## Per route, as the tags build it: req/s (p99 ms)",
		"## Per route, each step alone (--indexes): req/s (p99 ms)",
		"| photo | 2.5 (8000.0) | 5.0 (4000.0) | 6.0 (3333.3) | 7.5 (2666.7) | 995.0 (20.1) |",
		"## CPU per side",
		"- the talk, 2007: 28 without the index → 616 req/s (22.00×)",
		"- the talk, 2007: 139 → 217 req/s (1.56×)",
		"| 1 db-sessions | 1 | no | tagged | 300 |",
		"| 3 cache --indexes | 2 | yes | alone | 60000 | 5.0 | 30.0 | 20.0 | 3.0 | 60 | 0.08 | 0.50 | 0.33 | yes |",
		"| 2 mem-sessions --indexes | 2 | yes | alone | 42000 | 40.0 | 30.0 | 20.0 | 3.0 | 60 | 0.95 | 0.71 | 0.48 | **NO: the tool took more CPU than the server** |",
		"In 1 run(s) the load tool took more CPU than the server",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("README lacks %q", want)
		}
	}
	if strings.Contains(md.String(), "Sign-ins the servers shed") {
		t.Error("a sweep that shed no sign-ins has a section for them")
	}
	if t.Failed() || os.Getenv("SHOW") != "" {
		t.Log(md.String())
	}
	svg := sweepSVG(sr)
	dec := xml.NewDecoder(strings.NewReader(svg))
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("chart.svg is not well-formed XML: %v", err)
		}
	}
	if bars := strings.Count(svg, `class="bar"`); bars != 15 {
		t.Fatalf("%d bars, want 5 stages × (two ladders + the talk)", bars)
	}
	dir := t.TempDir()
	if err := WriteSweep(dir, sr); err != nil {
		t.Fatal(err)
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

// The sweep refreshes the figure blocks of the stage docs for the steps it
// measured and leaves the rest of each doc, and other steps' blocks, alone.
func TestWriteStepBlocks(t *testing.T) {
	dir := t.TempDir()
	doc := "# Stage 2\n\nProse that stays.\n\n<!-- sweep: step 2 -->\nold figures\n<!-- /sweep -->\n\nMore prose.\n"
	other := "<!-- sweep: step 0 -->\nold\n<!-- /sweep -->\n<!-- sweep: step 9 -->\nnot measured\n<!-- /sweep -->\n"
	readme := filepath.Join(t.TempDir(), "README.md")
	os.WriteFile(readme, []byte("# App\n<!-- sweep: ladders -->\n<!-- /sweep -->\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "02-mem-sessions.md"), []byte(doc), 0o644)
	os.WriteFile(filepath.Join(dir, "00-cgi.md"), []byte(other), 0o644)
	changed, err := WriteStepBlocks([]string{dir, readme}, fixedSweep())
	if err != nil || len(changed) != 3 {
		t.Fatalf("changed %v, %v", changed, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "02-mem-sessions.md"))
	got := string(b)
	for _, want := range []string{"Prose that stays.", "More prose.", "<!-- sweep: step 2 -->\nMeasured 2026-11-22 00:00 UTC by the sweep in [results/README.md](",
		"- each step alone (--indexes): 800.0 → 1400.0 req/s (**1.75×**)", "| route | tagged: 1 db-sessions | tagged: 2 mem-sessions |", "\n<!-- /sweep -->\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("doc lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "old figures") {
		t.Errorf("the old figures stayed:\n%s", got)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "00-cgi.md"))
	if got := string(b); !strings.Contains(got, "| route | tagged: 0 cgi | alone: 0 cgi --indexes |") || !strings.Contains(got, "not measured") {
		t.Errorf("stage 0's block or the unmeasured one:\n%s", got)
	}
	b, _ = os.ReadFile(readme)
	if got := string(b); !strings.Contains(got, "| 1 db-sessions | 10.0 | 2.00× | 4000.0 | 800.0 | 40.00× | 50.0 | 139 | 6.04× |") {
		t.Errorf("README's ladders block:\n%s", got)
	}
}

// The topology stages are measured on a second mix too (most visitors
// anonymous): a run of its own after the stage's run, shared by both
// ladders like it, and never taken for the stage's step.
func TestSweepPlanMeasuresTopologyStagesOnBothMixes(t *testing.T) {
	stages := append(append([]StageSchemas{}, fiveStages...),
		StageSchemas{Stage: 6, Name: "queue", Own: 3, Indexed: 3},
		StageSchemas{Stage: 7, Name: "scale-out", Own: 3, Indexed: 3, Mixes: []float64{0.9}},
		StageSchemas{Stage: 8, Name: "front-cache", Own: 3, Indexed: 3, Mixes: []float64{0.9}})
	runs, ladders, err := planSweep(stages, "both", 3)
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, r := range runs {
		labels = append(labels, r.Label())
	}
	if got, want := strings.Join(labels[:5], ", "), "6 queue, 7 scale-out, 7 scale-out --anonymous 0.9, 8 front-cache, 8 front-cache --anonymous 0.9"; got != want {
		t.Fatalf("runs %s\nwant first %s", strings.Join(labels, ", "), want)
	}
	if !runs[2].SecondMix || runs[1].SecondMix || len(runs[2].Ladders) != 2 || len(runs) != 14 {
		t.Fatalf("runs %+v", runs[:5])
	}
	sr := &SweepResult{Runs: runs, Ladders: ladders}
	for _, l := range ladders {
		if r := sr.step(l, 7); r == nil || r.SecondMix {
			t.Fatalf("%s: stage 7's step is %+v, want the logged-in run", l.Name, r)
		}
	}
	if mixes := sr.secondMixes(8); len(mixes) != 1 || mixes[0].Label() != "8 front-cache --anonymous 0.9" {
		t.Fatalf("stage 8's further mixes: %+v", mixes)
	}
}

// fixedTopologySweep is stages 6-8 on one ladder, 7 and 8 on both mixes.
func fixedTopologySweep() *SweepResult {
	stages := []StageSchemas{
		{Stage: 6, Name: "queue", Own: 3, Indexed: 3},
		{Stage: 7, Name: "scale-out", Own: 3, Indexed: 3, Mixes: []float64{0.9}},
		{Stage: 8, Name: "front-cache", Own: 3, Indexed: 3, Mixes: []float64{0.9}},
	}
	runs, ladders, _ := planSweep(stages, "both", 3)
	figures := map[string]float64{"6 queue": 1000, "7 scale-out": 800, "7 scale-out --anonymous 0.9": 1200, "8 front-cache": 790, "8 front-cache --anonymous 0.9": 4800}
	for _, r := range runs {
		v := figures[r.Label()]
		r.Result = fixedResult(r.Stage, r.Name, true, v, 40000/v)
		if r.SecondMix {
			for i := range r.Result.Routes {
				r.Result.Routes[i].Route = "anon-" + r.Result.Routes[i].Route
			}
		}
		r.CPU = &CPU{Seconds: 30, Requests: int64(v * 30), ToolS: 5, ServerS: 30, PostgresS: 20, PostgresOK: true, OthersS: 3, MachineS: 60}
	}
	return &SweepResult{Command: "flickrkillr loadtest sweep --stages 6-8", Warmup: "10s", Host: HostInfo{Cores: 2}, Started: time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC), Runs: runs, Ladders: ladders}
}

// A step with a front cache shows its hit ratio per route beside the rates
// (the stage-8 doc's "hit ratio per page kind"); steps without one do not.
func TestSweepReportShowsTheFrontCacheHits(t *testing.T) {
	sr := fixedTopologySweep()
	for _, r := range sr.Runs {
		if r.Stage != 8 {
			continue
		}
		for i := range r.Result.Routes {
			rr := &r.Result.Routes[i]
			hits := int64(0)
			if r.SecondMix && rr.Route == "anon-photo" {
				hits = rr.Requests * 9 / 10
			}
			rr.Front = &FrontResult{Responses: rr.Requests, Hits: hits, HitRatio: float64(hits) / float64(rr.Requests)}
		}
		r.Result.Total.Front = &FrontResult{Responses: 100, Hits: 25, HitRatio: 0.25}
	}
	var md bytes.Buffer
	if err := writeSweepMarkdown(&md, sr); err != nil {
		t.Fatal(err)
	}
	got := md.String()
	step8 := got[strings.Index(got, "### Step 8: front-cache"):strings.Index(got, "## Per route, as the tags build it")]
	photo := sr.Runs[len(sr.Runs)-1].Result.Routes[0] // anon-photo of the last run, 8 --anonymous 0.9
	for _, want := range []string{
		"**Buys:** anonymous visitors' pages from memcached through nginx",
		"The front cache's answers (X-Front-Cache)",
		fmt.Sprintf("| anon-photo |  | %d of %d (90.0%%) |", photo.Requests*9/10, photo.Requests),
		"| total |  | 25 of 100 (25.0%) |",
	} {
		if !strings.Contains(step8, want) {
			t.Errorf("step 8 lacks %q:\n%s", want, step8)
		}
	}
	if step7 := got[strings.Index(got, "### Step 7"):strings.Index(got, "### Step 8")]; strings.Contains(step7, "X-Front-Cache") {
		t.Errorf("step 7 has a front-cache table:\n%s", step7)
	}
}

// The anonymous mix's rows come after their stage's row, in the ladder
// table's format, against the stage before on the same mix; the other rows
// read as before, and each step and the per-route tables show the mix apart.
func TestSweepReportShowsTheAnonymousMixApart(t *testing.T) {
	sr := fixedTopologySweep()
	sr.Runs[1].Result.SignIn = &SignInResult{Users: 32, Before: 30, During: 1, Waiting: 1, Shed: 57, PhaseS: 30}
	var md bytes.Buffer
	if err := writeSweepMarkdown(&md, sr); err != nil {
		t.Fatal(err)
	}
	got := md.String()
	for _, want := range []string{
		"| 6 queue | 1000.0 ‡ | — | 40.0 | 1000.0 ‡ | — | 40.0 | — | — |\n| 7 scale-out | 800.0 ‡ | 0.80× | 50.0 | 800.0 ‡ | 0.80× | 50.0 | — | — |\n| 7 scale-out --anonymous 0.9 | 1200.0 ‡ | — | 33.3 | 1200.0 ‡ | — | 33.3 | — | — |\n| 8 front-cache | 790.0 ‡ | 0.99× |",
		"| 8 front-cache --anonymous 0.9 | 4800.0 ‡ | 4.00× | 8.3 | 4800.0 ‡ | 4.00× | 8.3 | — | — |\n\n",
		"Rows with `--anonymous 0.9`: the topology stages measured again",
		"### Step 8: front-cache",
		"- as the tags build it: 800.0 → 790.0 req/s (**0.99×**)",
		"With anonymous visitors (`--anonymous 0.9`, the topology stages' second mix; routes `anon-…`):",
		"closed loop, 32 virtual users (the topology stages also with --anonymous 0.9), 30s per run",
		"- 7 scale-out --anonymous 0.9 → 8 front-cache --anonymous 0.9: 1200.0 → 4800.0 req/s (**4.00×**), p99 33.3 → 8.3 ms; CPU per request: server",
		"| route | 7 scale-out --anonymous 0.9 | 8 front-cache --anonymous 0.9 |\n|---|---:|---:|\n| anon-photo | 600.0 (33.3) | 2400.0 (8.3) |",
		"- 7 scale-out --anonymous 0.9: 1200.0 req/s, p99 33.3 ms; CPU per request: server 0.83, PostgreSQL 0.56, tool 0.14 ms (the stage before was not measured on this mix)",
		"## Per route, with anonymous visitors (--anonymous 0.9): req/s (p99 ms)",
		"| 7 scale-out --anonymous 0.9 | 3 | yes | tagged, alone | 36000 |",
		"## Sign-ins the servers shed",
		"| 7 scale-out | 32 | 30 | 1 | 1 | 57 | 30.0 | 0 |\n\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("README lacks %q", want)
		}
	}
	// The ladders' per-route tables are the logged-in runs' alone.
	perRoute := got[strings.Index(got, "## Per route, as the tags build it"):strings.Index(got, "## Per route, each step alone")]
	if strings.Contains(perRoute, "anon-") || strings.Contains(perRoute, "--anonymous") {
		t.Errorf("the ladder's per-route table has the anonymous runs:\n%s", perRoute)
	}
	if t.Failed() || os.Getenv("SHOW") != "" {
		t.Log(got)
	}
	if bars := strings.Count(sweepSVG(sr), `class="bar"`); bars != 6 {
		t.Errorf("%d bars, want 3 stages × two ladders (the chart is the ladders')", bars)
	}
}
