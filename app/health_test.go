package app

import (
	"encoding/json"
	"net/http"
	"testing"
)

// /healthz?data=1 tells the connections scenario what the server costs.
func TestHealthzReportsTheProcessCosts(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	res := ta.browser(t).get("/healthz?data=1")
	mustStatus(t, res, http.StatusOK)
	var h health
	if err := json.Unmarshal([]byte(res.Body), &h); err != nil {
		t.Fatal(err)
	}
	p := h.Process
	if p == nil || p.RSSBytes <= 0 || p.OpenFDs <= 0 || p.MaxFDs == 0 || p.Goroutines <= 0 || p.Threads <= 0 ||
		p.HeapBytes <= 0 || p.StackBytes <= 0 {
		t.Fatalf("process figures %+v: want them all positive", p)
	}
	var plain health
	if res := ta.browser(t).get("/healthz"); json.Unmarshal([]byte(res.Body), &plain) != nil || plain.Process != nil {
		t.Fatalf("plain /healthz: %s; the process figures come only with ?data=1", res.Body)
	}
}
