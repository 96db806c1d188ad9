package app

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
)

func (a *App) tagShow(c echo.Context) error {
	before, err := cursorParam(c)
	if err != nil {
		return err
	}
	page, err := a.gallery.TagPhotos(c.Request().Context(), c.Param("tag"), before)
	if err != nil {
		return err
	}
	return a.render(c, http.StatusOK, "tag", "#"+page.Tag.Name, page)
}

// cursorParam reads the keyset cursor ?before=<photo id>; absent means the first page.
func cursorParam(c echo.Context) (int64, error) {
	s := c.QueryParam("before")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, echo.NewHTTPError(http.StatusBadRequest, "The page link is broken (before must be a photo number).")
	}
	return n, nil
}
