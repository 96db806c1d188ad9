package app

import (
	"bytes"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// staticFiles serves the embedded files under /static/ (the stylesheet, the
// placeholder images) with a modest cache lifetime. Only files: a
// directory, an invalid path (not UTF-8, "..", control characters) or a
// missing file is a 404, and nothing is listed.
//
// It answers a plain GET or HEAD itself, in one Write from this frame, and
// hands anything conditional or partial (Range, If-*) to http.ServeContent,
// which answers it as http.ServeFileFS did. Why not ServeFileFS for all: a
// file over net/http's 2 KB response buffer is written out from inside the
// handler, where net/http's header writer (a 2.8 KB frame, and 0.9 KB under
// it) runs below the whole middleware chain. Through StripPrefix,
// ServeFileFS, serveFile, serveContent and io.CopyN that was 9 KB deep: every
// connection whose one request was the stylesheet kept a 16 KB goroutine
// stack until the collector's next cycles halved it (the C10K crowd, see
// docs/concurrency.md). From here, with the middleware's frames slimmed,
// the deepest point is about 6.9 KB, under the 7.3 KB an 8 KB stack has
// above the runtime's guard
// (TestIdleConnectionAfterTheStylesheetKeepsAnEightKBStack).
func staticFiles(fsys fs.FS) echo.HandlerFunc {
	files := map[string]*staticFile{}
	// An embedded FS cannot fail to walk or read; were it to, the file
	// missing is a 404, as a missing file was.
	_ = fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if b, err := fs.ReadFile(fsys, name); err == nil {
			files[name] = newStaticFile(name, b)
		}
		return nil
	})
	return func(c echo.Context) error {
		// Only the write below runs deep: the lookup returns first, so that
		// its locals are not on the stack under it.
		if body := headStatic(files, c.Response(), c.Request()); body != nil {
			c.Response().Write(body)
		}
		return nil
	}
}

// headStatic answers a request for a file up to its body, which it returns
// for the caller to write; or answers it in full (a 404, a HEAD, a range or
// precondition through http.ServeContent) and returns nil.
//
//go:noinline
func headStatic(files map[string]*staticFile, w http.ResponseWriter, r *http.Request) []byte {
	name, ok := strings.CutPrefix(r.URL.Path, "/static/")
	if !ok || !utf8.ValidString(name) || textProblem(name, false) != "" || !fs.ValidPath(name) || path.Clean(name) != name {
		http.NotFound(w, r)
		return nil
	}
	f := files[name]
	if f == nil {
		http.NotFound(w, r)
		return nil
	}
	w.Header().Set("Cache-Control", "public, max-age=3600")
	if conditional(r) {
		// Embedded files have no modification time: no Last-Modified, as
		// with ServeFileFS.
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.body))
		return nil
	}
	f.writeHeader(w)
	if r.Method == http.MethodHead {
		return nil
	}
	return f.body
}

// staticFile is one embedded file and what http.ServeContent would say of
// it: its type (by extension, else sniffed) and its length.
type staticFile struct {
	body   []byte
	ctype  string
	length string
}

func newStaticFile(name string, b []byte) *staticFile {
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = http.DetectContentType(b)
	}
	return &staticFile{body: b, ctype: ctype, length: strconv.Itoa(len(b))}
}

// writeHeader answers a plain GET or HEAD with the headers
// http.ServeContent sets for a whole file.
func (f *staticFile) writeHeader(w http.ResponseWriter) {
	h := w.Header()
	if _, ok := h["Content-Type"]; !ok {
		h.Set("Content-Type", f.ctype)
	}
	h.Set("Accept-Ranges", "bytes")
	if h.Get("Content-Encoding") == "" {
		h.Set("Content-Length", f.length)
	}
	w.WriteHeader(http.StatusOK)
}

// conditional says the request needs http.ServeContent: a range, or a
// precondition it checks.
func conditional(r *http.Request) bool {
	for _, k := range []string{"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"} {
		if r.Header.Get(k) != "" {
			return true
		}
	}
	return false
}
