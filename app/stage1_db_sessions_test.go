package app

import (
	"net/http"
	"testing"
)

func TestStage1KeepsSessionsInPostgreSQL(t *testing.T) {
	ta := newTestApp(t, 1)
	b := ta.browser(t)
	b.signup("sally")
	if n := ta.countRows(t, "sessions"); n != 1 {
		t.Fatalf("%d session rows after sign-up, want 1", n)
	}
	var before, after string
	ta.db.Raw(`SELECT expiry::text FROM sessions`).Scan(&before)
	mustStatus(t, b.get("/"), http.StatusOK)
	ta.db.Raw(`SELECT expiry::text FROM sessions`).Scan(&after)
	if before == after {
		t.Fatal("a request with a session did not rewrite its row (the idle timeout should)")
	}
}
