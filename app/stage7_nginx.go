package app

import (
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"text/template"
	"time"

	"flickrkillr/templates"
)

// Stage 7: nginx's configuration, generated from a template into the
// topology's folder at every start and checked with `nginx -t` first.
//
//go:embed stage7_nginx.conf.tmpl
var nginxConfText string

var nginxConf = template.Must(template.New("nginx.conf").Parse(nginxConfText))

// nginxConfig is what the template needs. The limits and timeouts are the
// app's own (newServer, limits.go), read here so that they cannot drift.
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
}

// renderNginxConfig is the configuration text for nginx on listen in front
// of instances, with its files under dir.
func renderNginxConfig(dir, listen, dataDir string, instances []*instance) ([]byte, error) {
	srv := newServer("", nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c := nginxConfig{
		Dir: dir, Listen: listen, Instances: instances,
		Static:      filepath.Join(dir, "static"),
		Files:       dataDir,
		FailTimeout: seconds(failTimeout),
		MaxBody:     maxUploadBody, // upload.go's MaxBytesReader
		MaxHeader:   strconv.Itoa(maxHeaderBytes>>10) + "k",
		ReadHeader:  seconds(srv.ReadHeaderTimeout),
		ReadBody:    seconds(srv.ReadTimeout),
		Write:       seconds(srv.WriteTimeout),
		Idle:        seconds(srv.IdleTimeout),
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
		return nil, fmt.Errorf("app: nginx config: %w", err)
	}
	return b.Bytes(), nil
}

// failTimeout is nginx's fail_timeout: an instance that refused or failed a
// connection gets no requests for this long, then one that probes it.
const failTimeout = 3 * time.Second

func seconds(d time.Duration) string { return strconv.Itoa(int(d/time.Second)) + "s" }

// writeNginxConfig writes the configuration and the static files it serves
// into dir and returns the configuration's path.
func writeNginxConfig(dir, listen, dataDir string, instances []*instance) (string, error) {
	static, _ := fs.Sub(templates.Static, "static")
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
		return "", fmt.Errorf("app: write static files: %w", err)
	}
	text, err := renderNginxConfig(dir, listen, dataDir, instances)
	if err != nil {
		return "", err
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, text, 0o644); err != nil {
		return "", fmt.Errorf("app: write %s: %w", conf, err)
	}
	return conf, nil
}

// checkNginxConfig runs `nginx -t` on the configuration.
func checkNginxConfig(nginx, dir, conf string) error {
	out, err := exec.Command(nginx, "-t", "-q", "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("app: nginx -t refused %s: %v\n%s", conf, err, out)
	}
	return nil
}
