package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"html/template"
	"net/http"
	"strings"
	"unsafe"

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
	// Expect is called as a request for uri starts, before its session is
	// loaded (stage 3: the generations its page needed last time wait in
	// the context, to ride with the session's load).
	Expect(ctx context.Context, uri string) context.Context
	// Begin starts the page of uri whose first view is key: the context it
	// returns is the one its lookups use (stage 3: in it the cache has read
	// every generation the page is expected to need, in one round trip).
	Begin(ctx context.Context, uri, key string) context.Context
}

// renderViews keeps nothing: every request renders its views.
type renderViews struct{}

func (renderViews) Expect(ctx context.Context, _ string) context.Context   { return ctx }
func (renderViews) Begin(ctx context.Context, _, _ string) context.Context { return ctx }

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

// liveParts looks up a viewer's own parts of a page (nil: an anonymous
// viewer). Its lookups depend on the viewer, not on the page's views, so they
// are independent of them; what needs the views' facts (is the viewer the
// photo's owner?) it does in the function it returns, once the views are there.
type liveParts func(ctx context.Context, viewer *models.PublicUser) (func(View) any, error)

// noLiveParts is the live part of a page whose content is the same for
// every viewer (only the layout's header and flash differ).
func noLiveParts(context.Context, *models.PublicUser) (func(View) any, error) {
	return func(View) any { return nil }, nil
}

// renderView answers page from its view and the viewer's live parts. more,
// if set, gives the page's further views, which depend on the first one's
// facts (a photo's owner). The views and the viewer's lookups are
// independent: a.lookups runs them (one after the other before stage 5, at
// once at stage 5). An anonymous viewer with no flash sees what every such
// viewer sees, so the whole page is kept as a view of its own: a repeated
// anonymous page executes no template.
func (a *App) renderView(c echo.Context, status int, page string, spec viewSpec, more func(context.Context, View) ([]View, error), live liveParts) error {
	flash := a.popFlash(c)
	ctx := a.views.Begin(c.Request().Context(), c.Request().RequestURI, spec.key)
	u, loggedIn := currentUser(c)
	first := func(ctx context.Context) (View, error) {
		return a.views.View(ctx, spec.key, spec.deps, spec.render)
	}
	// withMore is the page's views: the first, and the further ones it needs.
	withMore := func(ctx context.Context, v View) (View, error) {
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
		v, err := first(ctx)
		if err != nil {
			return err
		}
		deps := spec.deps
		if v.Deps != nil {
			deps = v.Deps
		}
		whole, err := a.views.View(ctx, "anon:"+spec.key, deps, func(ctx context.Context) (View, error) {
			w, err := withMore(ctx, v)
			if err != nil {
				return View{}, err
			}
			compose, err := live(ctx, nil)
			if err != nil {
				return View{}, err
			}
			html, err := a.renderLayout(ctx, page, w, nil, "", compose(w))
			return View{HTML: []template.HTML{template.HTML(html)}}, err
		})
		if err != nil {
			return err
		}
		return c.HTMLBlob(status, htmlBytes(whole.HTML[0]))
	}
	var user *models.PublicUser
	if loggedIn {
		user = &u
		if flash == "" && status == http.StatusOK && plainName(u.Name) {
			return a.renderViewerPage(c, ctx, page, spec, first, withMore, live, u)
		}
	}
	var w View
	var compose func(View) any
	err := a.lookups.Run(ctx, func(ctx context.Context) error {
		v, err := first(ctx)
		if err != nil {
			return err
		}
		w, err = withMore(ctx, v)
		return err
	}, func(ctx context.Context) error {
		var err error
		compose, err = live(ctx, user)
		return err
	})
	if err != nil {
		return err
	}
	html, err := a.renderLayout(ctx, page, w, user, flash, compose(w))
	if err != nil {
		return err
	}
	return c.HTMLBlob(status, html)
}

// renderViewerPage answers a logged-in viewer's page (no flash) from a view
// of the whole page that every viewer with the same live parts shares (a
// photo page: whether the star is on, whether they own it): the page is
// rendered once with a mark where the layout puts the viewer's name, kept
// split at the marks, and each viewer's request joins the parts around their
// name. A repeated page then executes no template for a logged-in viewer
// either, and it never holds anyone's name.
func (a *App) renderViewerPage(c echo.Context, ctx context.Context, page string, spec viewSpec,
	first func(context.Context) (View, error), withMore func(context.Context, View) (View, error),
	live liveParts, u models.PublicUser) error {
	var v View
	var compose func(View) any
	err := a.lookups.Run(ctx, func(ctx context.Context) error {
		var err error
		v, err = first(ctx)
		return err
	}, func(ctx context.Context) error {
		var err error
		compose, err = live(ctx, &u)
		return err
	})
	if err != nil {
		return err
	}
	l := compose(v)
	variant, ok := liveVariant(l)
	if !ok { // a live part that is not one of the shared variants: render it all
		w, err := withMore(ctx, v)
		if err != nil {
			return err
		}
		html, err := a.renderLayout(ctx, page, w, &u, "", l)
		if err != nil {
			return err
		}
		return c.HTMLBlob(http.StatusOK, html)
	}
	deps := spec.deps
	if v.Deps != nil {
		deps = v.Deps
	}
	whole, err := a.views.View(ctx, "viewer:"+spec.key+variant, deps, func(ctx context.Context) (View, error) {
		w, err := withMore(ctx, v)
		if err != nil {
			return View{}, err
		}
		html, err := a.renderLayout(ctx, page, w, &models.PublicUser{ID: u.ID, Name: viewerMark}, "", l)
		if err != nil {
			return View{}, err
		}
		parts := strings.Split(string(html), viewerMark)
		out := View{HTML: make([]template.HTML, len(parts))}
		for i, p := range parts {
			out.HTML[i] = template.HTML(p)
		}
		return out, nil
	})
	if err != nil {
		return err
	}
	return c.HTMLBlob(http.StatusOK, joinViewer(whole.HTML, u.Name))
}

// viewerMark stands for the viewer's name in a viewer page's view: letters
// and digits, which the layout's escapers (HTML text, URL path) leave as
// they are, random per process so that no page's content can hold it.
var viewerMark = func() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return "viewer" + hex.EncodeToString(b[:])
}()

// plainName reports whether name is written as it is wherever the layout
// puts it (HTML text and a URL path): true of every valid user name
// ([a-z0-9_]); any other goes the live way.
func plainName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// joinViewer is the viewer's page: the view's parts joined by their name.
func joinViewer(parts []template.HTML, name string) []byte {
	n := len(name) * (len(parts) - 1)
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, name...)
		}
		b = append(b, p...)
	}
	return b
}

// liveVariant names the variant of a page's live parts that a viewer page's
// view is kept for; ok is false for live parts that are not one of a few
// shared variants.
func liveVariant(l any) (string, bool) {
	switch l := l.(type) {
	case nil:
		return "", true
	case interface{ variant() (string, bool) }:
		return l.variant()
	}
	return "", false
}

// htmlBytes is h's bytes for writing, without a copy of the page: the
// response only reads them.
func htmlBytes(h template.HTML) []byte {
	return unsafe.Slice(unsafe.StringData(string(h)), len(h))
}
