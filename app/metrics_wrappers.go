package app

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"flickrkillr/app/obs"
	"flickrkillr/models"
	"flickrkillr/models/timing"
)

// timedSessions wraps the stage's session store: each operation is session
// time in the request's Server-Timing (with the SQL it sent, at stages 0-1)
// and is counted in flickrkillr_session_operations_total.
type timedSessions struct {
	inner scs.CtxStore
	ops   map[string][2]prometheus.Counter // op → ok, error; nil without metrics
}

// timeSessions wraps store; a store without context methods is left as it is.
func (a *App) timeSessions(store scs.Store) scs.Store {
	inner, ok := store.(scs.CtxStore)
	if !ok || a.cfg.NoMetrics {
		return store
	}
	ts := &timedSessions{inner: inner}
	if a.metrics != nil {
		ts.ops = map[string][2]prometheus.Counter{}
		for _, op := range []string{"find", "commit", "delete"} {
			ts.ops[op] = [2]prometheus.Counter{
				a.metrics.SessionOps(op, "ok"),
				a.metrics.SessionOps(op, "error"),
			}
		}
	}
	return ts
}

func (s *timedSessions) done(op string, stop func(), err error) {
	stop()
	if s.ops == nil {
		return
	}
	if err != nil {
		s.ops[op][1].Inc()
	} else {
		s.ops[op][0].Inc()
	}
}

func (s *timedSessions) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	ctx, stop := timing.Time(ctx, timing.Session)
	b, found, err := s.inner.FindCtx(ctx, token)
	s.done("find", stop, err)
	return b, found, err
}

func (s *timedSessions) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	ctx, stop := timing.Time(ctx, timing.Session)
	err := s.inner.CommitCtx(ctx, token, b, expiry)
	s.done("commit", stop, err)
	return err
}

func (s *timedSessions) DeleteCtx(ctx context.Context, token string) error {
	ctx, stop := timing.Time(ctx, timing.Session)
	err := s.inner.DeleteCtx(ctx, token)
	s.done("delete", stop, err)
	return err
}

// The context-free methods are what scs.Store requires; scs calls the Ctx ones.
func (s *timedSessions) Find(token string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), token)
}
func (s *timedSessions) Commit(token string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), token, b, expiry)
}
func (s *timedSessions) Delete(token string) error { return s.DeleteCtx(context.Background(), token) }

// Image reads are counted by where their bytes came from: the outer wrapper
// (countedImages) sees every read, the inner one (diskReads, around the disk
// source that a stage may wrap) marks the reads that reached the disk.
type countedImages struct {
	inner          ImageSource
	memory, fromFS prometheus.Counter
}

type diskReads struct{ inner ImageSource }

type diskReadKey struct{}

func (d diskReads) Image(ctx context.Context, key string, v models.Variant) (*ImageBlob, error) {
	if touched, ok := ctx.Value(diskReadKey{}).(*atomic.Bool); ok {
		touched.Store(true)
	}
	return d.inner.Image(ctx, key, v)
}

// countImages wraps the stage's image source (whose innermost source is
// wrapped in diskReads); without metrics it is returned as it is.
func (a *App) countImages(src ImageSource) ImageSource {
	if a.metrics == nil {
		return src
	}
	return countedImages{inner: src,
		memory: a.metrics.ImageReads("memory"),
		fromFS: a.metrics.ImageReads("disk")}
}

func (ci countedImages) Image(ctx context.Context, key string, v models.Variant) (*ImageBlob, error) {
	touched := &atomic.Bool{}
	blob, err := ci.inner.Image(context.WithValue(ctx, diskReadKey{}, touched), key, v)
	if err != nil {
		return nil, err
	}
	if touched.Load() {
		ci.fromFS.Inc()
	} else {
		ci.memory.Inc()
	}
	return blob, nil
}

// observe is the outermost middleware (obs.Middleware): the request's
// Timings, its Server-Timing header and its metrics. With METRICS=0 it does
// nothing, which is how its cost is measured; a CGI child (stage 0) has no
// registry of its own and names its route for the parent instead.
func (a *App) observe(next echo.HandlerFunc) echo.HandlerFunc {
	if a.cfg.NoMetrics {
		return next
	}
	return obs.Middleware(a.metrics, a.cfg.cgiChild)(next)
}

// recoverPanics turns a panic in a handler into a 500 page and a logged stack.
func (a *App) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				err = fmt.Errorf("app: panic: %v\n%s", p, debug.Stack())
			}
		}()
		return next(c)
	}
}

// logRequests logs every request at debug level (off by default: under load
// a line per request would cost more than the request).
func (a *App) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		a.logRequest(c, start, err)
		return err
	}
}

// logRequest is logRequests' line, in a frame of its own: its arguments
// would otherwise sit in the middleware's frame, under every handler
// (docs/concurrency.md, C10K: the stack an idle connection keeps).
//
//go:noinline
func (a *App) logRequest(c echo.Context, start time.Time, err error) {
	if !a.log.Enabled(c.Request().Context(), -4) {
		return
	}
	a.log.Debug("request", "method", c.Request().Method, "path", c.Request().URL.Path,
		"status", c.Response().Status, "took", time.Since(start), "err", err)
}

// securityHeaders sets the headers every response carries. The pages use no
// scripts and no third-party assets, so the policy can be strict.
func (a *App) securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'")
		return next(c)
	}
}

// crossOriginProtection refuses cross-site state changes (CSRF) using the
// browser's Sec-Fetch-Site / Origin headers (net/http.CrossOriginProtection):
// no tokens in forms, and GET never changes state.
func (a *App) crossOriginProtection(next echo.HandlerFunc) echo.HandlerFunc {
	cop := http.NewCrossOriginProtection()
	return func(c echo.Context) error {
		if err := cop.Check(c.Request()); err != nil {
			return echo.NewHTTPError(http.StatusForbidden, "This form was sent from another site, so it was refused.")
		}
		return next(c)
	}
}

// requireLogin sends anonymous visitors to the log-in page.
func (a *App) requireLogin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, ok := currentUser(c); !ok {
			if c.Request().Method == http.MethodGet {
				a.putFlash(c, "Please log in first.")
				return c.Redirect(http.StatusSeeOther, "/login")
			}
			return echo.NewHTTPError(http.StatusUnauthorized, "Please log in first.")
		}
		return next(c)
	}
}
