package app

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unsafe"

	"github.com/alexedwards/scs/v2"
	"github.com/labstack/echo/v4"

	"flickrkillr/models"
)

// Session keys. The user's name rides along with the id so that a page for a
// logged-in user needs no users query.
const (
	sessUserID   = "user_id"
	sessUserName = "user_name"
	sessFlash    = "flash"
	sessBorn     = "born" // Unix seconds of the log-in: the absolute lifetime counts from it

	ctxSession = "session_loaded"
	ctxUser    = "user"
)

// loadSession loads the scs session for the request (from whichever store
// the stage chose) and commits it just before the response is written, so
// that error pages and redirects keep the session too.
func (a *App) loadSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		var token string
		if ck, err := req.Cookie(a.sessions.Cookie.Name); err == nil {
			token = ck.Value
		}
		ctx := req.Context()
		if token != "" {
			// Stage 3: the page's cache generations ride with the session's load.
			ctx = a.views.Expect(ctx, req.RequestURI)
		}
		loaded, err := a.sessions.Load(ctx, token)
		if errors.Is(err, errBadSession) {
			// A session this build cannot read (written by another version of
			// the codec, or damaged) is a clean log-out, never an error page:
			// the bad session is deleted, its cookie cleared, and the request
			// goes on as an anonymous visitor's.
			loaded, err = a.endUnreadableSession(c, ctx, token, err)
		}
		ctx = loaded
		if err != nil {
			// The store is down or slow (the Redis breaker answers at once):
			// a quick 503 page, while pages without a session cookie, which
			// never ask the store, still work.
			return unavailable(c, 5, "We cannot reach your session right now. Please try again in a few seconds.",
				fmt.Errorf("app: load session: %w", err))
		}
		if a.sessionRefresh > 0 && token != "" {
			a.refreshSession(ctx)
		}
		c.SetRequest(req.WithContext(ctx))
		c.Set(ctxSession, true)
		if id := a.sessions.GetInt64(ctx, sessUserID); id != 0 {
			c.Set(ctxUser, models.PublicUser{ID: id, Name: a.sessions.GetString(ctx, sessUserName)})
		}
		c.Response().Header().Add("Vary", "Cookie")
		c.Response().Before(func() { a.commitSession(c) })
		return next(c)
	}
}

// endUnreadableSession deletes the session behind token, which could not be
// decoded (cause), clears the browser's cookie and loads a fresh session.
func (a *App) endUnreadableSession(c echo.Context, ctx context.Context, token string, cause error) (context.Context, error) {
	a.log.Info("app: an unreadable session ends in a log-out", "err", cause, "path", c.Request().URL.Path)
	if err := a.sessions.Store.Delete(token); err != nil {
		// The store is down: the same 503 as a failed load.
		return nil, fmt.Errorf("app: delete unreadable session: %w", err)
	}
	c.Response().Header().Add("Set-Cookie", (&http.Cookie{
		Name: a.sessions.Cookie.Name, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: c.IsTLS(), Expires: time.Unix(1, 0), MaxAge: -1,
	}).String())
	return a.sessions.Load(ctx, "")
}

// sessionIdle is how long a session lives unused; sessionLifetime is how long
// it lives at most, however active (scs's Lifetime, which stage 3's refresh
// would otherwise extend forever).
const (
	sessionIdle     = 24 * time.Hour
	sessionLifetime = 7 * 24 * time.Hour
)

// refreshSession moves an unchanged session's expiry forward once it is more
// than a.sessionRefresh old (stage 3): one write per user per refresh period
// instead of one per request, and a GET in between sends no Set-Cookie. It
// never moves it past the session's absolute lifetime, counted from its
// start (sessBorn; a session from before sessBorn existed starts counting now).
func (a *App) refreshSession(ctx context.Context) {
	if a.sessions.Status(ctx) != scs.Unmodified {
		return
	}
	if time.Until(a.sessions.Deadline(ctx)) >= sessionIdle-a.sessionRefresh {
		return
	}
	now := time.Now()
	born := a.sessions.GetInt64(ctx, sessBorn)
	if born == 0 {
		born = now.Unix()
		a.sessions.Put(ctx, sessBorn, born)
	}
	deadline := now.Add(sessionIdle)
	if end := time.Unix(born, 0).Add(sessionLifetime); !end.After(now) {
		// Past its lifetime: the user signs in again.
		a.sessions.Destroy(ctx) //nolint:errcheck // Destroy fails only without a session in ctx
		return
	} else if end.Before(deadline) {
		deadline = end
	}
	if deadline.After(a.sessions.Deadline(ctx)) {
		a.sessions.SetDeadline(ctx, deadline.UTC())
	}
}

// commitSession saves a changed session and sets (or clears) the cookie. It
// runs inside WriteHeader: on a store failure it can still turn the response
// into a 503, so a log-in is never reported as done when it was not saved.
func (a *App) commitSession(c echo.Context) {
	ctx := c.Request().Context()
	res := c.Response()
	cookie := &http.Cookie{
		Name:     a.sessions.Cookie.Name,
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		Secure:   c.IsTLS(),
	}
	switch a.sessions.Status(ctx) {
	case scs.Modified:
		token, expiry, err := a.sessions.Commit(ctx)
		if err != nil {
			a.logFailure(c, "session commit failed", "err", err)
			res.Header().Del(echo.HeaderLocation)
			res.Header().Set("Retry-After", "5")
			res.Status = http.StatusServiceUnavailable
			return
		}
		cookie.Value = token
		cookie.Expires = time.Unix(expiry.Unix()+1, 0)
		cookie.MaxAge = int(time.Until(expiry).Seconds() + 1)
	case scs.Destroyed:
		cookie.Expires = time.Unix(1, 0)
		cookie.MaxAge = -1
	default:
		return
	}
	res.Header().Add("Set-Cookie", cookie.String())
	res.Header().Set("Cache-Control", `no-cache="Set-Cookie"`)
}

// currentUser is the logged-in user, if any.
func currentUser(c echo.Context) (models.PublicUser, bool) {
	u, ok := c.Get(ctxUser).(models.PublicUser)
	return u, ok
}

// startSession logs u in under a new token (no session fixation).
func (a *App) startSession(c echo.Context, u models.User) error {
	ctx := c.Request().Context()
	if err := a.sessions.RenewToken(ctx); err != nil {
		return fmt.Errorf("app: renew session token: %w", err)
	}
	a.sessions.Put(ctx, sessUserID, u.ID)
	a.sessions.Put(ctx, sessUserName, u.Name)
	a.sessions.Put(ctx, sessBorn, time.Now().Unix())
	return nil
}

// endSession destroys the session; a flash put afterwards starts a new one
// under a new token.
func (a *App) endSession(c echo.Context) error {
	if err := a.sessions.Destroy(c.Request().Context()); err != nil {
		return fmt.Errorf("app: destroy session: %w", err)
	}
	c.Set(ctxUser, nil)
	return nil
}

// putFlash leaves a one-time message for the next page.
func (a *App) putFlash(c echo.Context, msg string) {
	if c.Get(ctxSession) == nil {
		return
	}
	a.sessions.Put(c.Request().Context(), sessFlash, msg)
}

// popFlash takes the one-time message, if any.
func (a *App) popFlash(c echo.Context) string {
	if c.Get(ctxSession) == nil {
		return ""
	}
	return a.sessions.PopString(c.Request().Context(), sessFlash)
}

// sessionCodec encodes a session without encoding/gob, which spent more CPU
// decoding the few values of a session on every request than the rest of
// the session's load did. Its format: a marker byte and the format's version,
// the deadline (Unix nanoseconds), then each value as its key, a type byte and
// the value, for the types this app puts in a session (int64, string).
// Anything else, and a session written by scs's GobCodec before, goes through
// gob as before.
//
// The version is what lets builds of different ages share a session store (a
// rolling upgrade, a rollback): a build reads every version it knows, and a
// session of a version it does not know, or bytes it cannot decode, is an
// errBadSession, which loadSession turns into a clean log-out. A new version
// is written only by the build after the one that learned to read it.
type sessionCodec struct{}

// sessionMarker starts an encoded session; sessionVersion follows it. A gob
// stream never starts with 0xF0 (it would announce a 16-byte message length;
// gob's lengths take at most 8), so the two formats cannot be confused.
// Version 1 is 'k', the byte this format has carried since it was made.
const (
	sessionMarker  = 0xF0
	sessionVersion = 'k'
)

func (sessionCodec) Encode(deadline time.Time, values map[string]any) ([]byte, error) {
	n := 2 + binary.MaxVarintLen64 + binary.MaxVarintLen64
	for k, v := range values {
		n += len(k) + 1 + 2*binary.MaxVarintLen64
		switch v := v.(type) {
		case int64:
		case string:
			n += len(v)
		default:
			return scs.GobCodec{}.Encode(deadline, values)
		}
	}
	b := make([]byte, 0, n)
	b = append(b, sessionMarker, sessionVersion)
	b = binary.AppendVarint(b, deadline.UnixNano())
	b = binary.AppendUvarint(b, uint64(len(values)))
	for k, v := range values {
		b = appendString(b, k)
		switch v := v.(type) {
		case int64:
			b = append(b, 'i')
			b = binary.AppendVarint(b, v)
		case string:
			b = append(b, 's')
			b = appendString(b, v)
		}
	}
	return b, nil
}

// errBadSession is a session this build cannot read.
var errBadSession = errors.New("app: unreadable session data")

func (sessionCodec) Decode(b []byte) (time.Time, map[string]any, error) {
	if len(b) == 0 || b[0] != sessionMarker {
		deadline, values, err := scs.GobCodec{}.Decode(b)
		if err != nil {
			return time.Time{}, nil, fmt.Errorf("%w: not this codec's, and gob says: %v", errBadSession, err)
		}
		return deadline, values, nil
	}
	if len(b) < 2 || b[1] != sessionVersion {
		return time.Time{}, nil, fmt.Errorf("%w: a version this build does not know", errBadSession)
	}
	r := byteReader{b: b[2:]}
	ns, k := binary.Varint(r.b)
	if k <= 0 {
		return time.Time{}, nil, errBadSession
	}
	r.b = r.b[k:]
	count := r.uvarint()
	if r.bad || count > uint64(len(r.b)) {
		return time.Time{}, nil, errBadSession
	}
	values := make(map[string]any, count)
	for range count {
		key := r.string()
		if r.bad || len(r.b) == 0 {
			return time.Time{}, nil, errBadSession
		}
		typ := r.b[0]
		r.b = r.b[1:]
		switch typ {
		case 'i':
			v, k := binary.Varint(r.b)
			if k <= 0 {
				return time.Time{}, nil, errBadSession
			}
			r.b = r.b[k:]
			values[key] = v
		case 's':
			values[key] = r.string()
		default:
			return time.Time{}, nil, errBadSession
		}
	}
	if r.bad || len(r.b) != 0 {
		return time.Time{}, nil, errBadSession
	}
	return time.Unix(0, ns).UTC(), values, nil
}

// byteReader reads what appendString and binary.AppendUvarint wrote: the
// sessions' encoding here, stage 3's views (stage3_cache.go) too. It lives in
// this file, which every workshop tag holds, so that both share it.
type byteReader struct {
	b   []byte
	bad bool
}

func (r *byteReader) uvarint() uint64 {
	n, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[k:]
	return n
}

// next returns the next length-prefixed run of bytes, without copying it.
func (r *byteReader) next() []byte {
	n := r.uvarint()
	if r.bad || n > uint64(len(r.b)) {
		r.bad = true
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

// string reads a string, copied out of the bytes read.
func (r *byteReader) string() string { return string(r.next()) }

// borrowedString reads a string without copying it: only for bytes that are
// never written after they are read (stage 3's views: the near cache hands
// the same bytes to every hit, Redis a fresh copy to one), so that a view's
// HTML points into them instead of copying a whole page on every hit.
func (r *byteReader) borrowedString() string {
	s := r.next()
	if len(s) == 0 {
		return ""
	}
	return unsafe.String(&s[0], len(s))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// gobEncode is how scs's default codec wrote sessions (the tests read it back).
func (sessionCodec) gobEncode(deadline time.Time, values map[string]any) ([]byte, error) {
	return scs.GobCodec{}.Encode(deadline, values)
}
