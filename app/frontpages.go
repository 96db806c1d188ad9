package app

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

// FrontPages is where a front server finds whole public pages (stage 8:
// memcached, which nginx reads before any instance). The app fills a page it
// rendered for a visitor without a session, and deletes, by URL, the pages a
// write changes directly before the write answers. Earlier stages have none.
type FrontPages interface {
	// Fill stores the page of path and raw query (a no-op for a URL the
	// front never looks up).
	Fill(ctx context.Context, path, query string, page []byte) bool
	// Delete removes the first page of each path; an error is logged, not
	// sent: the page then lives until its TTL.
	Delete(ctx context.Context, paths ...string) error
}

// fillFront is the middleware of the public pages the front server answers
// (home, photo, user, tag): after the handler, a 200 HTML page rendered for a
// request without a session cookie, that sets no cookie, at its canonical
// URL, is handed to the front. A logged-in visitor's page (their name, their
// star) is never stored: it has a cookie.
func (a *App) fillFront(canonical func(c echo.Context) bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		if a.pages == nil {
			return next
		}
		return func(c echo.Context) error {
			req := c.Request()
			if req.Method != http.MethodGet || hasSessionCookie(req, a.sessions.Cookie.Name) {
				return next(c)
			}
			res := c.Response()
			rec := &pageRecorder{ResponseWriter: res.Writer}
			res.Writer = rec
			err := next(c)
			res.Writer = rec.ResponseWriter
			h := res.Header()
			if err == nil && res.Status == http.StatusOK && !rec.overflow && len(h.Values("Set-Cookie")) == 0 &&
				strings.HasPrefix(h.Get(echo.HeaderContentType), "text/html") && canonical(c) {
				// The handler's context: what the request learnt on its way (stage 9: how old its reads were).
				a.pages.Fill(context.WithoutCancel(c.Request().Context()), req.URL.Path, req.URL.RawQuery, rec.buf.Bytes())
			}
			return err
		}
	}
}

// hasSessionCookie: nginx sends every request with this cookie (any value,
// even an expired session's) to the instances, so the app stores nothing for it.
func hasSessionCookie(r *http.Request, name string) bool {
	c, err := r.Cookie(name)
	return err == nil && c.Value != ""
}

// canonicalPhoto: the path as the router's parameters would spell it back
// (a photo id without leading zeros, no query): the only spelling a write
// deletes, so the only one stored. canonicalCursor: a listing's ?before= as
// a plain number.
func canonicalPhoto(c echo.Context) bool {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	return err == nil && strconv.FormatInt(id, 10) == c.Param("id") && c.Request().URL.RawQuery == ""
}

// noQuery: the home page has no pagination; /?before=1 would be a page no
// write deletes.
func noQuery(c echo.Context) bool { return c.Request().URL.RawQuery == "" }

func canonicalCursor(c echo.Context) bool {
	q := c.Request().URL.RawQuery
	if q == "" {
		return true
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(q, "before="), 10, 64)
	return err == nil && "before="+strconv.FormatInt(n, 10) == q
}

// maxFrontPage is the largest page kept (memcached's item limit is 1 MB).
const maxFrontPage = 512 << 10

// pageRecorder tees the page into a buffer on its way to the client.
type pageRecorder struct {
	http.ResponseWriter
	buf      bytes.Buffer
	overflow bool
}

func (r *pageRecorder) Write(b []byte) (int, error) {
	if !r.overflow {
		if r.buf.Len()+len(b) > maxFrontPage {
			r.overflow = true
			r.buf = bytes.Buffer{}
		} else {
			r.buf.Write(b)
		}
	}
	return r.ResponseWriter.Write(b)
}

func (r *pageRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
