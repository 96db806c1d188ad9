package app

import (
	"context"
	"errors"
	"mime"
	"net"
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
	admission  *guard.Gate         // requests worked on at once, and the line before them
	signIns    *guard.Gate         // sign-ins and sign-ups worked on at once: their own budget
	bodies     *semaphore.Weighted // bytes of form bodies being read (readBody)
	bodyWait   time.Duration       // how long a form body may take to arrive
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

// Sign-ins and sign-ups have a budget of their own, apart from the pages':
// half the cores' worth at once (bcrypt is pure CPU, so one at a time per
// two cores takes half the CPU at most), a short line, and a quick 503
// with Retry-After for the rest (shedSignIn). A log-in storm is shed on
// its own routes while the pages keep the other half of the machine: with
// bcrypt on every core (the gate alone, 2 at a time on 2 cores), the pages
// got what was left (docs/reliability.md, issue 36).
const (
	signInLine = 8
	signInWait = time.Second
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

// Form bodies are read before admission (readBody): each within bodyWait
// (64 KiB at a modem's 5 KB/s takes 13 s), all of them together within
// bodyBudget bytes, a thousand of the largest forms at once.
const (
	bodyWait   = 15 * time.Second
	bodyBudget = 64 << 20
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
		signIns:    guard.NewGate(max(1, runtime.GOMAXPROCS(0)/2), signInLine, signInWait),
		bodies:     semaphore.NewWeighted(bodyBudget),
		bodyWait:   bodyWait,
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

// readBody reads the form of a request before it takes its turn
// (admission), so that the turns count requests being served, never bodies
// being trickled in: sixteen connections sending a comment at a byte a
// second held every turn of a 2-core server until their bodies were in
// (issue 31). Here a slow body costs its own connection and goroutine, for
// at most bodyWait (then a 408), and a bounded share of memory: the
// bodies read at once hold at most bodyBudget bytes, past which a form is
// a quick 503.
//
// It reads at most maxFormBytes of any body but the upload's (whose body
// the handler streams, after the log-in check, bounded by the decode
// budget), and refuses multipart there: otherwise Request.FormValue would
// parse up to 32 MiB and spill files to temporary files for a log-in form.
// The form is parsed here, so that a body over the cap is a 413 and never
// half a form. A state-changing form that needs a log-in (every POST but
// the sign-in forms) and carries no session cookie is refused before a
// byte of its body is read: an anonymous client cannot make the server
// wait for one.
func (a *App) readBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		// A request without a body (every GET) passes through this small
		// frame: the form's work is in a frame of its own, not on the stack
		// under every handler (docs/concurrency.md, C10K: the stack an idle
		// connection keeps).
		if req := c.Request(); req.Method != http.MethodPost && (req.Body == nil || req.Body == http.NoBody) {
			return next(c)
		}
		return a.readForm(c, next)
	}
}

// readForm is readBody for a request that may carry a body.
func (a *App) readForm(c echo.Context, next echo.HandlerFunc) error {
	req := c.Request()
	if req.Method == http.MethodPost && !isSignIn(req) && !a.hasSessionCookie(req) {
		dropBody(c)
		return echo.NewHTTPError(http.StatusUnauthorized, "Please log in first.")
	}
	if isUpload(req) || req.Body == nil || req.Body == http.NoBody {
		return next(c)
	}
	if mt, _, _ := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType)); strings.HasPrefix(mt, "multipart/") {
		return echo.NewHTTPError(http.StatusUnsupportedMediaType, "This form does not take file uploads.")
	}
	if req.ContentLength > maxFormBytes {
		dropBody(c)
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge, "That form is too large.")
	}
	req.Body = http.MaxBytesReader(c.Response(), req.Body, maxFormBytes)
	if req.Method != http.MethodPost {
		return next(c)
	}
	size := int64(maxFormBytes) // a chunked body may be up to the cap
	if req.ContentLength >= 0 {
		size = req.ContentLength
	}
	if !a.lim.bodies.TryAcquire(size) {
		return unavailable(c, 1, "The site has more visitors than it can serve right now. Please try again in a few seconds.", nil)
	}
	defer a.lim.bodies.Release(size)
	// A read deadline for the body alone; the connection's next request
	// gets the server's own again. A writer that cannot set one (a
	// test recorder, CGI) reads without.
	rc := http.NewResponseController(c.Response())
	if rc.SetReadDeadline(time.Now().Add(a.lim.bodyWait)) == nil {
		defer rc.SetReadDeadline(time.Time{})
	}
	if err := req.ParseForm(); err != nil {
		var ne net.Error
		switch {
		case isTooLarge(err):
			return echo.NewHTTPError(http.StatusRequestEntityTooLarge, "That form is too large.")
		case errors.As(err, &ne) && ne.Timeout():
			dropBody(c)
			return echo.NewHTTPError(http.StatusRequestTimeout, "The form took too long to arrive; please try again.")
		}
		return echo.NewHTTPError(http.StatusBadRequest, "The form could not be read; please try again.")
	}
	return next(c)
}

// dropBody makes the answer to a request whose body is not wanted the
// connection's last, and reads none of that body: net/http would otherwise
// read what is left of it (up to 256 KiB) before answering, or after, to
// reuse the connection, as slowly as the client sends it.
func dropBody(c echo.Context) {
	if c.Request().ContentLength == 0 {
		return
	}
	c.Response().Header().Set(echo.HeaderConnection, "close")
	_ = http.NewResponseController(c.Response()).SetReadDeadline(time.Now())
}

// hasSessionCookie says whether the request carries a session cookie at all
// (not whether the session is valid: requireLogin decides that, after its
// turn).
func (a *App) hasSessionCookie(r *http.Request) bool {
	ck, err := r.Cookie(a.sessions.Cookie.Name)
	return err == nil && ck.Value != ""
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
// starts. Its body is already read (readBody): a turn is a request being
// served. Sign-ins and sign-ups take a turn of their own budget
// (lim.signIns), never the pages': in the pages' line, log-ins waiting for
// bcrypt held the pages' turns (87 req/s instead of thousands); refused, they
// are shed (503, Retry-After, X-Shed). Not in any line: the health checks
// (a load balancer must hear at once), the stylesheet, and uploads, whose
// bodies may take half a minute to arrive and whose work the decode budget
// bounds. A page refused past the line (or after admitWait) is a 503: an
// error, never shed.
func (a *App) admit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		p := req.URL.Path
		if p == "/healthz" || p == "/readyz" || strings.HasPrefix(p, "/static/") || isUpload(req) {
			return next(c)
		}
		return a.admitInLine(c, next)
	}
}

// admitInLine is admit for a request that takes a turn; in a frame of its
// own, as readForm is.
func (a *App) admitInLine(c echo.Context, next echo.HandlerFunc) error {
	req := c.Request()
	gate := a.lim.admission
	if isSignIn(req) {
		gate = a.lim.signIns
	}
	release, ok := gate.Enter(req.Context())
	switch {
	case !ok && req.Context().Err() != nil:
		return req.Context().Err() // the client went away while in line
	case !ok && gate == a.lim.signIns:
		return shedSignIn(c)
	case !ok:
		return unavailable(c, 5, "The site has more visitors than it can serve right now. Please try again in a few seconds.", nil)
	}
	defer release()
	return next(c)
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
