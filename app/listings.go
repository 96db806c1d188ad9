package app

import (
	"context"
	"html/template"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"flickrkillr/models"
)

// The home page, a user's page and a tag's page are grids of photos. The
// home page is the newest photos; a user's and a tag's page are one kind of
// page, a listing: a grid with a keyset cursor, kept as one view.

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

func (a *App) userShow(c echo.Context) error {
	name := c.Param("name")
	return listingShow(a, c, "user", name, models.DepUser(name),
		func(ctx context.Context, before int64) (models.UserPage, error) {
			return a.gallery.UserPhotos(ctx, name, before)
		},
		func(p models.UserPage) string { return p.User.DisplayName })
}

func (a *App) tagShow(c echo.Context) error {
	tag := c.Param("tag")
	return listingShow(a, c, "tag", tag, models.DepTag(tag),
		func(ctx context.Context, before int64) (models.TagPage, error) {
			return a.gallery.TagPhotos(ctx, tag, before)
		},
		func(p models.TagPage) string { return "#" + p.Tag.Name })
}

// listingShow renders the listing of kind ("user", "tag": its template and
// its "-view" part) for value, one page of it from ?before=: the view is
// kept under kind:value:before and depends on dep.
func listingShow[P any](a *App, c echo.Context, kind, value, dep string, load func(ctx context.Context, before int64) (P, error), title func(P) string) error {
	before, err := cursorParam(c)
	if err != nil {
		return err
	}
	return a.renderView(c, http.StatusOK, kind, viewSpec{key: kind + ":" + value + ":" + strconv.FormatInt(before, 10), deps: []string{dep},
		render: func(ctx context.Context) (View, error) {
			page, err := load(ctx, before)
			if err != nil {
				return View{}, err
			}
			html, err := a.renderPart(ctx, kind, kind+"-view", page)
			return View{Title: title(page), HTML: []template.HTML{html}}, err
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
