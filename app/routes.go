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
	// Trust the TCP peer address only: X-Forwarded-For is ignored until a
	// trusted proxy is configured in front (the scale-out stage).
	e.IPExtractor = echo.ExtractIPDirect()
	e.HTTPErrorHandler = a.httpError
	e.Use(a.recoverPanics, a.logRequests, a.securityHeaders, a.crossOriginProtection)

	// public pages load the session; authed ones also require a logged-in user.
	public := []echo.MiddlewareFunc{a.loadSession}
	authed := []echo.MiddlewareFunc{a.loadSession, a.requireLogin}

	// Operations and assets: no session.
	e.GET("/healthz", a.healthz)
	static, _ := fs.Sub(templates.Static, "static")
	e.GET("/static/*", echo.WrapHandler(http.StripPrefix("/static/", staticHandler(static))))

	// Home.
	e.GET("/", a.home, public...)

	// Photos.
	e.GET("/photos/:id", a.photoShow, public...)
	e.GET("/photos/:id/image", a.photoImage)
	e.GET("/photos/:id/thumb", a.photoThumb)
	e.POST("/photos/:id/favorite", a.favoritePost, authed...)
	e.POST("/photos/:id/comments", a.commentPost, authed...)
	e.POST("/photos/:id/delete", a.photoDeletePost, authed...)

	// Upload.
	e.GET("/upload", a.uploadNew, authed...)
	e.POST("/upload", a.uploadNewPost, authed...)

	// Users and tags.
	e.GET("/users/:name", a.userShow, public...)
	e.GET("/tags/:tag", a.tagShow, public...)

	// Accounts.
	e.GET("/signup", a.signup, public...)
	e.POST("/signup", a.signupPost, public...)
	e.GET("/login", a.login, public...)
	e.POST("/login", a.loginPost, public...)
	e.POST("/logout", a.logoutPost, authed...)
	return e
}
