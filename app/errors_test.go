package app

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

// A request whose client has gone is logged as info, not as the server's error.
func TestFailuresOfGoneClientsAreNotErrors(t *testing.T) {
	for _, tt := range []struct {
		name  string
		gone  bool
		level string
	}{
		{"client still there", false, "level=ERROR"},
		{"client gone", true, "level=INFO"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			a := &App{log: slog.New(slog.NewTextHandler(&logs, nil))}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.gone {
				cancel()
			}
			req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/photos/1", nil)
			c := echo.New().NewContext(req, httptest.NewRecorder())
			c.Response().WriteHeader(http.StatusOK) // the page had started
			a.httpError(errors.New("write: broken pipe"), c)
			if got := logs.String(); !strings.Contains(got, tt.level) || !strings.Contains(got, "path=/photos/1") {
				t.Fatalf("logged %q, want %s with the path", got, tt.level)
			}
		})
	}
}

// The page a front sends for a body over the upload's cap (stage 7's nginx)
// is the app's own, and names the limit.
func TestTooLargePageNamesTheLimit(t *testing.T) {
	b, err := tooLargePage(Stage{Number: 7, Name: "scale-out"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Request Entity Too Large", "larger than " + uploadLimit()} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the 413 page lacks %q:\n%s", want, b)
		}
	}
}
