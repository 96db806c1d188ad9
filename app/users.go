package app

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

func (a *App) userShow(c echo.Context) error {
	before, err := cursorParam(c)
	if err != nil {
		return err
	}
	page, err := a.gallery.UserPhotos(c.Request().Context(), c.Param("name"), before)
	if err != nil {
		return err
	}
	return a.render(c, http.StatusOK, "user", page.User.DisplayName, page)
}
