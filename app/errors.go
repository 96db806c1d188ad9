package app

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"flickrkillr/app/guard"
	"flickrkillr/models"
)

type errorPage struct {
	Status  int
	Heading string
	Message string
}

// httpError is the one place errors become responses: not-found errors are
// 404 pages, values the database refused are 400, a dependency that did not
// answer (a deadline, a lost connection, an open breaker) is a 503 with
// Retry-After, echo's HTTP errors keep their code and message, and anything
// else is a 500 page with a generic message and the cause in the log.
func (a *App) httpError(err error, c echo.Context) {
	if c.Response().Committed {
		a.logFailure(c, "error after response started", "err", err)
		return
	}
	p := errorPage{Status: http.StatusInternalServerError, Message: "Something went wrong on our side. Please try again."}
	var he *echo.HTTPError
	switch {
	case errors.Is(err, models.ErrNotFound):
		p.Status, p.Message = http.StatusNotFound, "There is nothing here. The photo or page may have been deleted."
	case errors.Is(err, models.ErrForbidden):
		p.Status, p.Message = http.StatusForbidden, "That is not yours to change."
	case errors.Is(err, errPostgresOpen):
		// The breaker logged once when it opened (health.go); a line per
		// refused request would flood the log while the database hangs.
		p.Status = http.StatusServiceUnavailable
		p.Message = "The database is not answering, so this page cannot be made right now. We stopped waiting for it rather than keep you waiting: please try again in a few seconds."
		c.Response().Header().Set("Retry-After", "5")
	case models.IsDataError(err):
		// A backstop: the forms and cleanParams refuse such bytes first.
		p.Status, p.Message = http.StatusBadRequest, "Part of the request could not be stored (an invalid character or value)."
		a.logFailure(c, "data error reached the database", "err", err)
	case !errors.As(err, &he) && isUnavailable(err):
		p.Status, p.Message = http.StatusServiceUnavailable, "The site is overloaded or a service it needs is not answering. Please try again in a few seconds."
		c.Response().Header().Set("Retry-After", "5")
		a.logFailure(c, "dependency unavailable", "err", err)
	case errors.As(err, &he):
		p.Status = he.Code
		if msg, ok := he.Message.(string); ok && (he.Internal == nil && p.Status < 500 || p.Status == http.StatusServiceUnavailable) {
			p.Message = msg
		}
		switch {
		case c.Response().Header().Get(shedHeader) != "":
			// Shed on purpose (the sign-in gate): under a flood of log-ins a
			// line each would be thousands a second. The metrics count them.
			a.log.Debug("shed", "path", c.Request().URL.Path, "what", c.Response().Header().Get(shedHeader))
		case he.Internal != nil || p.Status >= 500:
			a.logFailure(c, "request failed", "status", p.Status, "err", err)
		}
	default:
		a.logFailure(c, "request failed", "err", err)
	}
	if p.Status == http.StatusNotFound && p.Message == "Not Found" {
		p.Message = "There is nothing here. The photo or page may have been deleted."
	}
	p.Heading = http.StatusText(p.Status)
	// HEAD too: its headers are GET's, and net/http sends no body.
	if rerr := a.render(c, p.Status, "error", p.Heading, p); rerr != nil {
		a.log.Error("render error page", "err", rerr)
		_ = c.String(p.Status, p.Heading)
	}
}

// logFailure logs what went wrong with a request: as an error, or as info
// when the client had already gone (its request's context ended), which is
// no fault of the server's and happens whenever a load test stops.
func (a *App) logFailure(c echo.Context, msg string, args ...any) {
	req := c.Request()
	args = append([]any{"method", req.Method, "path", req.URL.Path}, args...)
	if req.Context().Err() != nil {
		a.log.Info(msg+" (the client went away)", args...)
		return
	}
	a.log.Error(msg, args...)
}

// errUnavailable marks failures that mean "a dependency is down or slow,
// try again shortly": they answer 503 with Retry-After.
var errUnavailable = errors.New("app: temporarily unavailable")

// unavailable is a 503 with a message for the user and Retry-After seconds.
func unavailable(c echo.Context, retryAfter int, msg string, cause error) error {
	c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfter))
	he := echo.NewHTTPError(http.StatusServiceUnavailable, msg)
	if cause != nil {
		he = he.WithInternal(cause)
	}
	return he
}

// isUnavailable reports whether err means a dependency did not answer in
// time (the request deadline, a timeout, a refused connection, an open
// circuit breaker) rather than a bug.
func isUnavailable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errUnavailable) ||
		errors.Is(err, guard.ErrOpen) || models.IsUnavailable(err)
}

// tooLargePage is the 413 page of a body over the upload's cap, rendered
// once at start for a front that refuses such a body before it reaches an
// instance (stage 7's nginx), so that it names the limit as the app does.
func tooLargePage(stage Stage) ([]byte, error) {
	return frontPage(stage, http.StatusRequestEntityTooLarge,
		"The file is larger than "+uploadLimit()+". Please choose a smaller photo.")
}

// frontPage is the app's error page for status with msg, rendered once at
// start for something in front of the app that answers on its behalf (a
// front's 413, stage 0's parent shedding a sign-in).
func frontPage(stage Stage, status int, msg string) ([]byte, error) {
	r, err := newRenderer(photoImagePath)
	if err != nil {
		return nil, err
	}
	p := errorPage{Status: status, Heading: http.StatusText(status), Message: msg}
	return r.execute(context.Background(), "error", "layout", pageData{Title: p.Heading, Stage: stage, Page: p})
}
