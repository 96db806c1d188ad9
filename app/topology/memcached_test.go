package topology

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
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
			front := frontConf{Mode: tc.mode, Memcached: "127.0.0.1:18322", Cookie: "flickrkillr_session", CacheDir: filepath.Join(dir, "front-cache")}
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
