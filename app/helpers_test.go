package app

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"flickrkillr/models"
	"flickrkillr/models/modeltest"
)

// testApp is an App on a fresh database, served by httptest through the real router.
type testApp struct {
	*App
	srv     *httptest.Server
	db      *gorm.DB
	dsn     string
	queries *atomic.Int64 // SQL statements sent so far
	deps    *Deps
}

// queryCounter counts the statements pgx sends.
type queryCounter struct{ n *atomic.Int64 }

func (q queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.n.Add(1)
	return ctx
}
func (q queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// newTestApp builds the App of a stage on a new database at that stage's schema.
func newTestApp(t *testing.T, stage int) *testApp {
	t.Helper()
	need, err := SchemaFor(stage)
	if err != nil {
		t.Fatal(err)
	}
	return newTestAppOn(t, stage, modeltest.NewDB(t, need), t.TempDir(), testRedisURL(t))
}

// newTestAppOn builds an App on an existing database, data dir and Redis.
func newTestAppOn(t *testing.T, stage int, dsn, dataDir, redisURL string) *testApp {
	t.Helper()
	return newTestAppWith(t, Config{DatabaseURL: dsn, RedisURL: redisURL, DataDir: dataDir, Stage: stage})
}

// newTestAppWith builds the App of cfg (say, a stage with Indexes). Where
// uploads are queued (stage 6) and cfg runs no workers, an upload runs the
// queued jobs before it answers, so that every
// test sees an upload's images as the earlier stages made them.
func newTestAppWith(t *testing.T, cfg Config) *testApp {
	t.Helper()
	return newTestAppServing(t, cfg, true)
}

// testAppConfigs complete a test App's configuration with what a stage
// needs beside its database (stage 10: its shards), each added by the
// stage's test file, so that a tag without the stage has none.
var testAppConfigs []func(t *testing.T, cfg *Config)

// newTestAppServing is newTestAppWith; runQueued false leaves queued jobs
// in the queue (the stage 6 tests run them).
func newTestAppServing(t *testing.T, cfg Config, runQueued bool) *testApp {
	t.Helper()
	for _, prepare := range testAppConfigs {
		prepare(t, &cfg)
	}
	n := &atomic.Int64{}
	db, err := models.Open(context.Background(), cfg.DatabaseURL, models.Options{Tracer: queryCounter{n}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close(db) })
	d := &Deps{DB: db, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if testing.Verbose() {
		d.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	a, err := New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = a
	if q, ok := a.uploads.(interface {
		RunQueued(context.Context) (int, error)
		Workers() int
	}); ok && runQueued && q.Workers() == 0 {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a.ServeHTTP(w, r)
			if r.Method == http.MethodPost && r.URL.Path == "/upload" {
				if _, err := q.RunQueued(r.Context()); err != nil {
					t.Errorf("run queued jobs: %v", err)
				}
			}
		})
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close(); d.Close() })
	return &testApp{App: a, srv: srv, db: db, dsn: cfg.DatabaseURL, queries: n, deps: d}
}

// inlineUploadStage is the highest stage of this build whose uploads make
// their images in the request (from stage 6 on, workers make them).
func inlineUploadStage(t *testing.T) int {
	t.Helper()
	for n := DefaultStage(); n >= 0; n-- {
		if s, err := resolve(n); err == nil && s.Uploads == nil {
			return n
		}
	}
	t.Fatal("no stage makes images in the request")
	return 0
}

// testRedisURL is REDIS_URL when the suite runs against a real Redis (the
// database is flushed for each test; that pass runs with -p 1), else empty:
// the App starts its embedded miniredis.
func testRedisURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("REDIS_URL")
	if u == "" {
		return ""
	}
	opt, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("REDIS_URL: %v", err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatalf("flush Redis at %s: %v", u, err)
	}
	return u
}

// browser is a client with its own cookie jar that does not follow redirects,
// so tests see the 303s.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (ta *testApp) browser(t *testing.T) *browser {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: ta.srv.URL, c: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// response is a read response: status, headers and body.
type response struct {
	Status int
	Header http.Header
	Body   string
}

func (b *browser) do(req *http.Request) response {
	b.t.Helper()
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return response{res.StatusCode, res.Header, string(body)}
}

func (b *browser) get(path string) response {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.base+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) response {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// upload posts the upload form with a file named name holding data.
func (b *browser) upload(fields map[string]string, name string, data []byte) response {
	b.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	if data != nil {
		fw, _ := mw.CreateFormFile("image", name)
		fw.Write(data)
	}
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, b.base+"/upload", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return b.do(req)
}

// cookie is the current value of the session cookie.
func (b *browser) cookie(name string) string {
	u, _ := url.Parse(b.base)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// signup creates an account and leaves the browser logged in.
func (b *browser) signup(name string) {
	b.t.Helper()
	res := b.post("/signup", url.Values{"name": {name}, "password": {"correct horse battery"}})
	if res.Status != http.StatusSeeOther {
		b.t.Fatalf("signup %s: status %d, want 303\n%s", name, res.Status, res.Body)
	}
}

func mustStatus(t *testing.T, res response, want int) {
	t.Helper()
	if res.Status != want {
		t.Fatalf("status %d, want %d; body:\n%.2000s", res.Status, want, res.Body)
	}
}

func mustContain(t *testing.T, res response, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(res.Body, w) {
			t.Fatalf("body does not contain %q:\n%.3000s", w, res.Body)
		}
	}
}

// testJPEG is a real w×h JPEG.
func testJPEG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 128, 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testPNG is a real w×h PNG.
func testPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// hugePNGHeader is a PNG whose header claims w×h pixels, with no pixel data:
// the decoder would allocate for the claim, which is why it must be refused
// from the header alone.
func hugePNGHeader(w, h uint32) []byte {
	var buf bytes.Buffer
	buf.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	binary.Write(&buf, binary.BigEndian, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	buf.Write(chunk)
	binary.Write(&buf, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return buf.Bytes()
}

// countRows counts rows of a table in the test database.
func (ta *testApp) countRows(t *testing.T, table string) int64 {
	t.Helper()
	var n int64
	if err := ta.db.Raw("SELECT count(*) FROM " + table).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// countFiles counts the files under the App's data directory.
func (ta *testApp) countFiles(t *testing.T) int {
	t.Helper()
	n := 0
	entries, _ := os.ReadDir(ta.cfg.DataDir)
	for _, e := range entries {
		sub, _ := os.ReadDir(ta.cfg.DataDir + "/" + e.Name())
		n += len(sub)
	}
	return n
}

// files lists the regular files under dir, but for the address note of a
// serve process's embedded miniredis (embeddedRedisFile), which is not a
// photo's and goes with its process.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var list []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && path != filepath.Join(dir, embeddedRedisFile) {
			list = append(list, path)
		}
		return err
	})
	return list
}

// ready says whether the server at addr answers /readyz with 200.
func ready(addr string) bool {
	c := &http.Client{Timeout: time.Second}
	res, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// mustFreeAddr is a loopback address with a port free right now.
func mustFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitFor polls ok every 100 ms until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
