package app

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

func TestStage3RepeatedLoggedInPagesRunNoTemplate(t *testing.T) {
	ta := newTestApp(t, 3)
	owner, other := ta.browser(t), ta.browser(t)
	owner.signup("rita")
	other.signup("otto")
	photo := owner.upload(map[string]string{"title": "Quiet", "tags": "calm"}, "a.png", testPNG(t, 40, 30)).Header.Get("Location")
	owner.get("/") // the flashes
	other.get("/")
	for _, path := range []string{"/", photo, "/users/rita", "/tags/calm"} {
		t.Run(path, func(t *testing.T) {
			first := owner.get(path)
			mustStatus(t, first, http.StatusOK)
			templates := ta.tmpl.executed.Load()
			again := owner.get(path)
			if n := ta.tmpl.executed.Load() - templates; n != 0 {
				t.Errorf("the repeated page executed %d templates, want 0", n)
			}
			if again.Body != first.Body {
				t.Errorf("the cached page differs from the rendered one")
			}
			if h := header(other.get(path).Body); strings.Contains(h, "rita") || !strings.Contains(h, `<a href="/users/otto">otto</a>`) {
				t.Errorf("another user's header is not theirs:\n%s", h)
			}
		})
	}
}

// Two users (one owns the photo and starred it, one did not) and anonymous
// visitors ask for the same pages at once, over and over: each page is
// checked for its own viewer's name, star and buttons, never another's.
func TestStage3InterleavedViewersEachGetTheirOwnPage(t *testing.T) {
	ta := newTestApp(t, 3)
	olga, gus := ta.browser(t), ta.browser(t)
	olga.signup("olga")
	gus.signup("gus")
	photo := olga.upload(map[string]string{"title": "Mine", "tags": "m"}, "a.png", testPNG(t, 40, 30)).Header.Get("Location")
	mustStatus(t, olga.post(photo+"/favorite", url.Values{"action": {"add"}}), http.StatusSeeOther)
	olga.get("/")
	gus.get("/")
	check := func(who string, res response, path string) error {
		if res.Status != http.StatusOK {
			return fmt.Errorf("%s %s: status %d", who, path, res.Status)
		}
		h := header(res.Body)
		switch who {
		case "anonymous":
			if !strings.Contains(h, `<a href="/login">Log in</a>`) || strings.Contains(h, "olga") || strings.Contains(h, "gus") {
				return fmt.Errorf("anonymous %s: header %q", path, h)
			}
		default:
			mine := `<a href="/users/` + who + `">` + who + `</a>`
			for _, n := range []string{"olga", "gus"} {
				if n != who && strings.Contains(h, n) {
					return fmt.Errorf("%s %s: the header names %s: %q", who, path, n, h)
				}
			}
			if !strings.Contains(h, mine) {
				return fmt.Errorf("%s %s: the header lacks %q: %q", who, path, mine, h)
			}
		}
		if path != photo {
			return nil
		}
		want := map[string][]string{
			"olga":      {"★ Unfavorite", "Delete this photo"},
			"gus":       {"☆ Favorite"},
			"anonymous": {"Log in</a> to favorite and comment."},
		}[who]
		never := map[string][]string{
			"olga":      {"☆ Favorite"},
			"gus":       {"★ Unfavorite", "Delete this photo"},
			"anonymous": {"Favorite", "Delete this photo"},
		}[who]
		for _, w := range want {
			if !strings.Contains(res.Body, w) {
				return fmt.Errorf("%s %s: no %q", who, path, w)
			}
		}
		for _, w := range never {
			if strings.Contains(res.Body, w) {
				return fmt.Errorf("%s %s: shows %q", who, path, w)
			}
		}
		return nil
	}
	paths := []string{photo, "/", "/users/olga", "/tags/m"}
	viewers := map[string]*browser{"olga": olga, "gus": gus, "anonymous": anonymous(ta, t)}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for who, b := range viewers {
		for range 3 { // several requests of each viewer at once
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 40 {
					p := paths[i%len(paths)]
					if err := check(who, b.get(p), p); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
