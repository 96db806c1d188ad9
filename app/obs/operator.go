package obs

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The operator listener (ADMIN_ADDR, default 127.0.0.1:6060) serves
// /dashboard, /metrics and /debug/pprof/. It is a listener of its own, never
// routes of the public app: a profile costs the server CPU and shows its
// internals, metrics name its routes and load, and none of it is for the
// visitors of the site. On loopback it is reachable from the machine itself
// (or through `ssh -L 6060:127.0.0.1:6060 host`).

// Operator is one operator listener: what it serves and where. The app,
// stage 0's CGI parent and stage 7's supervisor each describe theirs and
// start it with StartOperator.
type Operator struct {
	Addr string // host:port; empty: no listener
	Log  *slog.Logger
	// Metrics is what /metrics exports and the dashboard samples; nil (metrics
	// off, METRICS=0) serves the profiler only.
	Metrics prometheus.Gatherer
	// Info and Panels make the dashboard; without panels there is none.
	Info   Info
	Panels []Panel
	// Pages are further routes of the listener ("GET /topology": stage 7).
	Pages map[string]http.Handler
}

// StartOperator serves o at o.Addr, its dashboard sampling, until stop is
// called (or ctx ends).
func StartOperator(ctx context.Context, o Operator) (stop func()) {
	if o.Addr == "" {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var dash *Dashboard
	if o.Metrics != nil && len(o.Panels) > 0 {
		dash = NewDashboard(o.Info, o.Metrics, o.Panels)
		go dash.Run(ctx)
	}
	stopListener := Serve(ctx, o.Addr, Handler(o.Metrics, dash, o.Pages), o.Log)
	return func() { stopListener(); cancel() }
}

// Handler serves the operator endpoints: the profiler always, /metrics from
// g and the dashboard when they are there, and pages.
func Handler(g prometheus.Gatherer, dash *Dashboard, pages map[string]http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	if g != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	for pattern, h := range pages {
		mux.Handle(pattern, h)
	}
	if dash != nil {
		h := dash.Handler()
		mux.Handle("GET /dashboard", h)
		mux.Handle("GET /dashboard/", h)
		mux.Handle("GET /{$}", http.RedirectHandler("/dashboard", http.StatusFound))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// Scripts from this listener only: no inline script, no CDN.
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'")
		mux.ServeHTTP(w, r)
	})
}

// Serve runs the operator listener at addr until ctx ends. A listener
// that cannot start (the port is taken, say by another server on this
// machine) is logged and the app serves without it: the site matters more.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (stop func()) {
	if addr == "" {
		return func() {}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("the operator listener did not start; serving without /dashboard, /metrics and /debug/pprof/", "addr", addr, "err", err)
		return func() {}
	}
	if host, _, _ := net.SplitHostPort(addr); !net.ParseIP(host).IsLoopback() && host != "localhost" {
		log.Warn("the operator listener is not on loopback: anyone who can reach it can profile the server", "addr", addr)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       120 * time.Second,
		// No write timeout: /debug/pprof/profile?seconds=30 answers after 30 s.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("operator listener", "dashboard", "http://"+ln.Addr().String()+"/dashboard",
		"metrics", "http://"+ln.Addr().String()+"/metrics", "pprof", "http://"+ln.Addr().String()+"/debug/pprof/")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("operator listener", "err", err)
		}
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		<-done
	}
}
