package topology

import (
	"bytes"
	_ "embed"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"text/template"
	"time"
)

// nginx's configuration, generated from a template into the topology's
// folder at every start and checked with `nginx -t` first.
//
//go:embed nginx.conf.tmpl
var nginxConfText string

var nginxConf = template.Must(template.New("nginx.conf").Parse(nginxConfText))

// Limits are the instances' own limits and timeouts, which nginx's must
// match: the app passes its server's, so that they cannot drift.
type Limits struct {
	MaxBody    int64 // bytes of a request body (the upload's cap)
	MaxHeader  int   // bytes of the request line and headers
	ReadHeader time.Duration
	ReadBody   time.Duration
	Write      time.Duration
	Idle       time.Duration
	// TooLargePage is the app's page for a body over MaxBody (rendered at
	// start): nginx answers its 413 with it instead of its own. nil: nginx's.
	TooLargePage []byte
}

// nginxConfig is what the template needs.
type nginxConfig struct {
	Dir         string // pid, logs, temp files
	User, Group string // set when we are root: nginx's workers run as us, not nobody
	Listen      string
	Instances   []*instance
	Static      string // the stylesheet, written out from the binary
	Files       string // DATA_DIR: the photo files
	FailTimeout string // how long nginx leaves out an instance that failed
	MaxBody     int64
	MaxHeader   string
	ReadHeader  string
	ReadBody    string
	Write       string
	Idle        string
	TooLarge    string    // the app's 413 page, "" for nginx's own
	Front       frontConf // Stage 8: the front cache ("" Mode: none)
}

// frontConf is stage 8's part of the template: which front cache, where
// memcached listens, which cookie marks a logged-in visitor, where
// proxy_cache keeps its files.
type frontConf struct {
	Mode      string // FrontMemcached, FrontProxy or ""
	Memcached string // host:port
	Cookie    string // the session cookie's name
	CacheDir  string
	// MaxName and MaxCursor bound the pages looked up (Options.FrontMaxName
	// and FrontMaxCursor), so that no key nginx sends is over memcached's
	// 250 bytes.
	MaxName, MaxCursor int
}

// renderNginxConfig is the configuration text for nginx on listen in front
// of instances, with its files under dir.
func renderNginxConfig(dir, listen, dataDir string, lim Limits, instances []*instance, front ...frontConf) ([]byte, error) {
	c := nginxConfig{
		Dir: dir, Listen: listen, Instances: instances,
		Static:      filepath.Join(dir, "static"),
		Files:       dataDir,
		FailTimeout: seconds(failTimeout),
		MaxBody:     lim.MaxBody,
		MaxHeader:   strconv.Itoa(lim.MaxHeader>>10) + "k",
		ReadHeader:  seconds(lim.ReadHeader),
		ReadBody:    seconds(lim.ReadBody),
		Write:       seconds(lim.Write),
		Idle:        seconds(lim.Idle),
	}
	if lim.TooLargePage != nil {
		c.TooLarge = filepath.Join(dir, "errors", "413.html")
	}
	if len(front) > 0 {
		c.Front = front[0]
		if c.Front.Mode != "" && (c.Front.MaxName <= 0 || c.Front.MaxCursor <= 0) {
			return nil, fmt.Errorf("topology: nginx config: the front cache has no bounds on the names and cursors it looks up")
		}
	}
	if os.Geteuid() == 0 {
		if u, err := user.Current(); err == nil {
			c.User = u.Username
			if g, err := user.LookupGroupId(u.Gid); err == nil {
				c.Group = g.Name
			}
		}
	}
	var b bytes.Buffer
	if err := nginxConf.Execute(&b, c); err != nil {
		return nil, fmt.Errorf("topology: nginx config: %w", err)
	}
	return b.Bytes(), nil
}

// failTimeout is nginx's fail_timeout: an instance that refused or failed a
// connection gets no requests for this long, then one that probes it.
const failTimeout = 3 * time.Second

func seconds(d time.Duration) string { return strconv.Itoa(int(d/time.Second)) + "s" }

// writeNginxConfig writes the configuration for instances and the static
// files it serves into the topology's folder and returns the configuration's path.
func (t *topology) writeNginxConfig(instances []*instance) (string, error) {
	front := frontConf{Mode: t.o.FrontCache, Memcached: t.memcachedAddr, Cookie: t.o.SessionCookie, CacheDir: filepath.Join(t.dir, "front-cache"),
		MaxName: t.o.FrontMaxName, MaxCursor: t.o.FrontMaxCursor}
	return writeNginxConfig(t.dir, t.o.Addr, t.o.DataDir, t.o.Limits, t.o.Static, instances, front)
}

func writeNginxConfig(dir, listen, dataDir string, lim Limits, static fs.FS, instances []*instance, front ...frontConf) (string, error) {
	if err := fs.WalkDir(static, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || name == "." {
			return err
		}
		to := filepath.Join(dir, "static", filepath.FromSlash(name))
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := fs.ReadFile(static, name)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	}); err != nil {
		return "", fmt.Errorf("topology: write static files: %w", err)
	}
	if lim.TooLargePage != nil {
		if err := os.MkdirAll(filepath.Join(dir, "errors"), 0o755); err != nil {
			return "", fmt.Errorf("topology: write error pages: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "errors", "413.html"), lim.TooLargePage, 0o644); err != nil {
			return "", fmt.Errorf("topology: write error pages: %w", err)
		}
	}
	text, err := renderNginxConfig(dir, listen, dataDir, lim, instances, front...)
	if err != nil {
		return "", err
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, text, 0o644); err != nil {
		return "", fmt.Errorf("topology: write %s: %w", conf, err)
	}
	return conf, nil
}

// checkNginxConfig runs `nginx -t` on the configuration.
func checkNginxConfig(nginx, dir, conf string) error {
	out, err := exec.Command(nginx, "-t", "-q", "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("topology: nginx -t refused %s: %v\n%s", conf, err, out)
	}
	return nil
}
