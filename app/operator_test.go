package app

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"context"
	"flickrkillr/app/obs"
	"flickrkillr/models/modeltest"
)

// scrape fetches /metrics from the App's operator handler and returns its
// sample lines by their name and labels as exported.
func scrape(t *testing.T, ta *testApp) map[string]float64 {
	t.Helper()
	admin := httptest.NewServer(obs.Handler(ta.metrics.Registry(), nil, nil))
	defer admin.Close()
	res, err := http.Get(admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: status %d", res.StatusCode)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func mustMetric(t *testing.T, m map[string]float64, series string, want float64) {
	t.Helper()
	got, ok := m[series]
	if !ok {
		t.Fatalf("/metrics has no %s", series)
	}
	if got != want {
		t.Fatalf("%s = %g, want %g", series, got, want)
	}
}

// newDashboard is the dashboard the App's operator listener serves.
func (ta *testApp) newDashboard(ctx context.Context) *obs.Dashboard {
	o := ta.operator(ctx)
	return obs.NewDashboard(o.Info, o.Metrics, o.Panels)
}

// inBuild skips a test of a stage that this build (a workshop tag) does not have.
func inBuild(t *testing.T, stage int) {
	t.Helper()
	if _, ok := LookupStage(stage); !ok {
		t.Skipf("stage %d is not in this build", stage)
	}
}

func TestMetricsCountWhatTheAppDid(t *testing.T) {
	stage := DefaultStage()
	ta := newTestApp(t, stage)
	alice := ta.browser(t)
	alice.signup("alice")
	photo := alice.upload(map[string]string{"title": "Counted", "tags": "count"}, "a.png", testPNG(t, 40, 30)).Header.Get("Location")
	before := scrape(t, ta)
	sqlBefore := ta.queries.Load()

	anon := ta.browser(t)
	for range 3 {
		mustStatus(t, anon.get("/"), http.StatusOK)
	}
	for range 2 {
		mustStatus(t, anon.get(photo), http.StatusOK)
		mustStatus(t, anon.get(photo+"/thumb"), http.StatusOK)
	}
	mustStatus(t, anon.get("/no/such/page"), http.StatusNotFound)
	mustStatus(t, anon.get("/photos/999999"), http.StatusNotFound)
	for range 2 {
		mustStatus(t, alice.get("/users/alice"), http.StatusOK)
	}
	sent := ta.queries.Load() - sqlBefore
	m := scrape(t, ta)

	t.Run("requests by route pattern, method and code", func(t *testing.T) {
		mustMetric(t, m, `http_requests_total{code="200",method="GET",route="/"}`, 3)
		mustMetric(t, m, `http_requests_total{code="200",method="GET",route="/photos/:id"}`, 2)
		mustMetric(t, m, `http_requests_total{code="200",method="GET",route="/photos/:id/thumb"}`, 2)
		mustMetric(t, m, `http_requests_total{code="404",method="GET",route="/photos/:id"}`, 1)
		mustMetric(t, m, `http_requests_total{code="404",method="GET",route="unmatched"}`, 1)
		mustMetric(t, m, `http_requests_total{code="303",method="POST",route="/signup"}`, 1)
		mustMetric(t, m, `http_requests_total{code="303",method="POST",route="/upload"}`, 1)
		for series := range m {
			if strings.Contains(series, `route="/photos/1`) || strings.Contains(series, "/no/such") {
				t.Fatalf("a raw URL became a label: %s", series)
			}
		}
	})
	t.Run("durations per route, in buckets from 0.25 ms to 10 s", func(t *testing.T) {
		mustMetric(t, m, `http_request_duration_seconds_count{route="/"}`, 3)
		mustMetric(t, m, `http_request_duration_seconds_count{route="/photos/:id"}`, 3)
		mustMetric(t, m, `http_request_duration_seconds_bucket{route="/",le="+Inf"}`, 3)
		for _, le := range []string{"0.00025", "10"} {
			if _, ok := m[`http_request_duration_seconds_bucket{route="/",le="`+le+`"}`]; !ok {
				t.Fatalf("no bucket le=%s", le)
			}
		}
		mustMetric(t, m, "http_requests_in_flight", 0)
	})
	t.Run("SQL statements are the ones the database saw", func(t *testing.T) {
		got := m["flickrkillr_sql_statements_total"] - before["flickrkillr_sql_statements_total"]
		if got != float64(sent) || sent == 0 {
			t.Fatalf("flickrkillr_sql_statements_total grew by %g; pgx sent %d statements", got, sent)
		}
		reqs := m["flickrkillr_sql_statements_per_request_count"] - before["flickrkillr_sql_statements_per_request_count"]
		if reqs != 11 {
			t.Fatalf("SQL-per-request histogram counted %g requests, want 11", reqs)
		}
	})
	t.Run("session operations: a find per request of a logged-in user, a commit per change", func(t *testing.T) {
		// The anonymous browser carries no session cookie: no store operations.
		finds := m[`flickrkillr_session_operations_total{op="find",result="ok"}`] - before[`flickrkillr_session_operations_total{op="find",result="ok"}`]
		commits := m[`flickrkillr_session_operations_total{op="commit",result="ok"}`] - before[`flickrkillr_session_operations_total{op="commit",result="ok"}`]
		// Stages 1-2 rewrite the session on every request; from stage 3 on
		// only the first page, which takes the upload's flash, changes it.
		wantCommits := 2.0
		if s, _ := resolve(stage); s.SessionRefresh > 0 {
			wantCommits = 1
		}
		if finds != 2 || commits != wantCommits {
			t.Fatalf("session finds %g, commits %g; want 2 and %g (alice's two pages)", finds, commits, wantCommits)
		}
	})
	t.Run("cache lookups and images from memory (stage 3 and up)", func(t *testing.T) {
		hits := m[`flickrkillr_cache_lookups_total{result="hit"}`] - before[`flickrkillr_cache_lookups_total{result="hit"}`]
		misses := m[`flickrkillr_cache_lookups_total{result="miss"}`] - before[`flickrkillr_cache_lookups_total{result="miss"}`]
		mustMetric(t, m, `flickrkillr_cache_lookups_total{result="error"}`, 0)
		if stage < 3 {
			// No cache: no lookups, and every image read reaches the disk.
			if hits+misses != 0 {
				t.Fatalf("stage %d counted %g cache hits and %g misses", stage, hits, misses)
			}
			mustMetric(t, m, `flickrkillr_image_reads_total{source="disk"}`, 2)
			mustMetric(t, m, `flickrkillr_image_reads_total{source="memory"}`, 0)
			return
		}
		// Each page's first view misses (the upload invalidated them), the
		// next ones hit; the thumbnail's bytes come from disk once, then from memory.
		if hits == 0 || misses == 0 {
			t.Fatalf("cache hits %g, misses %g: both should have happened", hits, misses)
		}
		mustMetric(t, m, `flickrkillr_image_reads_total{source="disk"}`, 1)
		mustMetric(t, m, `flickrkillr_image_reads_total{source="memory"}`, 1)
	})
	t.Run("runtime, process and pool collectors", func(t *testing.T) {
		for _, series := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total",
			"process_resident_memory_bytes", `go_sql_in_use_connections{db_name="flickrkillr"}`, `go_sql_wait_count_total{db_name="flickrkillr"}`} {
			if _, ok := m[series]; !ok {
				t.Fatalf("/metrics has no %s", series)
			}
		}
	})
}

func TestServerTimingCountsTheStatementsSent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stage int
	}{
		{"stage 1, sessions in PostgreSQL", 1},
		{"stage 3, the second view a cache hit", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inBuild(t, tc.stage)
			ta := newTestApp(t, tc.stage)
			b := ta.browser(t)
			b.signup("tim")
			photo := b.upload(map[string]string{"title": "Timed", "tags": "timed"}, "a.png", testPNG(t, 40, 30)).Header.Get("Location")
			b.get("/upload") // takes the upload's flash: a page with a flash is not kept
			for _, path := range []string{"/", photo, "/users/tim", "/tags/timed"} {
				for view := 1; view <= 2; view++ {
					before := ta.queries.Load()
					res := b.get(path)
					sent := ta.queries.Load() - before
					mustStatus(t, res, http.StatusOK)
					st := obs.ParseServerTiming(res.Header.Get("Server-Timing"))
					parts := map[string]obs.TimingEntry{}
					for _, e := range st {
						parts[e.Name] = e
					}
					for _, name := range []string{"db", "cache", "session", "render", "total"} {
						if _, ok := parts[name]; !ok {
							t.Fatalf("GET %s: Server-Timing %q has no %s", path, res.Header.Get("Server-Timing"), name)
						}
					}
					said := obs.QueriesIn(parts["db"].Desc) + obs.QueriesIn(parts["session"].Desc)
					if int64(said) != sent {
						t.Fatalf("GET %s (view %d): Server-Timing %q says %d statements, pgx saw %d",
							path, view, res.Header.Get("Server-Timing"), said, sent)
					}
					switch {
					case tc.stage == 1 && obs.QueriesIn(parts["session"].Desc) != 2:
						t.Fatalf("GET %s at stage 1: session %q, want 2 queries (find and commit)", path, parts["session"].Desc)
					case tc.stage == 1 && obs.QueriesIn(parts["db"].Desc) == 0:
						t.Fatalf("GET %s at stage 1 sent no page SQL: %q", path, res.Header.Get("Server-Timing"))
					case tc.stage == 3 && view == 2 && (sent != 0 || !regexp.MustCompile(`^[1-9]\d* hits?, 0 misses$`).MatchString(parts["cache"].Desc)):
						t.Fatalf("GET %s at stage 3, second view: %d statements, cache %q; want 0 and only hits", path, sent, parts["cache"].Desc)
					}
					// A kept page executes no template (stage 3, second view): render 0.
					if (tc.stage == 1 || view == 1) && parts["render"].Dur <= 0 || parts["total"].Dur < parts["render"].Dur {
						t.Fatalf("GET %s: render %.3f ms, total %.3f ms", path, parts["render"].Dur, parts["total"].Dur)
					}
				}
			}
		})
	}
}

func TestEveryResponseCarriesServerTiming(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	b := ta.browser(t)
	for _, path := range []string{"/healthz", "/static/style.css", "/login", "/no/such/page"} {
		if st := b.get(path).Header.Get("Server-Timing"); !strings.HasPrefix(st, "db;dur=") {
			t.Fatalf("GET %s: Server-Timing %q", path, st)
		}
	}
}

func TestMetricsOffSendsNoServerTiming(t *testing.T) {
	need, _ := SchemaFor(DefaultStage())
	ta := newTestAppWith(t, Config{DatabaseURL: modeltest.NewDB(t, need), RedisURL: testRedisURL(t), DataDir: t.TempDir(), Stage: DefaultStage(), NoMetrics: true})
	if ta.metrics != nil {
		t.Fatal("METRICS=0 made a registry")
	}
	if st := ta.browser(t).get("/").Header.Get("Server-Timing"); st != "" {
		t.Fatalf("METRICS=0 still sent Server-Timing %q", st)
	}
}

func TestAdminEndpointsAreNotOnThePublicListener(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	dash := ta.newDashboard(t.Context())
	admin := httptest.NewServer(obs.Handler(ta.metrics.Registry(), dash, nil))
	defer admin.Close()
	b := ta.browser(t)
	for _, path := range []string{"/metrics", "/dashboard", "/dashboard/data.json", "/dashboard/dashboard.js", "/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile"} {
		t.Run(path, func(t *testing.T) {
			if res := b.get(path); res.Status != http.StatusNotFound {
				t.Fatalf("the public listener answered %s with %d, want 404", path, res.Status)
			}
			if path == "/debug/pprof/profile" {
				return // a 30-second CPU profile
			}
			res, err := http.Get(admin.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("the operator listener answered %s with %d", path, res.StatusCode)
			}
			if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
				t.Fatalf("CSP %q", csp)
			}
		})
	}
}

func TestDashboardDataHasEveryPanel(t *testing.T) {
	for _, tc := range []struct {
		stage int
		want  []string
		not   []string
	}{
		{2, []string{"rps", "errors", "latency", "inflight", "sql", "parts", "pool", "cpu", "memory", "goroutines", "gc"}, []string{"cache"}},
		{3, []string{"rps", "cache", "cacheops"}, nil},
	} {
		t.Run(fmt.Sprintf("stage %d", tc.stage), func(t *testing.T) {
			inBuild(t, tc.stage)
			ta := newTestApp(t, tc.stage)
			ids := map[string]bool{}
			for _, p := range ta.operator(t.Context()).Panels {
				ids[p.ID] = true
			}
			for _, id := range tc.want {
				if !ids[id] {
					t.Fatalf("no panel %q (have %v)", id, ids)
				}
			}
			for _, id := range tc.not {
				if ids[id] {
					t.Fatalf("panel %q at stage %d", id, tc.stage)
				}
			}
		})
	}
}
