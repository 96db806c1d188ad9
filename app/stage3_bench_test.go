package app

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"flickrkillr/models"
	"flickrkillr/models/modeltest"
)

// BenchmarkStage3CachedPhotoPage is what a cache hit costs the server: a
// photo page asked for again, through the router (no network), for an
// anonymous visitor and for a logged-in one. For its allocations:
//
//	go test ./app -run '^$' -bench Stage3CachedPhotoPage -benchmem -memprofile /tmp/mem.out
//	go tool pprof -top -sample_index=alloc_space app.test /tmp/mem.out
func BenchmarkStage3CachedPhotoPage(b *testing.B) {
	schema, err := SchemaFor(3)
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{DatabaseURL: modeltest.NewDB(b, schema), DataDir: b.TempDir(), Stage: 3}
	db, err := models.Open(context.Background(), cfg.DatabaseURL, models.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { models.Close(db) })
	d := &Deps{DB: db, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a, err := New(cfg, d)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })

	do := func(req *http.Request, cookie string) *httptest.ResponseRecorder {
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		return rec
	}
	form := url.Values{"name": {"bench"}, "password": {"correct horse battery"}}
	req := httptest.NewRequest(http.MethodPost, "/signup", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := do(req, "")
	cookie := strings.Split(rec.Header().Get("Set-Cookie"), ";")[0]
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("title", "Bench")
	mw.WriteField("tags", "bench")
	fw, _ := mw.CreateFormFile("image", "a.png")
	fw.Write(testPNGBytes(b, 40, 30))
	mw.Close()
	req = httptest.NewRequest(http.MethodPost, "/upload", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	photo := do(req, cookie).Header().Get("Location")
	if photo == "" {
		b.Fatal("the upload did not redirect")
	}
	do(httptest.NewRequest(http.MethodGet, "/", nil), cookie) // takes the flash

	for _, v := range []struct{ name, cookie string }{{"anonymous", ""}, {"logged-in", cookie}} {
		b.Run(v.name, func(b *testing.B) {
			for range 2 { // fills the caches
				do(httptest.NewRequest(http.MethodGet, photo, nil), v.cookie)
			}
			b.ReportAllocs()
			for b.Loop() {
				rec := do(httptest.NewRequest(http.MethodGet, photo, nil), v.cookie)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
	}
}

func testPNGBytes(b *testing.B, w, h int) []byte {
	b.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}
