package app

import (
	"net/http"
	"testing"

	"github.com/alicebob/miniredis/v2"

	"flickrkillr/models/modeltest"
)

func TestStage2LeavesTheSessionsTableAlone(t *testing.T) {
	ta := newTestApp(t, 2)
	b := ta.browser(t)
	b.signup("mia")
	mustContain(t, b.get("/"), "Log out")
	if n := ta.countRows(t, "sessions"); n != 0 {
		t.Fatalf("%d session rows at stage 2, want 0", n)
	}
}

// With an external Redis (REDIS_URL, or a miniredis standing in for one), a
// restarted server still knows its users: the sessions live outside the process.
func TestStage2SessionsSurviveARestartWithExternalRedis(t *testing.T) {
	redisURL := testRedisURL(t)
	if redisURL == "" {
		redisURL = "redis://" + miniredis.RunT(t).Addr()
	}
	need, _ := SchemaFor(2)
	dsn, dataDir := modeltest.NewDB(t, need), t.TempDir()

	first := newTestAppOn(t, 2, dsn, dataDir, redisURL)
	b := first.browser(t)
	b.signup("nora")
	mustContain(t, b.get("/"), "Log out")
	first.srv.Close()
	first.deps.Close()

	second := newTestAppOn(t, 2, dsn, dataDir, redisURL)
	b.base = second.srv.URL // same host, so the jar sends the same cookie
	res := b.get("/")
	mustStatus(t, res, http.StatusOK)
	mustContain(t, res, "Log out", `href="/users/nora"`)
}
