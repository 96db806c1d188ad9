package app

import (
	"fmt"
	"net/http"
	"time"

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
		ctx, err := a.sessions.Load(req.Context(), token)
		if err != nil {
			// The store is down or slow (the Redis breaker answers at once):
			// a quick 503 page, while pages without a session cookie, which
			// never ask the store, still work.
			return unavailable(c, 5, "We cannot reach your session right now. Please try again in a few seconds.",
				fmt.Errorf("app: load session: %w", err))
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
