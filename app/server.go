package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"
)

// newServer is our own http.Server: timeouts on every phase, so that a slow
// or stuck client cannot hold a connection (or a CGI process) forever.
func newServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second, // uploads of up to maxUploadBody
		WriteTimeout:      60 * time.Second, // the index-less stages can be slow
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes, // 431 above it
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// runServer listens, prints where, and on ctx's end shuts down gracefully:
// /readyz turns 503 for drainDelay while requests are still served, then
// in-flight requests get up to 10 seconds to finish.
func runServer(ctx context.Context, srv *http.Server, log *slog.Logger, stage Stage, drainDelay time.Duration) error {
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return fmt.Errorf("app: listen on %s: %w", srv.Addr, err)
	}
	log.Info("FlickrKillr is serving", "url", "http://"+ln.Addr().String(), "stage", fmt.Sprintf("%d (%s)", stage.Number, stage.Name), "indexes", stage.Indexes)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	if d, ok := srv.Handler.(interface{ Drain() }); ok {
		d.Drain()
		if drainDelay > 0 {
			log.Info("draining: /readyz answers 503", "for", drainDelay)
			time.Sleep(drainDelay)
		}
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("app: shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ServeInstance runs one app instance of a topology that cfg.Stage's Serve
// supervises (stage 7 runs N behind nginx, as `flickrkillr instance`): the
// server of the highest stage below it (stage 1's long-running server, or a
// later one's), with every part of cfg.Stage.
func ServeInstance(ctx context.Context, cfg Config, log *slog.Logger) error {
	if name := os.Getenv("INSTANCE"); name != "" {
		log = log.With("instance", name)
	}
	var serve func(context.Context, Config, *slog.Logger) error
	for _, s := range Stages() {
		if s.Number < cfg.Stage && s.Serve != nil && !s.Topology { // stage 8's instance is no supervisor either
			serve = s.Serve
		}
	}
	if serve == nil {
		return &ConfigError{"STAGE", fmt.Sprintf("stage %d has no server below it to run as an instance", cfg.Stage)}
	}
	return serve(ctx, cfg, log)
}
