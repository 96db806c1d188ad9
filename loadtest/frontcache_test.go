package loadtest

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// The front-cache table counts, per route, the answers that carried
// X-Front-Cache and those the front served (memcached's, or proxy_cache's
// HIT and stale copies), and stays away from runs without a front cache.
func TestFrontCacheHitRatioPerRoute(t *testing.T) {
	r := newRecorder()
	for _, v := range []string{"memcached", "memcached", "miss", "bypass"} {
		r.record("anon-photo", time.Millisecond, 100, nil)
		r.recordFront("anon-photo", []byte(v))
	}
	for _, v := range []string{"HIT", "STALE", "MISS", ""} {
		r.record("anon-home", time.Millisecond, 100, nil)
		r.recordFront("anon-home", []byte(v))
	}
	r.record("photo", time.Millisecond, 100, nil) // logged in: no header at stage 7
	other := newRecorder()
	other.record("anon-photo", time.Millisecond, 100, nil)
	other.recordFront("anon-photo", []byte("memcached"))
	r.merge(other)
	rows, total := r.results(time.Second)
	got := map[string]*FrontResult{}
	for _, row := range rows {
		got[row.Route] = row.Front
	}
	if f := got["anon-photo"]; f == nil || f.Responses != 5 || f.Hits != 3 {
		t.Errorf("anon-photo: %+v, want 3 hits of 5", f)
	}
	if f := got["anon-home"]; f == nil || f.Responses != 3 || f.Hits != 2 {
		t.Errorf("anon-home: %+v, want 2 hits of 3 (HIT and STALE)", f)
	}
	if got["photo"] != nil {
		t.Error("a route without the header has a front-cache result")
	}
	if total.Front == nil || total.Front.Hits != 5 || total.Front.Responses != 8 {
		t.Errorf("total: %+v, want 5 hits of 8", total.Front)
	}
	var b bytes.Buffer
	writeFront(&b, &Result{Routes: rows, Total: total})
	if !strings.Contains(b.String(), "60.0%") {
		t.Errorf("the table lacks anon-photo's 60.0%%:\n%s", b.String())
	}
	b.Reset()
	writeFront(&b, &Result{})
	if b.Len() != 0 {
		t.Errorf("a run without a front cache has a table:\n%s", b.String())
	}
}
