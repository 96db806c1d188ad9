package topology

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"
)

// A body over the limit gets the app's 413 page from nginx, not nginx's own,
// and the page itself is not served to anyone who asks for it.
func TestNginxAnswers413WithTheAppsPage(t *testing.T) {
	nginx := needNginx(t)
	dir := t.TempDir()
	for _, sub := range []string{"tmp", "static"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o755)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	page := []byte("<!doctype html><title>Request Entity Too Large</title><p>The file is larger than 1 KB.</p>")
	lim := Limits{MaxBody: 1 << 10, MaxHeader: 64 << 10, ReadHeader: 5 * time.Second, ReadBody: 30 * time.Second,
		Write: time.Minute, Idle: 2 * time.Minute, TooLargePage: page}
	instances := []*instance{{Name: "i1", Addr: "127.0.0.1:9"}} // nothing behind: the 413 comes first
	conf, err := writeNginxConfig(dir, listen, t.TempDir(), lim, fstest.MapFS{"style.css": {Data: []byte("body{}")}}, instances)
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", listen)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen on %s: %v\n%s", listen, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	res, err := http.Post("http://"+listen+"/upload", "application/octet-stream", bytes.NewReader(make([]byte, lim.MaxBody+1)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge || !bytes.Equal(body, page) {
		t.Fatalf("a body over the limit: %d %q, want 413 with the app's page", res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("the 413 page is sent as %q, want text/html", ct)
	}
	res, err = http.Get(fmt.Sprintf("http://%s/_errors/413.html", listen))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusOK {
		t.Error("the error page is served on its own")
	}
}
