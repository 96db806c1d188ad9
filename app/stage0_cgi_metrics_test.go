package app

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"flickrkillr/app/obs"
)

func TestStage0ParentCountsWhatItSees(t *testing.T) {
	h := testCGIHandler(t)
	cm := newCGIMetrics()
	srv := httptest.NewServer(cm.wrap(h))
	defer srv.Close()

	b := (&testApp{srv: srv}).browser(t)
	var said int
	for range 2 {
		res := b.get("/")
		mustStatus(t, res, http.StatusOK)
		if res.Header.Get(obs.RouteHeader) != "" {
			t.Fatalf("the child's %s header reached the client", obs.RouteHeader)
		}
		for _, e := range obs.ParseServerTiming(res.Header.Get("Server-Timing")) {
			if e.Name == "db" || e.Name == "session" {
				said += obs.QueriesIn(e.Desc)
			}
		}
	}
	mustStatus(t, b.get("/no/such/page"), http.StatusNotFound)

	m := scrape(t, &testApp{App: &App{metrics: cm.Metrics}})
	mustMetric(t, m, `http_requests_total{code="200",method="GET",route="/"}`, 2)
	mustMetric(t, m, `http_requests_total{code="404",method="GET",route="unmatched"}`, 1)
	mustMetric(t, m, `http_request_duration_seconds_count{route="/"}`, 2)
	mustMetric(t, m, "flickrkillr_cgi_processes_started_total", 3)
	if said == 0 {
		t.Fatal("the children's Server-Timing reported no SQL for the home page")
	}
	if got := m["flickrkillr_sql_statements_total"]; got < float64(said) {
		t.Fatalf("the parent counted %g SQL statements; the children's Server-Timing said %d for the home pages alone", got, said)
	}
	if m["flickrkillr_cgi_children_cpu_seconds_total"] <= 0 {
		t.Fatal("no CPU time of the children")
	}
}
