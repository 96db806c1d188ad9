package app

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"flickrkillr/models"
	"flickrkillr/models/timing"
	"flickrkillr/templates"
)

// pageData is what every page template gets: the layout's fields plus the
// page's own typed data in Page.
type pageData struct {
	Title string
	User  *models.PublicUser
	Flash string
	Stage Stage
	Page  any
}

// renderer holds the templates, parsed once at start-up: each page is the
// layout and partials plus that page's file.
type renderer struct {
	pages map[string]*template.Template
	// executed counts template executions: the tests prove with it that a
	// cached page executes none.
	executed atomic.Int64
}

var templateFuncs = template.FuncMap{
	"date": func(t time.Time) string { return t.Format("2 Jan 2006") },
	"plural": func(n int64, one, many string) string {
		if n == 1 {
			return fmt.Sprintf("%d %s", n, one)
		}
		return fmt.Sprintf("%d %s", n, many)
	},
	"int64": func(n int) int64 { return int64(n) },
	// uploadLimit is the photo size limit the upload handler holds files to.
	"uploadLimit": uploadLimit,
	"pager": func(base string, next int64) map[string]any {
		return map[string]any{"Base": base, "Next": next}
	},
	"paragraphs": func(s string) []string {
		var out []string
		for _, p := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n\n") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out
	},
}

// newRenderer parses the embedded templates; a parse error stops the boot.
// imageURL is where pages link a ready photo's files (Front.ImageURL).
func newRenderer(imageURL func(id int64, key string, v models.Variant) string) (*renderer, error) {
	funcs := template.FuncMap{
		// photoSrc is where a photo's image (variant "image" or "thumb")
		// comes from: once it is ready, where the front links it (its route,
		// or at stage 7 the file nginx serves); until then (stage 6, the
		// images are made after the upload) a placeholder, never the
		// unprocessed upload.
		"photoSrc": func(id int64, key, state, variant string) string {
			switch {
			case models.Ready(state) && variant == "thumb":
				return imageURL(id, key, models.Thumbnail)
			case models.Ready(state):
				return imageURL(id, key, models.Original)
			case state == models.PhotoFailed:
				return "/static/photo-failed.svg"
			}
			return "/static/photo-processing.svg"
		},
	}
	base, err := template.New("").Funcs(templateFuncs).Funcs(funcs).ParseFS(templates.Files, "layout.html", "partials/*.html")
	if err != nil {
		return nil, fmt.Errorf("app: parse layout: %w", err)
	}
	names, err := fs.Glob(templates.Files, "pages/*.html")
	if err != nil {
		return nil, fmt.Errorf("app: list pages: %w", err)
	}
	r := &renderer{pages: map[string]*template.Template{}}
	for _, name := range names {
		t, err := base.Clone()
		if err != nil {
			return nil, err
		}
		if _, err := t.ParseFS(templates.Files, name); err != nil {
			return nil, fmt.Errorf("app: parse %s: %w", name, err)
		}
		r.pages[strings.TrimSuffix(path.Base(name), ".html")] = t
	}
	return r, nil
}

// execute runs the template name of page into a buffer, so that a template
// error becomes a clean 500 page instead of half a page with a 200 status.
func (r *renderer) execute(ctx context.Context, page, name string, data any) ([]byte, error) {
	t, ok := r.pages[page]
	if !ok {
		return nil, fmt.Errorf("app: no page template %q", page)
	}
	r.executed.Add(1)
	var buf bytes.Buffer
	_, rendered := timing.Time(ctx, timing.Render) // Server-Timing's render
	err := t.ExecuteTemplate(&buf, name, data)
	rendered()
	if err != nil {
		return nil, fmt.Errorf("app: render %s %s: %w", page, name, err)
	}
	return buf.Bytes(), nil
}

// render renders a whole page live: the layout around the page's content.
func (a *App) render(c echo.Context, status int, page, title string, data any) error {
	pd := pageData{Title: title, Flash: a.popFlash(c), Stage: a.stage, Page: data}
	if u, ok := currentUser(c); ok {
		pd.User = &u
	}
	html, err := a.tmpl.execute(c.Request().Context(), page, "layout", pd)
	if err != nil {
		return err
	}
	return c.HTMLBlob(status, html)
}

// renderLayout renders the layout around a view and the viewer's live parts.
func (a *App) renderLayout(ctx context.Context, page string, v View, user *models.PublicUser, flash string, l any) ([]byte, error) {
	pd := pageData{Title: v.Title, User: user, Flash: flash, Stage: a.stage, Page: viewPage{View: v, Live: l}}
	return a.tmpl.execute(ctx, page, "layout", pd)
}

// renderPart renders one shared part of a view from the page's data.
func (a *App) renderPart(ctx context.Context, page, name string, data any) (template.HTML, error) {
	b, err := a.tmpl.execute(ctx, page, name, data)
	return template.HTML(b), err
}

// redirect answers a successful POST: 303 See Other, with a flash message.
func (a *App) redirect(c echo.Context, to, flash string) error {
	if flash != "" {
		a.putFlash(c, flash)
	}
	return c.Redirect(http.StatusSeeOther, to)
}
