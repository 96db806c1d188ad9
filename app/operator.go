package app

import (
	"context"
	"fmt"
	"os"
	"strings"

	"flickrkillr/app/obs"
	"flickrkillr/migrations"
)

// The operator side of the app (STYLE 14): the panels of its dashboard,
// which stages register from their own files, and the listener the App
// starts with them (obs.StartOperator: /dashboard, /metrics, /debug/pprof/).

// PanelsFunc gives a stage's panels (Stage.Panels). It may register its own
// collectors in m.Registry() first; its panels then read them like any
// other metric.
type PanelsFunc func(m *obs.Metrics) []obs.Panel

// panelsFor folds the panels of the stages s runs, in stage order.
func panelsFor(s Stage, m *obs.Metrics) []obs.Panel {
	var out []obs.Panel
	for _, st := range s.steps {
		if st.Panels != nil {
			out = append(out, st.Panels(m)...)
		}
	}
	return out
}

// dashboardInfo is the dashboard's header for stage s; schema says what is
// known of the database's schema.
func dashboardInfo(s Stage, schema, note string) obs.Info {
	return obs.Info{Stage: s.Number, Name: s.Name, Summary: s.Summary, PID: os.Getpid(), Schema: schema, Note: note}
}

// adminInfo is the dashboard's header for the App's stage on the schema the database has.
func (a *App) adminInfo(ctx context.Context) obs.Info {
	schema := fmt.Sprintf("migration %d expected", a.stage.Schema)
	if sqlDB, err := a.db.DB(); err == nil {
		if v, err := migrations.Version(ctx, sqlDB); err == nil {
			schema = fmt.Sprintf("migration %d of %d", v, migrations.Latest())
		}
	}
	return dashboardInfo(a.stage, schema, "")
}

// operator describes the App's operator listener: with metrics, the core
// panels, then those the stages registered; without, the profiler only.
func (a *App) operator(ctx context.Context) obs.Operator {
	o := obs.Operator{Addr: a.cfg.AdminAddr, Log: a.log, Pages: modelPages(a.cfg)}
	if a.metrics != nil {
		o.Metrics = a.metrics.Registry()
		o.Info = a.adminInfo(ctx)
		o.Panels = append(corePanels(), panelsFor(a.stage, a.metrics)...)
		if m := a.cfg.model; m != nil { // --model: the hosts (model.go)
			a.metrics.Registry().Register(hostsCollector{m}) // a second call finds it registered
			var names []string
			for _, h := range m.Hosts() {
				names = append(names, h.Name())
			}
			o.Panels = append(o.Panels, modelPanels(m.Spec(), names)...)
		}
	}
	return o
}

// startAdmin starts the operator listener of a long-running App at
// cfg.AdminAddr, with its dashboard sampling, until stop is called.
func (a *App) startAdmin(ctx context.Context) (stop func()) {
	if a.cfg.AdminAddr == "" {
		return func() {}
	}
	return obs.StartOperator(ctx, a.operator(ctx))
}

// routeFamily groups echo routes into the families the dashboard draws.
func routeFamily(route, method string) string {
	switch {
	case route == "/":
		return "home"
	case route == "/photos/:id":
		return "photo"
	case route == "/photos/:id/image", route == "/photos/:id/thumb":
		return "images"
	case route == "/users/:name":
		return "user"
	case route == "/tags/:tag":
		return "tag"
	case method == "POST":
		return "writes"
	case route == "/login", route == "/signup", route == "/upload":
		return "forms"
	default:
		return "other" // static files, /healthz, unmatched URLs
	}
}

var routeFamilies = []string{"home", "photo", "images", "user", "tag", "forms", "writes", "other"}

// inFamily selects the request series of one route family.
func inFamily(fam string) obs.Filter {
	return func(l map[string]string) bool { return routeFamily(l["route"], l["method"]) == fam }
}

// isError selects server errors.
func isError(l map[string]string) bool { return strings.HasPrefix(l["code"], "5") }

// both selects series that both filters select.
func both(a, b obs.Filter) obs.Filter {
	return func(l map[string]string) bool { return a(l) && b(l) }
}

// requestPanels are the panels of whatever serves requests, CGI parent included.
func requestPanels() []obs.Panel {
	var rps, errs []obs.Series
	for _, fam := range routeFamilies {
		rps = append(rps, obs.Series{Label: fam, Value: func(s *obs.Sample) float64 { return s.Rate("http_requests_total", inFamily(fam)) }})
		errs = append(errs, obs.Series{Label: fam, Value: func(s *obs.Sample) float64 {
			return 100 * obs.Per(s.Rate("http_requests_total", both(inFamily(fam), isError)), s.Rate("http_requests_total", inFamily(fam)))
		}})
	}
	const dur = "http_request_duration_seconds"
	return []obs.Panel{
		{ID: "rps", Title: "Requests per second, by route family", Unit: "req/s", Series: rps},
		{ID: "errors", Title: "Server errors (5xx), % of requests", Unit: "%", Series: errs},
		{ID: "latency", Title: "Latency, all routes", Unit: "ms", Note: "over the last 5 s, from the histogram's buckets", Series: []obs.Series{
			{Label: "p50", Value: func(s *obs.Sample) float64 { return 1000 * s.Quantile(dur, .50, nil) }},
			{Label: "p95", Value: func(s *obs.Sample) float64 { return 1000 * s.Quantile(dur, .95, nil) }},
			{Label: "p99", Value: func(s *obs.Sample) float64 { return 1000 * s.Quantile(dur, .99, nil) }},
		}},
		{ID: "inflight", Title: "Requests in flight", Unit: "requests", Series: []obs.Series{
			{Label: "in flight", Value: func(s *obs.Sample) float64 { return s.Gauge("http_requests_in_flight", nil) }},
		}},
	}
}

// processPanels are the Go runtime's and the process's panels.
func processPanels() []obs.Panel {
	return []obs.Panel{
		{ID: "cpu", Title: "CPU", Unit: "cores", Series: []obs.Series{
			{Label: "server process", Value: func(s *obs.Sample) float64 { return s.Rate("process_cpu_seconds_total", nil) }},
		}},
		{ID: "memory", Title: "Memory", Unit: "MB", Series: []obs.Series{
			{Label: "RSS", Value: func(s *obs.Sample) float64 { return s.Gauge("process_resident_memory_bytes", nil) / 1e6 }},
			{Label: "heap in use", Value: func(s *obs.Sample) float64 { return s.Gauge("go_memstats_heap_alloc_bytes", nil) / 1e6 }},
		}},
		{ID: "goroutines", Title: "Goroutines", Unit: "goroutines", Series: []obs.Series{
			{Label: "goroutines", Value: func(s *obs.Sample) float64 { return s.Gauge("go_goroutines", nil) }},
		}},
		{ID: "gc", Title: "GC pauses", Unit: "ms per s", Series: []obs.Series{
			{Label: "stop-the-world", Value: func(s *obs.Sample) float64 { return 1000 * s.RateSum("go_gc_duration_seconds", nil) }},
		}},
	}
}

// corePanels are every long-running stage's panels: requests, what they
// spend their time on, the database pool, the runtime.
func corePanels() []obs.Panel {
	const reqs = "http_requests_total"
	part := func(p string) func(s *obs.Sample) float64 {
		return func(s *obs.Sample) float64 {
			return 1000 * obs.Per(s.Rate("flickrkillr_request_part_seconds_total", obs.Label("part", p)), s.Rate(reqs, nil))
		}
	}
	panels := requestPanels()
	panels = append(panels,
		obs.Panel{ID: "sql", Title: "SQL statements per request", Unit: "statements", Note: "session store included", Series: []obs.Series{
			{Label: "SQL / request", Value: func(s *obs.Sample) float64 {
				return obs.Per(s.Rate("flickrkillr_sql_statements_total", nil), s.Rate(reqs, nil))
			}},
		}},
		obs.Panel{ID: "parts", Title: "Where a request's time goes (Server-Timing)", Unit: "ms per request", Series: []obs.Series{
			{Label: "db", Value: part("db")}, {Label: "cache", Value: part("cache")}, {Label: "session", Value: part("session")}, {Label: "render", Value: part("render")},
		}},
		obs.Panel{ID: "pool", Title: "Database pool", Unit: "connections, waits/s", Series: []obs.Series{
			{Label: "in use", Value: func(s *obs.Sample) float64 { return s.Gauge("go_sql_in_use_connections", nil) }},
			{Label: "idle", Value: func(s *obs.Sample) float64 { return s.Gauge("go_sql_idle_connections", nil) }},
			{Label: "waits/s", Value: func(s *obs.Sample) float64 { return s.Rate("go_sql_wait_count_total", nil) }},
		}},
		obs.Panel{ID: "poolwait", Title: "Time waiting for a database connection", Unit: "ms per s", Series: []obs.Series{
			{Label: "waiting", Value: func(s *obs.Sample) float64 { return 1000 * s.Rate("go_sql_wait_duration_seconds_total", nil) }},
		}},
	)
	return append(panels, processPanels()...)
}
