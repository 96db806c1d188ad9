package topology

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// Stage 8: both front caches render a configuration nginx accepts, each
// with its own part and not the other's.
func TestStage8NginxConfigPassesNginxT(t *testing.T) {
	nginx := needNginx(t)
	for _, tc := range []struct {
		mode      string
		want, not []string
	}{
		{FrontMemcached, []string{"memcached_pass front_memcached;", `set $memcached_key "page:$uri$is_args$args";`,
			"memcached_read_timeout    100ms;", "keepalive 32;", "$cookie_flickrkillr_session", `Server-Timing 'front;desc="front cache"'`,
			"charset      utf-8;", "error_page 404 502 504 = @front_app;"}, []string{"proxy_cache front_micro;"}},
		{FrontProxy, []string{"proxy_cache front_micro;", "proxy_cache_valid 200 1s;", "proxy_cache_use_stale updating",
			"proxy_no_cache     $front_skip;"}, []string{"memcached_pass"}},
		{"", nil, []string{"memcached_pass", "proxy_cache", "front_cacheable"}},
	} {
		t.Run("front cache "+tc.mode, func(t *testing.T) {
			dir := t.TempDir()
			for _, sub := range []string{"tmp", "static"} {
				os.MkdirAll(filepath.Join(dir, sub), 0o755)
			}
			instances := []*instance{{Name: "i1", Addr: "127.0.0.1:18321"}}
			lim := Limits{MaxBody: 1 << 20, MaxHeader: 64 << 10, ReadHeader: 5 * time.Second, ReadBody: 30 * time.Second, Write: time.Minute, Idle: 2 * time.Minute}
			front := frontConf{Mode: tc.mode, Memcached: "127.0.0.1:18322", Cookie: "flickrkillr_session", CacheDir: filepath.Join(dir, "front-cache"),
				MaxName: testMaxName, MaxCursor: testMaxCursor}
			conf, err := writeNginxConfig(dir, "127.0.0.1:18320", t.TempDir(), lim, fstest.MapFS{"style.css": {Data: []byte("body{}")}}, instances, front)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkNginxConfig(nginx, dir, conf); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(conf)
			for _, w := range tc.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("the configuration lacks %q", w)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(string(b), w) {
					t.Errorf("the configuration has %q", w)
				}
			}
		})
	}
}

// The bounds the app gives (frontcache.MaxName and MaxCursor; this package
// is in stage 7's tag, which has no frontcache).
const testMaxName, testMaxCursor = 70, 19

// Stage 8: what nginx sends memcached is a key the app could have filled,
// within memcached's 250 bytes, and one page's key only. With real nginx
// and memcached, a stand-in instance behind: a /tags/ URL of 300 bytes goes
// to the instance without a lookup (each one was an error in nginx's log),
// a name of MaxName bytes that all need escaping is looked up, and
// /tags/x%3Fbefore=9 (a decoded '?') is not answered with the page of
// /tags/x?before=9. (frontcache's test holds Key to the same keys.)
func TestStage8NginxSendsMemcachedNoOverlongNorAmbiguousKey(t *testing.T) {
	nginx := needNginx(t)
	mcAddr := startMemcachedForTest(t)
	mc := memcache.New(mcAddr)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "from the instance: %s", r.URL.Path)
	}))
	t.Cleanup(app.Close)

	dir := t.TempDir()
	for _, sub := range []string{"tmp", "static"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o755)
	}
	listen := freeAddrForTest(t)
	lim := Limits{MaxBody: 1 << 20, MaxHeader: 64 << 10, ReadHeader: 5 * time.Second, ReadBody: 30 * time.Second, Write: time.Minute, Idle: 2 * time.Minute}
	front := frontConf{Mode: FrontMemcached, Memcached: mcAddr, Cookie: "flickrkillr_session", CacheDir: filepath.Join(dir, "front-cache"),
		MaxName: testMaxName, MaxCursor: testMaxCursor}
	instances := []*instance{{Name: "i1", Addr: strings.TrimPrefix(app.URL, "http://")}}
	conf, err := writeNginxConfig(dir, listen, t.TempDir(), lim, fstest.MapFS{"style.css": {Data: []byte("body{}")}}, instances, front)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGQUIT); cmd.Wait() })
	waitListening(t, listen, &out)

	longest := "/tags/" + strings.Repeat(" ", testMaxName)
	cursor := "before=" + strings.Repeat("9", testMaxCursor)
	longestKey := "page:/tags/" + strings.Repeat("%20", testMaxName) + "?" + cursor // escaped as nginx does
	if len(longestKey) > 250 {
		t.Fatalf("the longest key is %d bytes", len(longestKey))
	}
	for key, page := range map[string]string{"page:/tags/sea": "sea's page", "page:/tags/x?before=9": "the 2nd page of x", longestKey: "the longest"} {
		if err := mc.Set(&memcache.Item{Key: key, Value: []byte(page)}); err != nil {
			t.Fatal(err)
		}
	}
	get := func(rawPath string) (string, string) {
		t.Helper()
		res, err := http.Get("http://" + listen + rawPath)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b), res.Header.Get("X-Front-Cache")
	}
	if body, via := get("/tags/sea"); body != "sea's page" || via != "memcached" {
		t.Errorf("/tags/sea: %q via %q, want its page from memcached", body, via)
	}
	if body, via := get(strings.ReplaceAll(longest, " ", "%20") + "?" + cursor); body != "the longest" || via != "memcached" {
		t.Errorf("a name of %d escaped bytes: %q via %q, want its page from memcached", testMaxName, body, via)
	}
	if body, _ := get("/tags/x?before=9"); body != "the 2nd page of x" {
		t.Errorf("/tags/x?before=9: %q, want its page", body)
	}
	if body, _ := get("/tags/x%3Fbefore=9"); !strings.HasPrefix(body, "from the instance: /tags/x?before=9") {
		t.Errorf("/tags/x%%3Fbefore=9: %q, want the instance's answer for the tag x?before=9", body)
	}
	for range 5 {
		if body, _ := get("/tags/" + strings.Repeat("a", 300)); !strings.HasPrefix(body, "from the instance: ") {
			t.Errorf("a 300-byte tag: %q, want the instance's answer", body)
		}
		get("/users/" + strings.Repeat("%25", 100) + "?before=1") // 300 bytes once escaped
	}
	cmd.Process.Signal(syscall.SIGQUIT) // flushes the log
	cmd.Wait()
	log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
	if strings.Contains(string(log), "[error]") || strings.Contains(string(log), "memcached") {
		t.Errorf("nginx's error log:\n%s", log)
	}
}

// startMemcachedForTest runs Debian's memcached on a free port for one test.
func startMemcachedForTest(t *testing.T) string {
	t.Helper()
	exe, err := exec.LookPath("memcached")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("memcached is not installed (scripts/test.sh installs it)")
		}
		t.Skip("memcached is not installed (apt-get install memcached)")
	}
	addr := freeAddrForTest(t)
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
	waitListening(t, addr, &bytes.Buffer{})
	return addr
}

func freeAddrForTest(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitListening(t *testing.T, addr string, out *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s\n%s", addr, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
