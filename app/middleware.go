package app

import (
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/labstack/echo/v4"

	"flickrkillr/app/obs"
)

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
		if a.log.Enabled(c.Request().Context(), -4) {
			a.log.Debug("request", "method", c.Request().Method, "path", c.Request().URL.Path,
				"status", c.Response().Status, "took", time.Since(start), "err", err)
		}
		return err
	}
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
