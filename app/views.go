package app

import (
	"context"
	"html/template"
	"net/http"

	"github.com/labstack/echo/v4"

	"flickrkillr/models"
)

// A View is a part of a page that is the same for every viewer, rendered from
// the page's data: the facts the rest of the page needs and HTML. What
// differs per viewer (the header, the flash, the favorite star, the comment
// form) is rendered live around it.
type View struct {
	Title   string
	OwnerID int64           // photo pages: who may delete the photo
	Owner   string          // photo pages: whose other photos "more from" shows
	Deps    []string        // everything the whole page shows, when it is more than the view's own deps
	HTML    []template.HTML // the page template's "content" places the parts
}

// ViewCache gives the view named key, which shows deps (models.DepPhoto …),
// rendering it with render when it has no current copy. Stages 0-2 render on
// every request (renderViews); stage 3 keeps views in Redis.
type ViewCache interface {
	View(ctx context.Context, key string, deps []string, render func(context.Context) (View, error)) (View, error)
}

// renderViews keeps nothing: every request renders its views.
type renderViews struct{}

func (renderViews) View(ctx context.Context, _ string, _ []string, render func(context.Context) (View, error)) (View, error) {
	return render(ctx)
}

// viewSpec names a page's view: its key, what it shows and how to render it.
type viewSpec struct {
	key    string
	deps   []string
	render func(context.Context) (View, error)
}

// viewPage is the page data of a page built from views: the shared view (all
// parts, in order) and the viewer's live parts.
type viewPage struct {
	View View
	Live any
}

// renderView answers page from its view and the viewer's live parts (live
// may look at the view's facts). more, if set, gives the page's further
// views, which depend on the first one's facts (a photo's owner). An
// anonymous viewer with no flash sees what every such viewer sees, so the
// whole page is kept as a view of its own: a repeated anonymous page
// executes no template.
func (a *App) renderView(c echo.Context, status int, page string, spec viewSpec, more func(context.Context, View) ([]View, error), live func(View) (any, error)) error {
	ctx := c.Request().Context()
	flash := a.popFlash(c)
	u, loggedIn := currentUser(c)
	v, err := a.views.View(ctx, spec.key, spec.deps, spec.render)
	if err != nil {
		return err
	}
	all := func(ctx context.Context) (View, error) {
		if more == nil {
			return v, nil
		}
		rest, err := more(ctx, v)
		if err != nil {
			return View{}, err
		}
		w := v
		w.HTML = append([]template.HTML(nil), v.HTML...)
		for _, r := range rest {
			w.HTML = append(w.HTML, r.HTML...)
		}
		return w, nil
	}
	if !loggedIn && flash == "" && status == http.StatusOK {
		deps := spec.deps
		if v.Deps != nil {
			deps = v.Deps
		}
		whole, err := a.views.View(ctx, "anon:"+spec.key, deps, func(ctx context.Context) (View, error) {
			w, err := all(ctx)
			if err != nil {
				return View{}, err
			}
			html, err := a.renderLayout(ctx, page, w, nil, "", live)
			return View{HTML: []template.HTML{template.HTML(html)}}, err
		})
		if err != nil {
			return err
		}
		return c.HTMLBlob(status, []byte(whole.HTML[0]))
	}
	w, err := all(ctx)
	if err != nil {
		return err
	}
	var user *models.PublicUser
	if loggedIn {
		user = &u
	}
	html, err := a.renderLayout(ctx, page, w, user, flash, live)
	if err != nil {
		return err
	}
	return c.HTMLBlob(status, html)
}
