package app

import "strings"

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
func inFamily(fam string) Filter {
	return func(l map[string]string) bool { return routeFamily(l["route"], l["method"]) == fam }
}

// isError selects server errors.
func isError(l map[string]string) bool { return strings.HasPrefix(l["code"], "5") }

// both selects series that both filters select.
func both(a, b Filter) Filter {
	return func(l map[string]string) bool { return a(l) && b(l) }
}

// requestPanels are the panels of whatever serves requests, CGI parent included.
func requestPanels() []Panel {
	var rps, errs []Series
	for _, fam := range routeFamilies {
		rps = append(rps, Series{fam, func(s *Sample) float64 { return s.Rate("http_requests_total", inFamily(fam)) }})
		errs = append(errs, Series{fam, func(s *Sample) float64 {
			return 100 * Per(s.Rate("http_requests_total", both(inFamily(fam), isError)), s.Rate("http_requests_total", inFamily(fam)))
		}})
	}
	const dur = "http_request_duration_seconds"
	return []Panel{
		{ID: "rps", Title: "Requests per second, by route family", Unit: "req/s", Series: rps},
		{ID: "errors", Title: "Server errors (5xx), % of requests", Unit: "%", Series: errs},
		{ID: "latency", Title: "Latency, all routes", Unit: "ms", Note: "over the last 5 s, from the histogram's buckets", Series: []Series{
			{"p50", func(s *Sample) float64 { return 1000 * s.Quantile(dur, .50, nil) }},
			{"p95", func(s *Sample) float64 { return 1000 * s.Quantile(dur, .95, nil) }},
			{"p99", func(s *Sample) float64 { return 1000 * s.Quantile(dur, .99, nil) }},
		}},
		{ID: "inflight", Title: "Requests in flight", Unit: "requests", Series: []Series{
			{"in flight", func(s *Sample) float64 { return s.Gauge("http_requests_in_flight", nil) }},
		}},
	}
}

// processPanels are the Go runtime's and the process's panels.
func processPanels() []Panel {
	return []Panel{
		{ID: "cpu", Title: "CPU", Unit: "cores", Series: []Series{
			{"server process", func(s *Sample) float64 { return s.Rate("process_cpu_seconds_total", nil) }},
		}},
		{ID: "memory", Title: "Memory", Unit: "MB", Series: []Series{
			{"RSS", func(s *Sample) float64 { return s.Gauge("process_resident_memory_bytes", nil) / 1e6 }},
			{"heap in use", func(s *Sample) float64 { return s.Gauge("go_memstats_heap_alloc_bytes", nil) / 1e6 }},
		}},
		{ID: "goroutines", Title: "Goroutines", Unit: "goroutines", Series: []Series{
			{"goroutines", func(s *Sample) float64 { return s.Gauge("go_goroutines", nil) }},
		}},
		{ID: "gc", Title: "GC pauses", Unit: "ms per s", Series: []Series{
			{"stop-the-world", func(s *Sample) float64 { return 1000 * s.RateSum("go_gc_duration_seconds", nil) }},
		}},
	}
}

// corePanels are every long-running stage's panels: requests, what they
// spend their time on, the database pool, the runtime.
func corePanels() []Panel {
	const reqs = "http_requests_total"
	part := func(p string) func(s *Sample) float64 {
		return func(s *Sample) float64 {
			return 1000 * Per(s.Rate("flickrkillr_request_part_seconds_total", Label("part", p)), s.Rate(reqs, nil))
		}
	}
	panels := requestPanels()
	panels = append(panels,
		Panel{ID: "sql", Title: "SQL statements per request", Unit: "statements", Note: "session store included", Series: []Series{
			{"SQL / request", func(s *Sample) float64 {
				return Per(s.Rate("flickrkillr_sql_statements_total", nil), s.Rate(reqs, nil))
			}},
		}},
		Panel{ID: "parts", Title: "Where a request's time goes (Server-Timing)", Unit: "ms per request", Series: []Series{
			{"db", part("db")}, {"cache", part("cache")}, {"session", part("session")}, {"render", part("render")},
		}},
		Panel{ID: "pool", Title: "Database pool", Unit: "connections, waits/s", Series: []Series{
			{"in use", func(s *Sample) float64 { return s.Gauge("go_sql_in_use_connections", nil) }},
			{"idle", func(s *Sample) float64 { return s.Gauge("go_sql_idle_connections", nil) }},
			{"waits/s", func(s *Sample) float64 { return s.Rate("go_sql_wait_count_total", nil) }},
		}},
		Panel{ID: "poolwait", Title: "Time waiting for a database connection", Unit: "ms per s", Series: []Series{
			{"waiting", func(s *Sample) float64 { return 1000 * s.Rate("go_sql_wait_duration_seconds_total", nil) }},
		}},
	)
	return append(panels, processPanels()...)
}
