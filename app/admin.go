package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"flickrkillr/migrations"
)

// The operator listener (ADMIN_ADDR, default 127.0.0.1:6060) serves
// /dashboard, /metrics and /debug/pprof/. It is a listener of its own, never
// routes of the public app: a profile costs the server CPU and shows its
// internals, metrics name its routes and load, and none of it is for the
// visitors of the site. On loopback it is reachable from the machine itself
// (or through `ssh -L 6060:127.0.0.1:6060 host`).

// adminHandler serves the operator endpoints; with metrics off (METRICS=0)
// only the profiler.
func adminHandler(m *Metrics, dash *dashboard) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	if m != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	}
	if dash != nil {
		h := dash.handler()
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

// serveAdmin runs the operator listener at addr until ctx ends. A listener
// that cannot start (the port is taken, say by another server on this
// machine) is logged and the app serves without it: the site matters more.
func serveAdmin(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (stop func()) {
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

// adminInfo is the dashboard's header for stage s on the schema the database has.
func (a *App) adminInfo(ctx context.Context) dashboardInfo {
	info := dashboardInfo{Stage: a.stage.Number, Name: a.stage.Name, Summary: a.stage.Summary, PID: os.Getpid(),
		Schema: fmt.Sprintf("migration %d expected", a.stage.Schema)}
	if sqlDB, err := a.db.DB(); err == nil {
		if v, err := migrations.Version(ctx, sqlDB); err == nil {
			info.Schema = fmt.Sprintf("migration %d of %d", v, migrations.Latest())
		}
	}
	return info
}

// newDashboard makes the App's dashboard (nil with metrics off): the core
// panels, then those the stages registered.
func (a *App) newDashboard(ctx context.Context) *dashboard {
	if a.metrics == nil {
		return nil
	}
	panels := append(corePanels(), panelsFor(a.stage.Number, a.metrics)...)
	return newDashboard(a.adminInfo(ctx), a.metrics, panels)
}

// startAdmin starts the operator listener of a long-running App at
// cfg.AdminAddr, with its dashboard sampling, until stop is called.
func (a *App) startAdmin(ctx context.Context) (stop func()) {
	if a.cfg.AdminAddr == "" {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	dash := a.newDashboard(ctx)
	if dash != nil {
		go dash.run(ctx)
	}
	stopListener := serveAdmin(ctx, a.cfg.AdminAddr, adminHandler(a.metrics, dash), a.log)
	return func() { stopListener(); cancel() }
}
