package app

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"flickrkillr/templates"
)

// staticFiles answers every request for a file as http.ServeFileFS did
// before it (its own answer to a plain GET or HEAD, ServeContent's to the
// rest): the same status, body and headers.
func TestStaticFilesAnswerAsServeFileFS(t *testing.T) {
	static, err := fs.Sub(templates.Static, "static")
	if err != nil {
		t.Fatal(err)
	}
	h := staticFiles(static)
	e := echo.New()
	names, err := fs.Glob(static, "*")
	if err != nil || len(names) == 0 {
		t.Fatalf("no static files (%v)", err)
	}
	requests := []struct {
		method string
		header map[string]string
	}{
		{http.MethodGet, nil},
		{http.MethodHead, nil},
		{http.MethodGet, map[string]string{"Range": "bytes=0-9"}},
		{http.MethodGet, map[string]string{"Range": "bytes=5-2,999999-"}},
		{http.MethodHead, map[string]string{"Range": "bytes=-4"}},
		{http.MethodGet, map[string]string{"If-None-Match": "*"}},
		{http.MethodGet, map[string]string{"If-Match": `"x"`}},
		{http.MethodGet, map[string]string{"If-Modified-Since": "Mon, 02 Jan 2006 15:04:05 GMT"}},
		{http.MethodGet, map[string]string{"If-Range": `"x"`, "Range": "bytes=0-1"}},
	}
	for _, name := range names {
		for _, rq := range requests {
			t.Run(name+" "+rq.method+" "+headerText(rq.header), func(t *testing.T) {
				newReq := func() *http.Request {
					r := httptest.NewRequest(rq.method, "/static/"+name, nil)
					for k, v := range rq.header {
						r.Header.Set(k, v)
					}
					return r
				}
				want := httptest.NewRecorder()
				r := newReq()
				want.Header().Set("Cache-Control", "public, max-age=3600")
				http.ServeFileFS(want, r, static, name)

				got := httptest.NewRecorder()
				if err := h(e.NewContext(newReq(), got)); err != nil {
					t.Fatal(err)
				}
				if got.Code != want.Code || got.Body.String() != want.Body.String() {
					t.Fatalf("status %d, %d bytes; ServeFileFS: %d, %d bytes", got.Code, got.Body.Len(), want.Code, want.Body.Len())
				}
				for _, k := range []string{"Content-Type", "Content-Length", "Accept-Ranges", "Content-Range", "Cache-Control", "Last-Modified", "Etag"} {
					if g, w := got.Header().Values(k), want.Header().Values(k); strings.Join(g, ",") != strings.Join(w, ",") {
						t.Errorf("%s: %q, ServeFileFS: %q", k, g, w)
					}
				}
			})
		}
	}
}

func headerText(h map[string]string) string {
	var parts []string
	for k, v := range h {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ";")
}
