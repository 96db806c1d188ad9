package obs

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"flickrkillr/models/timing"
)

// BenchmarkObserve is what the instrumentation adds to one request, without
// the request's own work: a page handler that only renders nothing, behind
// the middleware with metrics on and off (METRICS=0: no middleware at all).
//
//	go test ./app/obs -run '^$' -bench Observe -benchmem
func BenchmarkObserve(b *testing.B) {
	for _, tc := range []struct {
		name string
		off  bool
	}{{"metrics on", false}, {"metrics off", true}} {
		b.Run(tc.name, func(b *testing.B) {
			e := echo.New()
			if !tc.off {
				e.Use(Middleware(NewMetrics(nil), false))
			}
			e.GET("/photos/:id", func(c echo.Context) error {
				_, done := timing.Time(c.Request().Context(), timing.Render)
				done()
				return c.HTMLBlob(http.StatusOK, []byte("<p>photo</p>"))
			})
			req := httptest.NewRequest(http.MethodGet, "/photos/42", nil)
			b.ReportAllocs()
			for b.Loop() {
				e.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}
