// Package obs is the operator's view of a process: its Prometheus
// metrics and the middleware that fills them, the Server-Timing header, the
// process's own costs (/healthz?data=1), and the operator listener with its
// live dashboard (/dashboard, /metrics, /debug/pprof/). It knows nothing of
// the app: package app gives it the route's name, the panels to draw and
// the header to show.
package obs

import (
	"database/sql"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"flickrkillr/models/timing"
)

// Metrics is the process's one Prometheus registry and the instruments the
// app updates. /metrics exports it and the dashboard's sampler reads it, so
// both show the same numbers.
type Metrics struct {
	reg *prometheus.Registry

	requests   *prometheus.CounterVec   // route, method, code
	duration   *prometheus.HistogramVec // route
	parts      *prometheus.CounterVec   // route, part: seconds spent in db, cache, session, render
	inFlight   prometheus.Gauge
	sql        prometheus.Counter
	sqlPerReq  prometheus.Histogram
	sessionOps *prometheus.CounterVec // op, result
	cache      *prometheus.CounterVec // result
	images     *prometheus.CounterVec // source
}

// durationBuckets go from 0.25 ms (a cache hit) to 10 s (a table scan under load).
var durationBuckets = []float64{.00025, .0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10}

// NewMetrics makes the registry with the Go runtime and process collectors,
// the database pool's statistics when db is not nil, and the app's own
// instruments.
func NewMetrics(db *sql.DB) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests answered, by echo route (the pattern, not the URL), method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Time from the request reaching the app to the handler's return, by echo route.",
			Buckets: durationBuckets,
		}, []string{"route"}),
		parts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flickrkillr_request_part_seconds_total",
			Help: "Time requests spent in each part (db, cache, session, render), as their Server-Timing says, by route.",
		}, []string{"route", "part"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "http_requests_in_flight",
			Help: "Requests being answered now.",
		}),
		sql: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flickrkillr_sql_statements_total",
			Help: "SQL statements sent to PostgreSQL by requests (session store included).",
		}),
		sqlPerReq: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flickrkillr_sql_statements_per_request",
			Help:    "SQL statements one request sent.",
			Buckets: []float64{0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 50},
		}),
		sessionOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flickrkillr_session_operations_total",
			Help: "Session store operations (find, commit, delete) by result (ok, error).",
		}, []string{"op", "result"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flickrkillr_cache_lookups_total",
			Help: "Stage 3: cache lookups (a hit from the in-process copy or Redis, a miss, or a Redis error) by result: hit, miss, error.",
		}, []string{"result"}),
		images: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flickrkillr_image_reads_total",
			Help: "Image files sent, by where their bytes came from: memory (stage 3) or disk.",
		}, []string{"source"}),
	}
	reg.MustRegister(m.requests, m.duration, m.parts, m.inFlight, m.sql, m.sqlPerReq, m.sessionOps, m.cache, m.images)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if db != nil {
		reg.MustRegister(collectors.NewDBStatsCollector(db, "flickrkillr"))
	}
	// Zero series exist from the start, so the dashboard's ratios and a
	// scrape before the first request see every name.
	for _, r := range []string{"hit", "miss", "error"} {
		m.cache.WithLabelValues(r)
	}
	for _, s := range []string{"memory", "disk"} {
		m.images.WithLabelValues(s)
	}
	for _, op := range []string{"find", "commit", "delete"} {
		for _, r := range []string{"ok", "error"} {
			m.sessionOps.WithLabelValues(op, r)
		}
	}
	return m
}

// Registry is the registry, for a stage that adds its own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// InFlight is the gauge of requests being answered now.
func (m *Metrics) InFlight() prometheus.Gauge { return m.inFlight }

// SessionOps is the counter of one session store operation (find, commit,
// delete) with one result (ok, error).
func (m *Metrics) SessionOps(op, result string) prometheus.Counter {
	return m.sessionOps.WithLabelValues(op, result)
}

// ImageReads is the counter of image files sent from source (memory, disk).
func (m *Metrics) ImageReads(source string) prometheus.Counter {
	return m.images.WithLabelValues(source)
}

// Observe counts one answered request with what its Timings recorded.
func (m *Metrics) Observe(route, method string, code int, took time.Duration, t *timing.Timings) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(took.Seconds())
	n := t.SQL()
	m.sql.Add(float64(n))
	m.sqlPerReq.Observe(float64(n))
	for _, p := range []timing.Part{timing.DB, timing.Cache, timing.Session, timing.Render} {
		if d := t.Dur(p); d > 0 {
			m.parts.WithLabelValues(route, p.String()).Add(d.Seconds())
		}
	}
	hits, misses, errs := t.Cache()
	if hits > 0 {
		m.cache.WithLabelValues("hit").Add(float64(hits))
	}
	if misses > 0 {
		m.cache.WithLabelValues("miss").Add(float64(misses))
	}
	if errs > 0 {
		m.cache.WithLabelValues("error").Add(float64(errs))
	}
}
