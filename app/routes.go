package app

import (
	"io/fs"
	"net/http"

	"github.com/labstack/echo/v4"

	"flickrkillr/templates"
)

// routes is the table of contents of the app: every route, grouped by
// resource, with its middleware chain.
func (a *App) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	// Trust the TCP peer address only, unless the stage puts a proxy in
	// front whose X-Forwarded-For it trusts (stage 7).
	e.IPExtractor = a.front.IPExtractor
	e.HTTPErrorHandler = a.httpError
	e.Use(a.observe, a.recoverPanics, a.logRequests, a.securityHeaders, a.crossOriginProtection)
	// Limits before any handler (request_limits.go): a small body, read in
	// full before the request takes a turn (the admission line), then a
	// deadline, clean parameters.
	e.Use(a.readBody, a.admit, a.requestDeadline, a.cleanParams)

	// Every page answers HEAD as it answers GET (net/http sends no body), as
	// monitors and `curl -I` expect.
	get := func(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) {
		e.Match([]string{http.MethodGet, http.MethodHead}, path, h, m...)
	}

	// public pages load the session; authed ones also require a logged-in user.
	public := []echo.MiddlewareFunc{a.loadSession, a.requests}
	authed := []echo.MiddlewareFunc{a.loadSession, a.requests, a.requireLogin}

	// Operations and assets: no session.
	get("/healthz", a.healthz)
	get("/readyz", a.readyz)
	static, _ := fs.Sub(templates.Static, "static")
	get("/static/*", staticFiles(static))

	// The pages a front cache may keep (stage 8): filled for visitors without a session.
	front := func(canonical func(echo.Context) bool) []echo.MiddlewareFunc {
		return append([]echo.MiddlewareFunc{a.fillFront(canonical)}, public...)
	}

	// Home.
	get("/", a.home, front(noQuery)...)

	// Photos.
	get("/photos/:id", a.photoShow, front(canonicalPhoto)...)
	get("/photos/:id/image", a.photoImage)
	get("/photos/:id/thumb", a.photoThumb)
	e.POST("/photos/:id/favorite", a.favoritePost, authed...)
	e.POST("/photos/:id/comments", a.commentPost, authed...)
	e.POST("/photos/:id/delete", a.photoDeletePost, authed...)

	// Upload.
	get("/upload", a.uploadNew, authed...)
	e.POST("/upload", a.uploadNewPost, authed...)

	// Users and tags.
	get("/users/:name", a.userShow, front(canonicalCursor)...)
	get("/tags/:tag", a.tagShow, front(canonicalCursor)...)

	// Accounts.
	get("/signup", a.signup, public...)
	e.POST("/signup", a.signupPost, public...)
	get("/login", a.login, public...)
	e.POST("/login", a.loginPost, public...)
	e.POST("/logout", a.logoutPost, authed...)
	return e
}
