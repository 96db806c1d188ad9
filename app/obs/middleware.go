package obs

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"flickrkillr/models/timing"
)

// routeLabel is echo's route pattern ("/photos/:id"), never the URL, so that
// the number of series stays bounded whatever clients ask for.
func routeLabel(c echo.Context) string {
	if p := c.Path(); p != "" {
		return p
	}
	return "unmatched"
}

// Middleware is the outermost middleware: it gives the request a Timings
// record, sends Server-Timing with the answer, and counts the request in m
// (none when m is nil). With tellRoute (a CGI child, stage 0) the answer
// also names its route in RouteHeader, for the parent to count.
func Middleware(m *Metrics, tellRoute bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		// The work before and after the chain is in frames of their own:
		// this one stays on the stack under every handler, and the deepest
		// point of a request is what its connection's goroutine stack grows
		// to, and keeps while idle (docs/concurrency.md, C10K).
		return func(c echo.Context) error {
			tw := begin(c, tellRoute)
			if m != nil {
				m.inFlight.Inc()
				defer m.inFlight.Dec() // even when a handler aborts with a panic
			}
			// The error handler runs here rather than after the chain, so that
			// the status counted is the one sent.
			if err := next(c); err != nil {
				c.Error(err)
			}
			if m != nil {
				m.finish(c, tw)
			}
			return nil
		}
	}
}

// begin gives the request its Timings and puts the timingWriter in front of
// the response.
//
//go:noinline
func begin(c echo.Context, tellRoute bool) *timingWriter {
	start := time.Now()
	req := c.Request()
	ctx, t := timing.With(req.Context())
	req = req.WithContext(ctx)
	c.SetRequest(req)
	res := c.Response()
	tw := &timingWriter{ResponseWriter: res.Writer, t: t, start: start, req: req}
	if tellRoute {
		tw.route = func() string { return routeLabel(c) }
	}
	res.Writer = tw
	return tw
}

// finish counts the request in m.
//
//go:noinline
func (m *Metrics) finish(c echo.Context, tw *timingWriter) {
	code := c.Response().Status
	if code >= 500 && tw.req.Context().Err() != nil {
		// The client went away (a load test ending): not a server
		// error. 499 is nginx's name for it.
		code = 499
	}
	m.Observe(routeLabel(c), tw.req.Method, code, time.Since(tw.start), tw.t)
}

// timingWriter adds the Server-Timing header when the status is written:
// after echo's Before hooks (the session commit among them), so the
// session's time is in it.
type timingWriter struct {
	http.ResponseWriter
	t     *timing.Timings
	start time.Time
	route func() string // stage 0: tell the CGI parent the route
	wrote bool
	req   *http.Request // as the chain got it: its context ends when the client goes away

}

func (w *timingWriter) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		h := w.Header()
		h.Set("Server-Timing", ServerTiming(w.t, time.Since(w.start)))
		if w.route != nil {
			h.Set(RouteHeader, w.route())
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *timingWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *timingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes a flush through.
func (w *timingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
