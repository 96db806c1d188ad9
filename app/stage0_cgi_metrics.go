package app

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Stage 0: each request is answered by a child process, and a child's
// metrics die with it. The parent (the HTTP server that starts the children)
// measures what it can see: requests by route (the child names its route in
// a header that the parent removes), how long they took, the SQL statements
// and time parts the child's Server-Timing reports, the processes it started
// and the CPU its children used. The dashboard says so.
const cgiNote = "Stage 0 (CGI): every request is a new process, and its metrics die with it. This is the parent's view: " +
	"requests, latency, processes started, the children's CPU, and the SQL and time parts each child reported in its " +
	"Server-Timing header. The children's connection pools, memory and goroutines are not visible from here."

type cgiMetrics struct {
	*Metrics
	started prometheus.Counter
}

func newCGIMetrics() *cgiMetrics {
	m := newMetrics(nil)
	cm := &cgiMetrics{Metrics: m, started: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "flickrkillr_cgi_processes_started_total",
		Help: "Stage 0: child processes started, one per request.",
	})}
	m.reg.MustRegister(cm.started, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "flickrkillr_cgi_children_cpu_seconds_total",
		Help: "Stage 0: user and system CPU time of the finished child processes.",
	}, childrenCPU))
	return cm
}

// childrenCPU is the CPU time of the children that have exited (getrusage).
func childrenCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// wrap counts every request h (the CGI handler) answers.
func (cm *cgiMetrics) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		cm.inFlight.Inc()
		cm.started.Inc()
		cw := &cgiWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(cw, r)
		cm.inFlight.Dec()
		route := cw.route
		if route == "" {
			route = "unmatched" // the child failed before routing
		}
		cm.requests.WithLabelValues(route, r.Method, itoa(cw.code)).Inc()
		cm.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		var sql int
		for _, e := range cw.timing {
			switch e.Name {
			case "db", "session":
				sql += queriesIn(e.Desc)
				fallthrough
			case "cache", "render":
				cm.parts.WithLabelValues(route, e.Name).Add(e.Dur / 1000)
			}
		}
		cm.sql.Add(float64(sql))
		cm.sqlPerReq.Observe(float64(sql))
	})
}

// cgiWriter reads the child's route and Server-Timing as the parent writes
// the child's answer.
type cgiWriter struct {
	http.ResponseWriter
	code   int
	route  string
	timing []timingEntry
}

func (w *cgiWriter) WriteHeader(code int) {
	h := w.Header()
	w.code, w.route = code, h.Get(routeHeader)
	h.Del(routeHeader)
	w.timing = parseServerTiming(h.Get("Server-Timing"))
	w.ResponseWriter.WriteHeader(code)
}

func (w *cgiWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// cgiParent instruments the CGI handler and starts the operator listener;
// with METRICS=0 it serves the profiler only.
func cgiParent(ctx context.Context, cfg Config, log *slog.Logger, s Stage, h http.Handler) (http.Handler, func()) {
	if cfg.AdminAddr == "" {
		return h, func() {}
	}
	if cfg.NoMetrics {
		return h, serveAdmin(ctx, cfg.AdminAddr, adminHandler(nil, nil), log)
	}
	cm := newCGIMetrics()
	ctx, cancel := context.WithCancel(ctx)
	panels := append(requestPanels(),
		Panel{ID: "cgi", Title: "Processes started per second", Unit: "processes/s", Series: []Series{
			{"started", func(s *Sample) float64 { return s.Rate("flickrkillr_cgi_processes_started_total", nil) }},
		}},
		Panel{ID: "cgicpu", Title: "CPU per request: the children", Unit: "ms per request", Note: "start-up included", Series: []Series{
			{"children", func(s *Sample) float64 {
				return 1000 * Per(s.Rate("flickrkillr_cgi_children_cpu_seconds_total", nil), s.Rate("http_requests_total", nil))
			}},
		}},
	)
	for _, p := range corePanels() {
		if p.ID == "sql" || p.ID == "parts" {
			panels = append(panels, p)
		}
	}
	panels = append(panels, processPanels()...)
	info := dashboardInfo{Stage: s.Number, Name: s.Name, Summary: s.Summary, PID: os.Getpid(), Note: cgiNote,
		Schema: "migration " + itoa(int(s.Schema)) + " (checked at start)"}
	dash := newDashboard(info, cm.Metrics, panels)
	go dash.run(ctx)
	stop := serveAdmin(ctx, cfg.AdminAddr, adminHandler(cm.Metrics, dash), log)
	return cm.wrap(h), func() { stop(); cancel() }
}
