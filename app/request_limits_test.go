package app

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/labstack/echo/v4"
	"golang.org/x/sync/semaphore"

	"flickrkillr/app/guard"
)

// Every route but /upload reads a small body and never parses multipart, so
// a 40 MiB "log-in" costs nothing and leaves no temporary file.
func TestBodiesAreCappedBeforeParsing(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where multipart would spill files
	b := ta.browser(t)
	b.signup("tess")

	multipartBody := func(size int) (*bytes.Buffer, string) {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		mw.WriteField("name", "tess")
		fw, _ := mw.CreateFormFile("file", "big.bin")
		fw.Write(bytes.Repeat([]byte("x"), size))
		mw.Close()
		return &body, mw.FormDataContentType()
	}
	for _, path := range []string{"/login", "/signup", "/logout", "/photos/1/comments", "/photos/1/favorite"} {
		t.Run("multipart to "+path, func(t *testing.T) {
			body, ct := multipartBody(4 << 20)
			req, _ := http.NewRequest(http.MethodPost, ta.srv.URL+path, body)
			req.Header.Set("Content-Type", ct)
			mustStatus(t, b.do(req), http.StatusUnsupportedMediaType)
		})
	}
	t.Run("a form over 64 KiB", func(t *testing.T) {
		res := b.post("/login", url.Values{"name": {"tess"}, "password": {strings.Repeat("p", 100<<10)}})
		mustStatus(t, res, http.StatusRequestEntityTooLarge)
	})
	t.Run("a large comment still fits", func(t *testing.T) {
		res := b.post("/photos/999/comments", url.Values{"body": {strings.Repeat("é", 2000)}})
		mustStatus(t, res, http.StatusNotFound) // read in full and judged: no such photo
	})
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Fatalf("%d temporary files left behind, want none", len(entries))
	}
}

// Bytes that no name, tag or text can hold are a 4xx at the edge: 404 in a
// route parameter, 422 with the message in a form. Never a 500.
func TestBadBytesAreRefusedAtTheEdge(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	b := ta.browser(t)
	b.signup("ivan")
	res := b.upload(map[string]string{"title": "Pier"}, "pier.jpg", testJPEG(t, 64, 64))
	mustStatus(t, res, http.StatusSeeOther)
	photo := res.Header.Get("Location")

	for _, path := range []string{"/users/iv%00an", "/users/%ff%fe", "/tags/sea%00", "/tags/%c3%28", "/users/a%1bb",
		"/photos/1%00", "/static/%ff.css", "/static/style.css%00"} {
		t.Run("GET "+path, func(t *testing.T) {
			mustStatus(t, b.get(path), http.StatusNotFound)
		})
	}
	for _, tt := range []struct {
		name, path string
		form       url.Values
		want       string
	}{
		{"NUL in a log-in name", "/login", url.Values{"name": {"iv\x00an"}, "password": {"whatever1"}}, "control characters"},
		{"invalid UTF-8 in a log-in name", "/login", url.Values{"name": {"iv\xffan"}, "password": {"whatever1"}}, "valid UTF-8"},
		{"NUL in a display name", "/signup", url.Values{"name": {"nul_user"}, "display_name": {"Ni\x00ll"}, "password": {"long enough"}}, "control characters"},
		{"a direction override in a display name", "/signup", url.Values{"name": {"rlo_user"}, "display_name": {"abc\u202Egpj.exe"}, "password": {"long enough"}}, "invisible characters"},
		{"a zero-width space in a display name", "/signup", url.Values{"name": {"zw_user"}, "display_name": {"iv\u200Ban"}, "password": {"long enough"}}, "invisible characters"},
		{"invalid UTF-8 in a password", "/signup", url.Values{"name": {"pw_user"}, "password": {"long \xff enough"}}, "valid UTF-8"},
		{"NUL in a comment", photo + "/comments", url.Values{"body": {"nice\x00"}}, "control characters"},
		{"invalid UTF-8 in a comment", photo + "/comments", url.Values{"body": {"caf\xe9"}}, "valid UTF-8"},
		{"an escape sequence in a comment", photo + "/comments", url.Values{"body": {"\x1b[31mred"}}, "control characters"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := b.post(tt.path, tt.form)
			mustStatus(t, res, http.StatusUnprocessableEntity)
			mustContain(t, res, tt.want)
		})
	}
	t.Run("NUL in an upload's title and description", func(t *testing.T) {
		res := b.upload(map[string]string{"title": "a\x00b", "description": "c\xffd"}, "x.jpg", testJPEG(t, 8, 8))
		mustStatus(t, res, http.StatusUnprocessableEntity)
		mustContain(t, res, "control characters", "valid UTF-8")
	})
	t.Run("newlines and tabs in a comment are fine", func(t *testing.T) {
		mustStatus(t, b.post(photo+"/comments", url.Values{"body": {"one\n\ttwo\r\nthree"}}), http.StatusSeeOther)
	})
}

// What the forms miss, PostgreSQL refuses with a data error (SQLSTATE class
// 22); that is the client's fault and a 400, not a 500.
func TestDataErrorsFromTheDatabaseAre400(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	var n int
	err := ta.db.Raw("SELECT length(convert_from('\\xff'::bytea, 'UTF8'))").Scan(&n).Error
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || !strings.HasPrefix(pgErr.Code, "22") {
		t.Fatalf("got %v, want a class-22 error from PostgreSQL", err)
	}
	rec := httptest.NewRecorder()
	c := ta.echo.NewContext(httptest.NewRequest(http.MethodGet, "/users/x", nil), rec)
	ta.httpError(fmt.Errorf("models: user: %w", err), c)
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", rec.Code)
	}
}

// A request whose headers pass 64 KiB is refused by net/http with 431,
// before the app sees it; a large but reasonable one is served.
func TestHeadersAreCappedAt64KiB(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	srv := newServer("127.0.0.1:0", ta.App, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	for _, tt := range []struct {
		name string
		size int
		want int
	}{
		{"a 16 KiB cookie", 16 << 10, http.StatusOK},
		{"a 100 KiB header", 100 << 10, http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/healthz", nil)
			req.Header.Set("X-Padding", strings.Repeat("a", tt.size))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.want)
			}
		})
	}
}

// /static/ serves its files and nothing else: no listing, 404 for anything odd.
func TestStaticServesFilesOnly(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	b := ta.browser(t)
	res := b.get("/static/style.css")
	mustStatus(t, res, http.StatusOK)
	for _, path := range []string{"/static/", "/static", "/static/../go.mod", "/static/./style.css", "/static/missing.css", "/static//style.css"} {
		t.Run(path, func(t *testing.T) {
			if res := b.get(path); res.Status != http.StatusNotFound {
				t.Fatalf("status %d, want 404; body:\n%.500s", res.Status, res.Body)
			}
		})
	}
}

// /readyz is 503 while the server drains, then never 200 again.
func TestReadyzAnswers503WhileDraining(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	b := ta.browser(t)
	mustStatus(t, b.get("/readyz"), http.StatusOK)
	ta.Drain()
	res := b.get("/readyz")
	mustStatus(t, res, http.StatusServiceUnavailable)
	mustContain(t, res, `"status":"draining"`)
	mustStatus(t, b.get("/healthz"), http.StatusOK) // alive, just not taking traffic
}

// The request deadline reaches the handlers: a request that outlives it is
// a 503 page with Retry-After, not a 500.
func TestRequestsPastTheDeadlineAre503(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	e := ta.echo
	e.GET("/test-slow", func(c echo.Context) error {
		<-c.Request().Context().Done()
		return fmt.Errorf("app: slow thing: %w", c.Request().Context().Err())
	}, ta.requestDeadline)
	ta.lim.reqTimeout = 50e6 // 50 ms
	res := ta.browser(t).get("/test-slow")
	mustStatus(t, res, http.StatusServiceUnavailable)
	if res.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After on the 503")
	}
}

// Uploads beyond the decode budget wait briefly, then get a quick 503 with
// Retry-After; once the budget frees they go through.
func TestUploadsBeyondTheDecodeBudgetGet503(t *testing.T) {
	ta := newTestApp(t, inlineUploadStage(t))
	b := ta.browser(t)
	b.signup("uma")
	ta.lim.decode = semaphore.NewWeighted(64 << 20)
	ta.lim.decodeWait = 10 * time.Millisecond
	if !ta.lim.decode.TryAcquire(60 << 20) { // other uploads are decoding
		t.Fatal("could not take the budget")
	}
	res := b.upload(map[string]string{"title": "Busy"}, "busy.jpg", testJPEG(t, 64, 64))
	mustStatus(t, res, http.StatusServiceUnavailable)
	if res.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After on the 503")
	}
	mustContain(t, res, "processing many photos")
	if n := ta.countRows(t, "photos"); n != 0 {
		t.Fatalf("%d photos stored", n)
	}
	ta.lim.decode.Release(60 << 20)
	mustStatus(t, b.upload(map[string]string{"title": "Calm"}, "calm.jpg", testJPEG(t, 64, 64)), http.StatusSeeOther)
}

// Past the in-flight limit a request waits its turn, and its deadline
// starts only then: held in line longer than the deadline, it still
// answers 200. The health checks do not wait in line.
func TestRequestsPastTheInFlightLimitWaitTheirTurn(t *testing.T) {
	if _, ok := LookupStage(1); !ok {
		t.Skip("this build has no stage 1 (stage 0 runs each request as its own process)")
	}
	ta := newTestApp(t, 1)
	ta.lim.admission = guard.NewGate(1, 10, time.Minute)
	ta.lim.reqTimeout = 200 * time.Millisecond
	release, ok := ta.lim.admission.Enter(context.Background()) // the one turn is taken
	if !ok {
		t.Fatal("could not take the only turn")
	}
	answered := make(chan response, 1)
	b := ta.browser(t)
	go func() { answered <- b.get("/") }()
	mustStatus(t, ta.browser(t).get("/readyz"), http.StatusOK)
	time.Sleep(4 * ta.lim.reqTimeout) // in line for longer than its deadline
	select {
	case res := <-answered:
		t.Fatalf("a request answered %d while the only turn was taken", res.Status)
	default:
	}
	release()
	mustStatus(t, <-answered, http.StatusOK)
}

// trickle opens a connection that sends a comment form's headers, with a
// 64 KiB Content-Length, and a few bytes of its body, then nothing more
// (a byte a second would be the same to the server): issue 31's slow body.
// cookie, when not empty, is the session cookie it carries.
func trickle(t *testing.T, base, cookie string) net.Conn {
	t.Helper()
	u, _ := url.Parse(base)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	hdr := "POST /photos/1/comments HTTP/1.1\r\nHost: " + u.Host + "\r\n" +
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 65536\r\n"
	if cookie != "" {
		hdr += "Cookie: " + sessionCookieName + "=" + cookie + "\r\n"
	}
	if _, err := io.WriteString(conn, hdr+"\r\nbody=sl"); err != nil {
		t.Fatal(err)
	}
	return conn
}

// A body being trickled in holds no turn of the admission line: with every
// turn's worth of slow comment forms open (logged in, so that they get as
// far as a form can), a page is still served at once, where it used to wait
// in line behind them and be refused (issue 31). A slow body ends in a 408
// after bodyWait, and an anonymous form that needs a log-in is refused
// before its body is read.
func TestSlowBodiesHoldNoTurn(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	const turns = 2
	ta.lim.admission = guard.NewGate(turns, 10, 300*time.Millisecond) // a short line: a held turn shows as a 503
	ta.lim.bodyWait = 2 * time.Second
	writer := ta.browser(t)
	writer.signup("slowpoke")
	cookie := writer.cookie(sessionCookieName)
	if cookie == "" {
		t.Fatal("no session cookie after sign-up")
	}

	var slow []net.Conn
	for range turns {
		slow = append(slow, trickle(t, ta.srv.URL, cookie))
	}
	time.Sleep(200 * time.Millisecond) // the server has their headers and waits for their bodies
	mustStatus(t, ta.browser(t).get("/"), http.StatusOK)

	// The slow bodies are cut off after bodyWait: a 408, connection closed.
	for _, conn := range slow {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("slow body: %v", err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("slow body: status %d, want 408", res.StatusCode)
		}
	}

	// Anonymous: refused on its headers, its body never awaited.
	conn := trickle(t, ta.srv.URL, "")
	conn.SetReadDeadline(time.Now().Add(time.Second)) // well before bodyWait
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("anonymous slow body: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous slow body: status %d, want 401", res.StatusCode)
	}
}
