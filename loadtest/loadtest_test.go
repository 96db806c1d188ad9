package loadtest

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSite answers like FlickrKillr with tiny pages: enough for the browse
// scenario's checks. broken names a path prefix that answers 500, and
// dropComments makes posted comments never show up.
type fakeSite struct {
	broken       string
	dropComments bool
	mu           sync.Mutex
	comments     map[string][]string
}

func (f *fakeSite) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if f.broken != "" && strings.HasPrefix(p, f.broken) {
		http.Error(w, "boom", 500)
		return
	}
	page := func(markers ...string) {
		fmt.Fprintf(w, "<html>%s Log out</html>", strings.Join(markers, " "))
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
		page("member since")
	case strings.HasPrefix(p, "/tags/"):
		page("Photos tagged")
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
	res, err := Run(ctx, Options{URL: srv.URL, Scenario: "browse", Duration: time.Minute, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || res.Total.Requests == 0 || res.Elapsed > 5 {
		t.Fatalf("interrupted %v, %d requests in %.1fs", res.Interrupted, res.Total.Requests, res.Elapsed)
	}
	var buf bytes.Buffer
	WriteText(&buf, res)
	if !strings.Contains(buf.String(), "INTERRUPTED") {
		t.Fatalf("the report does not say it is partial:\n%s", buf.String())
	}
}

func fixedResult(stage int, name string, rps, p99 float64) *Result {
	return &Result{
		Tool:     "flickrkillr loadtest",
		Settings: Settings{Scenario: "browse", Mode: "closed", Concurrency: 32, Duration: "30s"},
		Server:   ServerInfo{Stage: stage, StageName: name, Rows: map[string]int64{"users": 100000, "photos": 1500000}},
		Elapsed:  30,
		Routes:   []RouteResult{{Route: "photo", Requests: int64(rps * 30 / 2), RPS: rps / 2, P99: p99}, {Route: "thumb", Requests: int64(rps * 15), RPS: rps / 2, P99: p99 / 2}},
		Total:    RouteResult{Route: "total", Requests: int64(rps * 30), RPS: rps, P50: p99 / 4, P99: p99, P999: p99 * 2},
	}
}

func TestSweepReportFromFixedInputs(t *testing.T) {
	sr := &SweepResult{
		Command: "flickrkillr loadtest sweep --duration 30s",
		Host:    HostInfo{CPU: "Test CPU", Cores: 2, Memory: "24 GiB", Go: "go1.26"},
		Started: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC),
		Stages:  []*Result{fixedResult(0, "cgi", 20, 2000), fixedResult(1, "db-sessions", 50, 900), fixedResult(4, "indexes", 1000, 40)},
	}
	var md bytes.Buffer
	if err := writeSweepMarkdown(&md, sr); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"flickrkillr loadtest sweep --duration 30s",
		"Test CPU, 2 cores, 24 GiB memory",
		"100,000 users, 1,500,000 photos",
		"| 0 | cgi | 20.0 | — |",
		"| 1 | db-sessions | 50.0 | 2.50× |",
		"| 4 | indexes | 1000.0 | 20.00× |",
		"| photo | 10.0 (2000.0) | 25.0 (900.0) | 500.0 (40.0) |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("README lacks %q:\n%s", want, md.String())
		}
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
	if bars := strings.Count(svg, `fill="#0063dc"/>`); bars != 3 {
		t.Fatalf("%d bars, want one per stage", bars)
	}
	dir := t.TempDir()
	if err := WriteSweep(dir, sr); err != nil {
		t.Fatal(err)
	}
}
