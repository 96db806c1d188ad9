package app

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

func (a *App) home(c echo.Context) error {
	page, err := a.gallery.Home(c.Request().Context())
	if err != nil {
		return err
	}
	return a.render(c, http.StatusOK, "home", "Recent photos", page)
}
