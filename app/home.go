package app

import (
	"context"
	"html/template"
	"net/http"

	"github.com/labstack/echo/v4"

	"flickrkillr/models"
)

func (a *App) home(c echo.Context) error {
	return a.renderView(c, http.StatusOK, "home", viewSpec{key: "home", deps: []string{models.DepHome},
		render: func(ctx context.Context) (View, error) {
			page, err := a.gallery.Home(ctx)
			if err != nil {
				return View{}, err
			}
			html, err := a.renderPart(ctx, "home", "home-view", page)
			return View{Title: "Recent photos", HTML: []template.HTML{html}}, err
		}}, nil, noLiveParts)
}
