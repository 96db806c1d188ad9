package app

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"flickrkillr/models"
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
func newRenderer() (*renderer, error) {
	base, err := template.New("").Funcs(templateFuncs).ParseFS(templates.Files, "layout.html", "partials/*.html")
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

// render executes a page into a buffer first, so that a template error
// becomes a clean 500 page instead of half a page with a 200 status.
func (a *App) render(c echo.Context, status int, page, title string, data any) error {
	t, ok := a.tmpl.pages[page]
	if !ok {
		return fmt.Errorf("app: no page template %q", page)
	}
	pd := pageData{Title: title, Flash: a.popFlash(c), Stage: a.stage, Page: data}
	if u, ok := currentUser(c); ok {
		pd.User = &u
	}
	var buf bytes.Buffer
	_, rendered := models.Time(c.Request().Context(), models.PartRender) // Server-Timing's render
	err := t.ExecuteTemplate(&buf, "layout", pd)
	rendered()
	if err != nil {
		return fmt.Errorf("app: render %s: %w", page, err)
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// redirect answers a successful POST: 303 See Other, with a flash message.
func (a *App) redirect(c echo.Context, to, flash string) error {
	if flash != "" {
		a.putFlash(c, flash)
	}
	return c.Redirect(http.StatusSeeOther, to)
}
