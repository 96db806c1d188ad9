package app

import (
	"context"
	"html/template"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"flickrkillr/models"
)

func (a *App) userShow(c echo.Context) error {
	before, err := cursorParam(c)
	if err != nil {
		return err
	}
	name := c.Param("name")
	return a.renderView(c, http.StatusOK, "user", viewSpec{key: "user:" + name + ":" + strconv.FormatInt(before, 10), deps: []string{models.DepUser(name)},
		render: func(ctx context.Context) (View, error) {
			page, err := a.gallery.UserPhotos(ctx, name, before)
			if err != nil {
				return View{}, err
			}
			html, err := a.renderPart(ctx, "user", "user-view", page)
			return View{Title: page.User.DisplayName, HTML: []template.HTML{html}}, err
		}}, nil, noLiveParts)
}
