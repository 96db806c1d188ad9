package obs

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"flickrkillr/models/timing"
)

// What a CGI child sends in Server-Timing, its parent reads back: the
// parts, their durations and the statements counted in a desc.
func TestServerTimingReadsBackWhatItWrote(t *testing.T) {
	ctx, tm := timing.With(t.Context())
	_, done := timing.Time(ctx, timing.Render)
	done()
	got := map[string]TimingEntry{}
	for _, e := range ParseServerTiming(ServerTiming(tm, 5*time.Millisecond)) {
		got[e.Name] = e
	}
	for _, name := range []string{"db", "cache", "session", "render", "total"} {
		if _, ok := got[name]; !ok {
			t.Fatalf("no %q in %v", name, got)
		}
	}
	if got["total"].Dur != 5 || QueriesIn(got["db"].Desc) != 0 {
		t.Fatalf("total %v, db %q", got["total"], got["db"].Desc)
	}
	if e := ParseServerTiming(`db;dur=1.5;desc="3 queries, quoted", total;dur=2`); len(e) != 2 || QueriesIn(e[0].Desc) != 3 {
		t.Fatalf("a quoted comma: %+v", e)
	}
}

// The operator listener serves /metrics and the dashboard from the same
// registry the middleware fills, with the operator's security headers.
func TestOperatorHandlerServesMetricsAndDashboard(t *testing.T) {
	m := NewMetrics(nil)
	e := echo.New()
	e.Use(Middleware(m, false))
	e.GET("/photos/:id", func(c echo.Context) error { return c.String(http.StatusOK, "photo") })
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/photos/7", nil))
	if rec.Header().Get("Server-Timing") == "" {
		t.Fatal("no Server-Timing header")
	}
	dash := NewDashboard(Info{Stage: 1, Name: "test"}, m.Registry(), []Panel{{ID: "rps", Series: []Series{
		{Label: "all", Value: func(s *Sample) float64 { return s.Rate("http_requests_total", nil) }},
	}}})
	srv := httptest.NewServer(Handler(m.Registry(), dash, map[string]http.Handler{
		"GET /extra": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "extra") }),
	}))
	defer srv.Close()
	for path, want := range map[string]string{
		"/metrics":             `http_requests_total{code="200",method="GET",route="/photos/:id"} 1`,
		"/dashboard/data.json": `"id":"rps"`,
		"/extra":               "extra",
	} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Fatalf("%s: %d %q, want %q in it", path, res.StatusCode, body, want)
		}
		if res.Header.Get("X-Frame-Options") != "DENY" {
			t.Fatalf("%s: no operator headers", path)
		}
	}
}
