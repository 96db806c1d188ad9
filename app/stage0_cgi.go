package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"flickrkillr/app/obs"
	"flickrkillr/models"
)

// Stage 0: CGI. Every request starts a new OS process (this binary, as
// `flickrkillr cgi`), which opens its own database connection and parses the
// templates before it can answer, like a 2007 CGI script. Sessions live in
// the database.
func init() {
	register(Stage{
		Number:   0,
		Name:     "cgi",
		Summary:  "a new process per request: connect, parse templates, answer, exit",
		Schema:   1,
		Serve:    serveCGI,
		Sessions: dbSessions,
	})
}

// serveCGI is the parent: an HTTP server whose only handler execs the child.
func serveCGI(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := checkSchemaOnce(ctx, cfg, log); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("app: find own binary: %w", err)
	}
	h, err := cgiHandler(cfg, log, exe, "cgi")
	if err != nil {
		return err
	}
	s, _ := resolve(cfg.Stage)
	gated, err := cgiSignIns(s, h)
	if err != nil {
		return err
	}
	handler, operator := cgiParent(cfg, log, s, gated) // the operator listener sees the parent only
	defer obs.StartOperator(ctx, operator)()
	return runServer(ctx, newServer(cfg.Addr, handler, log), log, s, cfg.DrainDelay)
}

// cgiHandler runs `exe args…` once per request with the configuration in
// its environment, as a web server ran a CGI script.
func cgiHandler(cfg Config, log *slog.Logger, exe string, args ...string) (*cgi.Handler, error) {
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	return &cgi.Handler{
		Path: exe,
		Args: args,
		Dir:  filepath.Dir(exe),
		Env: []string{
			"DATABASE_URL=" + cfg.DatabaseURL,
			"REDIS_URL=" + cfg.RedisURL,
			"DATA_DIR=" + dataDir,
			fmt.Sprintf("STAGE=%d", cfg.Stage),
			fmt.Sprintf("INDEXES=%t", cfg.Indexes),
			fmt.Sprintf("METRICS=%t", !cfg.NoMetrics), // the child's Server-Timing
		},
		InheritEnv: []string{"GOMAXPROCS"}, // the scale model's app host sizes the children too (model.go)
		Logger:     slog.NewLogLogger(log.Handler(), slog.LevelError),
		Stderr:     os.Stderr,
	}, nil
}

// cgiSignIns gives the parent the sign-in budget a long-running server
// keeps (admitInLine): a child's gates die with it, so each log-in of a
// storm forked a process running bcrypt beside all the others. On the
// scale model's 0.15-CPU app host the 32 log-ins of a load-tool run all
// timed out, retried and kept the host busy until the health check gave
// up (results/model, 7 Dec). Here log-ins and sign-ups wait for a turn of
// the same size, and the rest are shed with the app's own 503 page.
func cgiSignIns(s Stage, h http.Handler) (http.Handler, error) {
	busy, err := frontPage(s, http.StatusServiceUnavailable, busyMessage)
	if err != nil {
		return nil, err
	}
	gate := newLimits().signIns
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isSignIn(r) {
			h.ServeHTTP(w, r)
			return
		}
		release, ok := gate.Enter(r.Context())
		if !ok {
			hd := w.Header()
			hd.Set(shedHeader, "sign-in")
			hd.Set("Retry-After", "1")
			hd.Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
			hd.Set(obs.RouteHeader, r.URL.Path) // the route, for the parent's metrics
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write(busy)
			return
		}
		defer release()
		h.ServeHTTP(w, r)
	}), nil
}

// checkSchemaOnce checks the schema at the parent's start; the children trust it.
func checkSchemaOnce(ctx context.Context, cfg Config, log *slog.Logger) error {
	_, done, err := Bootstrap(ctx, cfg, log, models.Options{MaxOpenConns: 1})
	if err == nil {
		done()
	}
	return err
}

// ServeCGIChild answers the one request of a CGI process: open the database,
// build the App (parsing every template), serve, exit.
func ServeCGIChild(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg.cgiChild = true // no registry of its own: the parent counts
	a, done, err := bootApp(ctx, cfg, log, models.Options{MaxOpenConns: 1, StatementTimeout: requestTimeout}, openDeps)
	if err != nil {
		return err
	}
	defer done()
	// The throttles count in the database: a child's memory dies with it,
	// so an in-memory count never passed one (issue 31: twelve wrong
	// passwords in a row, all 422). Set here, not as the stage's Throttles
	// hook, which every later stage would inherit: a long-running server
	// counts in its own memory again.
	a.lim.names = dbThrottle{models.NewFailureCounts(a.db, "name:", maxNameFailures, failureWindow), log}
	a.lim.addrs = dbThrottle{models.NewFailureCounts(a.db, "addr:", maxAddrFailures, failureWindow), log}
	return cgi.Serve(a)
}

// dbThrottle is the failureThrottle of a CGI child: models.FailureCounts,
// each call bounded by a second. When the database does not answer, a
// key counts as not blocked: the log-in behind it needs the same database
// and fails on its own, and a throttle that refused every client while
// the database is slow would be an outage of its own.
type dbThrottle struct {
	counts *models.FailureCounts
	log    *slog.Logger
}

const dbThrottleTimeout = time.Second

func (t dbThrottle) Blocked(key string) (time.Duration, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), dbThrottleTimeout)
	defer cancel()
	wait, blocked, err := t.counts.Blocked(ctx, key)
	if err != nil {
		t.log.Warn("throttle", "err", err)
	}
	return wait, blocked
}

func (t dbThrottle) Fail(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), dbThrottleTimeout)
	defer cancel()
	if err := t.counts.Fail(ctx, key); err != nil {
		t.log.Warn("throttle", "err", err)
	}
}

func (t dbThrottle) Reset(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), dbThrottleTimeout)
	defer cancel()
	if err := t.counts.Reset(ctx, key); err != nil {
		t.log.Warn("throttle", "err", err)
	}
}

// dbSessions keeps sessions in the sessions table and deletes expired rows
// now and then (Redis expires its own keys; a table does not).
func dbSessions(d *Deps) (scs.Store, error) {
	store := models.NewSessionStore(d.DB)
	ctx, cancel := context.WithCancel(context.Background())
	d.OnClose(func() error { cancel(); return nil })
	go func() {
		t := time.NewTicker(10 * time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := store.DeleteExpired(ctx); err != nil && ctx.Err() == nil {
					d.Log.Warn("sweep expired sessions", "err", err)
				}
			}
		}
	}()
	return store, nil
}

// Stage 0: each request is answered by a child process, and a child's
// metrics die with it. The parent (the HTTP server that starts the children)
// measures what it can see: requests by route (the child names its route in
// a header that the parent removes), how long they took, the SQL statements
// and time parts the child's Server-Timing reports, the processes it started
// and the CPU its children used. The dashboard says so.
const cgiNote = "Stage 0 (CGI): every request is a new process, and its metrics die with it. This is the parent's view: " +
	"requests, latency, processes started, the children's CPU, and the SQL and time parts each child reported in its " +
	"Server-Timing header. The children's connection pools, memory and goroutines are not visible from here."

// cgiMetrics are the parent's: the request instruments, filled from what
// each child's answer says, and the processes it started.
type cgiMetrics struct {
	*obs.Metrics
	started prometheus.Counter
}

func newCGIMetrics() *cgiMetrics {
	m := obs.NewMetrics(nil)
	cm := &cgiMetrics{Metrics: m, started: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "flickrkillr_cgi_processes_started_total",
		Help: "Stage 0: child processes started, one per request.",
	})}
	m.Registry().MustRegister(cm.started, prometheus.NewCounterFunc(prometheus.CounterOpts{
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
		cm.InFlight().Inc()
		cm.started.Inc()
		cw := &cgiWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(cw, r)
		cm.InFlight().Dec()
		route := cw.route
		if route == "" {
			route = "unmatched" // the child failed before routing
		}
		cm.ObserveReported(route, r.Method, cw.code, time.Since(start), cw.timing)
	})
}

// cgiWriter reads the child's route and Server-Timing as the parent writes
// the child's answer.
type cgiWriter struct {
	http.ResponseWriter
	code   int
	route  string
	timing []obs.TimingEntry
}

func (w *cgiWriter) WriteHeader(code int) {
	h := w.Header()
	w.code, w.route = code, h.Get(obs.RouteHeader)
	h.Del(obs.RouteHeader)
	w.timing = obs.ParseServerTiming(h.Get("Server-Timing"))
	w.ResponseWriter.WriteHeader(code)
}

func (w *cgiWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// cgiParent instruments the CGI handler and describes the operator
// listener; with METRICS=0 it serves the profiler only.
func cgiParent(cfg Config, log *slog.Logger, s Stage, h http.Handler) (http.Handler, obs.Operator) {
	o := obs.Operator{Addr: cfg.AdminAddr, Log: log, Pages: modelPages(cfg)}
	if cfg.AdminAddr == "" || cfg.NoMetrics {
		return h, o
	}
	cm := newCGIMetrics()
	panels := append(requestPanels(),
		obs.Panel{ID: "cgi", Title: "Processes started per second", Unit: "processes/s", Series: []obs.Series{
			{Label: "started", Value: func(s *obs.Sample) float64 { return s.Rate("flickrkillr_cgi_processes_started_total", nil) }},
		}},
		obs.Panel{ID: "cgicpu", Title: "CPU per request: the children", Unit: "ms per request", Note: "start-up included", Series: []obs.Series{
			{Label: "children", Value: func(s *obs.Sample) float64 {
				return 1000 * obs.Per(s.Rate("flickrkillr_cgi_children_cpu_seconds_total", nil), s.Rate("http_requests_total", nil))
			}},
		}},
	)
	for _, p := range corePanels() {
		if p.ID == "sql" || p.ID == "parts" {
			panels = append(panels, p)
		}
	}
	o.Metrics, o.Panels = cm.Registry(), append(panels, processPanels()...)
	o.Info = dashboardInfo(s, "migration "+strconv.Itoa(int(s.Schema))+" (checked at start)", cgiNote)
	return cm.wrap(h), o
}
