package app

import (
	"net/http"
	"net/url"
	"testing"
)

func TestStage3ServesRepeatedReadsWithoutTheDatabase(t *testing.T) {
	ta := newTestApp(t, 3)
	b := ta.browser(t)
	b.signup("oscar")
	photo := b.upload(map[string]string{"title": "Cached", "tags": "c"}, "a.png", testPNG(t, 40, 30)).Header.Get("Location")

	for _, path := range []string{photo, "/", "/users/oscar", "/tags/c", photo + "/thumb"} {
		t.Run(path, func(t *testing.T) {
			mustStatus(t, b.get(path), http.StatusOK) // fills the cache
			before := ta.queries.Load()
			mustStatus(t, b.get(path), http.StatusOK)
			if n := ta.queries.Load() - before; n != 0 {
				t.Fatalf("the second GET %s sent %d SQL statements, want 0", path, n)
			}
		})
	}

	t.Run("a write is visible on the next read", func(t *testing.T) {
		mustStatus(t, b.post(photo+"/comments", url.Values{"body": {"fresh comment"}}), http.StatusSeeOther)
		mustContain(t, b.get(photo), "fresh comment", "1 comment")
		mustStatus(t, b.post(photo+"/favorite", url.Values{"action": {"add"}}), http.StatusSeeOther)
		mustContain(t, b.get(photo), "1 favorite")
		second := b.upload(map[string]string{"title": "Newer", "tags": "c"}, "b.png", testPNG(t, 40, 30)).Header.Get("Location")
		for _, page := range []string{"/", "/users/oscar", "/tags/c", photo} {
			mustContain(t, b.get(page), `href="`+second+`"`)
		}
	})

	t.Run("images carry validators and answer 304", func(t *testing.T) {
		res := b.get(photo + "/image")
		etag := res.Header.Get("ETag")
		if etag == "" || res.Header.Get("Cache-Control") == "" {
			t.Fatalf("no ETag/Cache-Control on a stage 3 image: %v", res.Header)
		}
		req, _ := http.NewRequest(http.MethodGet, ta.srv.URL+photo+"/image", nil)
		req.Header.Set("If-None-Match", etag)
		mustStatus(t, b.do(req), http.StatusNotModified)
	})
}

func TestStagesBefore3SendNoImageValidators(t *testing.T) {
	ta := newTestApp(t, 2)
	b := ta.browser(t)
	b.signup("paul")
	photo := b.upload(map[string]string{"title": "x"}, "a.png", testPNG(t, 20, 20)).Header.Get("Location")
	if etag := b.get(photo + "/image").Header.Get("ETag"); etag != "" {
		t.Fatalf("stage 2 sent ETag %q; image caching is stage 3's change", etag)
	}
}
