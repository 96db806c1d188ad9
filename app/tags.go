package app

import (
	"context"
	"html/template"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"flickrkillr/models"
)

func (a *App) tagShow(c echo.Context) error {
	before, err := cursorParam(c)
	if err != nil {
		return err
	}
	tag := c.Param("tag")
	return a.renderView(c, http.StatusOK, "tag", viewSpec{key: "tag:" + tag + ":" + strconv.FormatInt(before, 10), deps: []string{models.DepTag(tag)},
		render: func(ctx context.Context) (View, error) {
			page, err := a.gallery.TagPhotos(ctx, tag, before)
			if err != nil {
				return View{}, err
			}
			html, err := a.renderPart(ctx, "tag", "tag-view", page)
			return View{Title: "#" + page.Tag.Name, HTML: []template.HTML{html}}, err
		}}, nil, noLiveParts)
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
