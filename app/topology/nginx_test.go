package topology

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// needNginx is the nginx binary; scripts/test.sh installs it, so in CI a
// missing one fails (this is the test that says so for stage 7), elsewhere
// the test is skipped.
func needNginx(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("nginx")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("nginx is not installed (scripts/test.sh installs it)")
		}
		t.Skip("nginx is not installed (apt-get install nginx-light)")
	}
	return path
}

// The generated configuration passes `nginx -t` and says what the stage
// promises: keepalive to the instances, least_conn, passive health with a
// shared zone, retries for idempotent requests only, the app's body limit,
// files by key.
func TestStage7NginxConfigPassesNginxT(t *testing.T) {
	nginx := needNginx(t)
	dir := t.TempDir()
	for _, sub := range []string{"tmp", "static"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o755)
	}
	instances := []*instance{{Name: "i1", Addr: "127.0.0.1:18311"}, {Name: "i2", Addr: "127.0.0.1:18312"}}
	lim := Limits{MaxBody: 10<<20 + 64<<10, MaxHeader: 64 << 10, ReadHeader: 5 * time.Second, ReadBody: 30 * time.Second, Write: time.Minute, Idle: 2 * time.Minute}
	static := fstest.MapFS{"style.css": {Data: []byte("body{}")}}
	conf, err := writeNginxConfig(dir, "127.0.0.1:18310", t.TempDir(), lim, static, instances)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkNginxConfig(nginx, dir, conf); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(conf)
	text := string(b)
	for _, want := range []string{
		"daemon off;", "least_conn;", "zone flickrkillr", "server 127.0.0.1:18311 max_fails=1 fail_timeout=3s;  # i1",
		"keepalive         32;", "proxy_http_version 1.1;", `proxy_set_header Connection "";`,
		"proxy_set_header X-Forwarded-For $remote_addr;", "proxy_next_upstream error timeout;",
		fmt.Sprintf("client_max_body_size        %d;", lim.MaxBody), "large_client_header_buffers 4 64k;",
		`"127.0.0.1:18312" i2;`, "add_header X-Upstream $upstream_name always;", "sendfile   on;",
		"immutable", "pid " + dir + "/nginx.pid;", "proxy_set_header Host $proxy_host;", "default $http_host;",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the config lacks %q", want)
		}
	}
	if regexp.MustCompile(`\n\s*proxy_next_upstream\s[^;]*non_idempotent`).MatchString(text) {
		t.Error("the config retries POSTs on another instance (non_idempotent)")
	}
	if _, err := os.Stat(filepath.Join(dir, "static", "style.css")); err != nil {
		t.Errorf("the stylesheet was not written for nginx: %v", err)
	}
}
