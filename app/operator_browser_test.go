package app

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"flickrkillr/app/obs"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromium finds Debian's chromium (scripts/test.sh installs it); without it
// the test is skipped, except in CI, where it fails.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium on PATH (scripts/test.sh installs Debian's chromium as root)")
	}
	t.Skip("no chromium on PATH (apt-get install chromium, or run make test as root)")
	return ""
}

// TestDashboardInARealBrowser loads /dashboard in headless Chromium while
// requests run, and checks that its panels move, with no console errors (a
// CSP violation is one). DASHBOARD_SCREENSHOT=path keeps the screenshot.
func TestDashboardInARealBrowser(t *testing.T) {
	exe := chromium(t)
	ta := newTestApp(t, DefaultStage())
	b := ta.browser(t)
	b.signup("viewer")
	photo := b.upload(map[string]string{"title": "Watched", "tags": "watch"}, "a.png", testPNG(t, 40, 30)).Header.Get("Location")

	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	dash := ta.newDashboard(ctx)
	go dash.Run(ctx)
	admin := httptest.NewServer(obs.Handler(ta.metrics.Registry(), dash, nil))
	defer admin.Close()

	// Load while the browser watches: a few pages a second, bounded by ctx.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Add(1)
	go func() {
		defer wg.Done()
		paths := []string{"/", photo, "/users/viewer", "/tags/watch", photo + "/thumb", "/no/such/page"}
		for i := 0; ctx.Err() == nil; i++ {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ta.srv.URL+paths[i%len(paths)], nil)
			if res, err := http.DefaultClient.Do(req); err == nil {
				res.Body.Close()
			}
			time.Sleep(time.Duration(10+i%40) * time.Millisecond) // an uneven rate, so the numbers move
		}
	}()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.WindowSize(1400, 1500), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	bctx, cancelTimeout := context.WithTimeout(bctx, 60*time.Second)
	defer cancelTimeout()

	var mu sync.Mutex
	var problems []string
	chromedp.ListenTarget(bctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.APITypeError || ev.Type == runtime.APITypeWarning {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				problems = append(problems, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
			}
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+ev.ExceptionDetails.Error())
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.LevelError || ev.Entry.Level == log.LevelWarning {
				problems = append(problems, fmt.Sprintf("%s %s: %s (%s)", ev.Entry.Source, ev.Entry.Level, ev.Entry.Text, ev.Entry.URL))
			}
		}
	})

	// Two samples of the req/s panel's latest values, a few points apart.
	var first, second, points, stage string
	var shot []byte
	err := chromedp.Run(bctx,
		log.Enable(),
		runtime.Enable(),
		chromedp.Navigate(admin.URL+"/dashboard"),
		chromedp.WaitVisible(`#panel-rps canvas`),
		chromedp.Text(`#stage`, &stage),
		waitPoints(`panel-rps`, 3),
		chromedp.AttributeValue(`#panel-rps`, "data-last", &first, nil),
		chromedp.AttributeValue(`#panel-rps`, "data-points", &points, nil),
		// Three points after the first sample, however many the first fetch
		// brought (on a loaded machine the page can load a long history at
		// once, and a fixed count was then already reached).
		chromedp.ActionFunc(func(ctx context.Context) error {
			n, _ := strconv.Atoi(points)
			return waitPoints(`panel-rps`, n+3).Do(ctx)
		}),
		chromedp.AttributeValue(`#panel-rps`, "data-last", &second, nil),
		chromedp.FullScreenshot(&shot, 90),
	)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	if want := fmt.Sprintf("stage %d · %s", ta.stage.Number, ta.stage.Name); stage != want {
		t.Fatalf("the dashboard's header says %q", stage)
	}
	if first == "" || first == second || !strings.ContainsAny(second, "123456789") {
		t.Fatalf("the req/s panel did not move between two samples: %s, then %s", first, second)
	}
	path := os.Getenv("DASHBOARD_SCREENSHOT")
	if path == "" {
		path = filepath.Join(t.TempDir(), "dashboard.png")
	}
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("req/s %s, then %s; screenshot %s (%d bytes)", first, second, path, len(shot))
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Fatalf("the browser reported problems:\n%s", strings.Join(problems, "\n"))
	}
}

// waitPoints waits until the panel holds at least n points.
func waitPoints(panel string, n int) chromedp.Action {
	return chromedp.Poll(fmt.Sprintf(`Number(document.getElementById(%q).dataset.points || 0) >= %d`, panel, n), nil,
		chromedp.WithPollingInterval(100*time.Millisecond))
}
