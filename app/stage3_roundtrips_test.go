package app

import (
	"net/http"
	"strings"
	"testing"

	"flickrkillr/app/obs"
)

// timingCount is the count at the start of the desc of Server-Timing's entry
// name ("2 round trips", "0 queries"), or -1 when the entry is missing.
func timingCount(res response, name string) int {
	for _, e := range obs.ParseServerTiming(res.Header.Get("Server-Timing")) {
		if e.Name == name {
			return obs.QueriesIn(e.Desc)
		}
	}
	return -1
}

// A cached page costs one round trip to Redis: its generations in one MGET
// (for a logged-in viewer in the same pipeline as the session's GET), its
// values from the near cache, no SQL. Server-Timing counts both. (The
// issue's budget was 2 round trips anonymous, 3 logged in.)
func TestStage3CachedPagesCostOneRoundTripToTheCache(t *testing.T) {
	for _, stage := range []int{3, DefaultStage()} {
		ta := newTestApp(t, stage)
		owner, other := ta.browser(t), ta.browser(t)
		owner.signup("olga")
		other.signup("gus")
		photo := owner.upload(map[string]string{"title": "Mine", "tags": "m"}, "a.png", testPNG(t, 40, 30)).Header.Get("Location")
		owner.get("/") // takes the flashes
		other.get("/")
		pages := []string{photo, "/", "/users/olga", "/tags/m"}
		for _, v := range []struct {
			name string
			b    *browser
			max  int
		}{
			{"an anonymous visitor", anonymous(ta, t), 1},
			{"the owner", owner, 1},
			{"another user", other, 1},
		} {
			for _, p := range pages {
				v.b.get(p) // fills the caches
				res := v.b.get(p)
				mustStatus(t, res, http.StatusOK)
				if n := timingCount(res, "db"); n != 0 {
					t.Errorf("stage %d, %s, cached %s: %d SQL statements, want 0 (%s)", stage, v.name, p, n, res.Header.Get("Server-Timing"))
				}
				if n := timingCount(res, "redis"); n > v.max {
					t.Errorf("stage %d, %s, cached %s: %d Redis round trips, want at most %d (%s)", stage, v.name, p, n, v.max, res.Header.Get("Server-Timing"))
				}
				if !strings.Contains(res.Header.Get("Server-Timing"), " 0 misses") {
					t.Errorf("stage %d, %s, cached %s missed: %s", stage, v.name, p, res.Header.Get("Server-Timing"))
				}
			}
		}
	}
}
