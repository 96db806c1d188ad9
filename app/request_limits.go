package app

import (
	"context"
	"mime"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/sync/semaphore"

	"flickrkillr/app/guard"
)

// Limits every request is held to before a handler sees it. They make a
// hostile or broken request cheap: a small body, no multipart outside the
// upload form, no bytes the database cannot store, and a deadline.
const (
	// maxFormBytes caps the body of every route but POST /upload: the
	// largest form (a comment or a description) is a few KiB.
	maxFormBytes = 64 << 10
	// maxHeaderBytes caps the request line and headers (net/http answers 431 above it).
	maxHeaderBytes = 64 << 10
	// requestTimeout bounds the work of one request (the database, Redis, the
	// decode queue): past it the request answers 503 rather than waiting for a
	// hung dependency. The database's statement_timeout is the same.
	requestTimeout = 5 * time.Second
	// uploadTimeout is the deadline of POST /upload, whose body alone may take
	// ReadTimeout to arrive.
	uploadTimeout = 40 * time.Second
)

// limits is the state the limits keep: the request deadline, whether the
// server is draining, the log-in throttles and the gates in front of bcrypt
// and image decoding.
type limits struct {
	reqTimeout time.Duration
	draining   atomic.Bool
	names      failureThrottle // failed log-ins and sign-ups per account name
	addrs      failureThrottle // the same per client address
	bcrypt     *guard.Gate
	decode     *semaphore.Weighted // bytes of decoded images in memory
	decodeWait time.Duration
	admission  *guard.Gate // requests worked on at once, and the line before them
}

// Admission at the front: at most inFlightPerCore requests per core are
// worked on at once, and the others wait their turn in a line of up to
// admitLine requests, each for up to admitWait, before their deadline
// starts. Past the limit more requests in flight only share the same two
// cores and the same 20 pooled connections, slower, until the 5 s deadline
// fails them inside; waiting in line, they are late but answered (512
// load-tool users on one stage-6 server: docs/reliability.md).
const (
	inFlightPerCore = 8
	minInFlight     = 16
	admitLine       = 4096
	admitWait       = 30 * time.Second
)

// failureThrottle counts failures per key: a guard.Throttle in the
// process's memory, or at stage 7 a guard.SharedThrottle in the Redis every
// instance shares (Stage.Throttles), so that N instances allow what one does.
type failureThrottle interface {
	Blocked(key string) (time.Duration, bool)
	Fail(key string)
	Reset(key string)
}

// Log-in throttling: about ten failures per account in a quarter of an hour,
// twice that per client address (several people may share one address).
const (
	maxNameFailures = 10
	maxAddrFailures = 20
	failureWindow   = 15 * time.Minute
)

// decodeBudget is how many bytes of decoded pixels all uploads together may
// hold; with the scaling buffers and the garbage collector's headroom the
// process stays well under 1 GiB (docs/reliability.md has the figure).
const decodeBudget = 384 << 20

func newLimits() *limits {
	// bcrypt is pure CPU: one per core runs as fast as more would. A few
	// may wait a second; the rest get a 503 at once (the load tool's log-ins
	// retry after Retry-After).
	return &limits{
		reqTimeout: requestTimeout,
		names:      guard.NewThrottle(maxNameFailures, failureWindow),
		addrs:      guard.NewThrottle(maxAddrFailures, failureWindow),
		bcrypt:     guard.NewGate(max(2, runtime.GOMAXPROCS(0)), 8, time.Second),
		decode:     semaphore.NewWeighted(decodeBudget),
		decodeWait: 2 * time.Second,
		admission:  guard.NewGate(max(minInFlight, inFlightPerCore*runtime.GOMAXPROCS(0)), admitLine, admitWait),
	}
}

// isUpload is the one route allowed a large multipart body.
func isUpload(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/upload"
}

// isSignIn is a log-in or sign-up form sent: bcrypt, behind its own gate.
func isSignIn(r *http.Request) bool {
	return r.Method == http.MethodPost && (r.URL.Path == "/login" || r.URL.Path == "/signup")
}

// capBodies reads at most maxFormBytes of any body but the upload's, and
// refuses multipart there: otherwise Request.FormValue would parse up to
// 32 MiB and spill files to temporary files for a log-in form. The form is
// parsed here, so that a body over the cap is a 413 and never half a form.
func (a *App) capBodies(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if isUpload(req) || req.Body == nil || req.Body == http.NoBody {
			return next(c)
		}
		if mt, _, _ := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType)); strings.HasPrefix(mt, "multipart/") {
			return echo.NewHTTPError(http.StatusUnsupportedMediaType, "This form does not take file uploads.")
		}
		req.Body = http.MaxBytesReader(c.Response(), req.Body, maxFormBytes)
		if req.Method == http.MethodPost {
			if err := req.ParseForm(); err != nil {
				if isTooLarge(err) {
					return echo.NewHTTPError(http.StatusRequestEntityTooLarge, "That form is too large.")
				}
				return echo.NewHTTPError(http.StatusBadRequest, "The form could not be read; please try again.")
			}
		}
		return next(c)
	}
}

// cleanParams answers 404 for a route parameter that no user, tag or photo
// can have (invalid UTF-8, NUL, control characters), before it reaches the
// database, which would refuse it with an error.
func (a *App) cleanParams(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		for _, v := range c.ParamValues() {
			if textProblem(v, false) != "" {
				return echo.NewHTTPError(http.StatusNotFound)
			}
		}
		return next(c)
	}
}

// admit makes a request wait its turn (admission) before its deadline
// starts. Not in line: the health checks (a load balancer must hear at
// once), the stylesheet, uploads, whose bodies may take half a minute to
// arrive and whose work the decode budget bounds, and sign-ins, whose
// bcrypt the sign-in gate bounds (in line, log-ins waiting for bcrypt held
// the turns of the pages: 87 req/s instead of thousands). A request refused
// past the line (or after admitWait) is a 503: an error, never shed.
func (a *App) admit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p := c.Request().URL.Path
		if p == "/healthz" || p == "/readyz" || strings.HasPrefix(p, "/static/") || isUpload(c.Request()) || isSignIn(c.Request()) {
			return next(c)
		}
		release, ok := a.lim.admission.Enter(c.Request().Context())
		if !ok {
			if c.Request().Context().Err() != nil {
				return c.Request().Context().Err() // the client went away while in line
			}
			return unavailable(c, 5, "The site has more visitors than it can serve right now. Please try again in a few seconds.", nil)
		}
		defer release()
		return next(c)
	}
}

// requestDeadline gives every request a deadline (longer for uploads): a
// hung PostgreSQL or Redis turns into a 503 page, not a request that waits
// as long as the dependency does.
func (a *App) requestDeadline(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		d := a.lim.reqTimeout
		if isUpload(c.Request()) {
			d = max(d, uploadTimeout)
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), d)
		defer cancel()
		c.SetRequest(c.Request().WithContext(ctx))
		// The error page is written here, before cancel: it commits the
		// session, which needs the context still alive.
		if err := next(c); err != nil {
			c.Error(err)
		}
		return nil
	}
}
