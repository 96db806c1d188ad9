package frontcache

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// The key is what nginx sends as `get` for $uri and $args (verified against
// memcached -vv with Debian's nginx 1.22: docs/stages/08-front-cache.md).
func TestKeyIsNginxsEscapedKey(t *testing.T) {
	for _, tc := range []struct {
		name, path, query, want string
		ok                      bool
	}{
		{"the home page", "/", "", "page:/", true},
		{"a photo", "/photos/12", "", "page:/photos/12", true},
		{"a listing's next page", "/tags/sea", "before=99", "page:/tags/sea?before=99", true},
		{"a space, escaped in uppercase hex", "/tags/a b", "", "page:/tags/a%20b", true},
		{"a percent sign", "/tags/a%b", "", "page:/tags/a%25b", true},
		{"a tab and a carriage return", "/tags/a\tb\r", "", "page:/tags/a%09b%0D", true},
		{"UTF-8, sent raw", "/tags/été", "", "page:/tags/été", true},
		{"a plus and quotes, sent raw", `/tags/a+b"'<`, "", `page:/tags/a+b"'<`, true},
		{"not clean: nginx looks up the resolved path", "/tags/x/../y", "", "", false},
		{"a double slash", "/tags//y", "", "", false},
		{"another query: nginx never looks it up", "/photos/1", "q=1", "", false},
		{"a cursor that is not a number", "/tags/sea", "before=12abc", "", false},
		{"DEL: raw in nginx's key, refused by memcached", "/tags/a\x7fb", "", "", false},
		{"longer than memcached's 250 bytes", "/tags/" + string(make([]byte, 250)), "", "", false},
		{"a decoded ? in the path: it would read as the query", "/tags/x?before=9", "", "", false},
		{"a name of MaxName bytes, all escaped", "/tags/" + strings.Repeat(" ", MaxName), "before=" + strings.Repeat("9", MaxCursor),
			"page:/tags/" + strings.Repeat("%20", MaxName) + "?before=" + strings.Repeat("9", MaxCursor), true},
		{"a name over MaxName bytes: nginx does not look it up", "/tags/" + strings.Repeat("a", MaxName+1), "", "", false},
		{"a cursor over MaxCursor digits", "/tags/sea", "before=" + strings.Repeat("1", MaxCursor+1), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Key(tc.path, tc.query)
			if got != tc.want || ok != tc.ok {
				t.Errorf("Key(%q, %q) = %q, %t; want %q, %t", tc.path, tc.query, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// startMemcached runs Debian's memcached on a free port for one test.
func startMemcached(t *testing.T) string {
	t.Helper()
	exe, err := exec.LookPath("memcached")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("memcached is not installed (scripts/test.sh installs it)")
		}
		t.Skip("memcached is not installed (apt-get install memcached)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	args := []string{"-l", "127.0.0.1", "-p", port, "-U", "0", "-m", "16"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	cmd := exec.Command(exe, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("memcached did not listen on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A fill that raced a delete (a page rendered from the data before a write,
// stored after the write deleted it) is served stale, but never longer than
// the TTL: memcached drops it then, and the next lookup misses.
func TestFillRacingADeleteDiesWithTheTTL(t *testing.T) {
	addr := startMemcached(t)
	s := New(Options{Addr: addr, TTL: 2 * time.Second})
	t.Cleanup(func() { s.Close() })
	mc := memcache.New(addr)
	ctx := context.Background()

	if !s.Fill(ctx, "/photos/7", "", []byte("before the comment")) {
		t.Fatal("the first fill was not stored")
	}
	if err := s.Delete(ctx, "/photos/7"); err != nil { // the write
		t.Fatal(err)
	}
	if _, err := mc.Get("page:/photos/7"); err != memcache.ErrCacheMiss {
		t.Fatalf("after the delete: %v, want a miss", err)
	}
	filled := time.Now()
	if !s.Fill(ctx, "/photos/7", "", []byte("before the comment")) { // the late fill
		t.Fatal("the late fill was not stored")
	}
	if it, err := mc.Get("page:/photos/7"); err != nil || string(it.Value) != "before the comment" {
		t.Fatalf("the late fill: %v", err)
	}
	// memcached counts expiry in whole seconds: gone within TTL+1 s; wait
	// on the condition, with room for a busy machine.
	for {
		_, err := mc.Get("page:/photos/7")
		if err == memcache.ErrCacheMiss {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(filled) > 60*time.Second {
			t.Fatal("the stale page outlived its TTL by far")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if lived := time.Since(filled); lived < time.Second {
		t.Errorf("the page lived %s, less than the TTL allows: was it stored with a TTL at all?", lived)
	}
}

// A dead memcached costs a fill or a delete one short timeout at most,
// then nothing while the breaker is open; nothing is returned to a user.
func TestDeadMemcachedOpensTheBreaker(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // refused from now on
	s := New(Options{Addr: addr})
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	for i := range 5 {
		if s.Fill(ctx, "/photos/"+strconv.Itoa(i), "", []byte("x")) {
			t.Fatal("a fill to a dead memcached reported stored")
		}
	}
	if !s.BreakerOpen() {
		t.Error("the breaker is still closed after 5 refused fills")
	}
	if err := s.Delete(ctx, "/"); err == nil {
		t.Error("a delete to a dead memcached reported no error")
	}
	if st := s.Stats(); st.FillErrors == 0 || st.Skipped == 0 {
		t.Errorf("stats %+v: want fill errors, then fills skipped by the open breaker", st)
	}
}
