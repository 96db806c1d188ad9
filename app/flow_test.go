package app

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"flickrkillr/models"
)

var photoLinkRE = regexp.MustCompile(`^/photos/(\d+)$`)

// TestPhotoLifecycle walks the whole app as a person would, at every stage
// of this build: the pages must behave the same whichever stage serves them.
func TestPhotoLifecycle(t *testing.T) {
	for _, s := range Stages() {
		t.Run(fmt.Sprintf("stage %d %s", s.Number, s.Name), func(t *testing.T) {
			ta := newTestApp(t, s.Number)
			alice := ta.browser(t)

			alice.signup("alice")
			res := alice.get("/")
			mustStatus(t, res, http.StatusOK)
			mustContain(t, res, "Welcome to FlickrKillr", "Log out", fmt.Sprintf("Stage <strong>%d", s.Number))

			res = alice.upload(map[string]string{"title": "Harbor at dusk", "description": "Boats.\n\nAnd gulls.", "tags": "Sea, harbor dusk"},
				"harbor.jpg", testJPEG(t, 640, 480))
			mustStatus(t, res, http.StatusSeeOther)
			m := photoLinkRE.FindStringSubmatch(res.Header.Get("Location"))
			if m == nil {
				t.Fatalf("upload redirected to %q, want /photos/<id>", res.Header.Get("Location"))
			}
			photo := res.Header.Get("Location")
			// The image's URL: the app's route, or (stage 7) nginx's file by key.
			id, _ := strconv.ParseInt(m[1], 10, 64)
			key, err := ta.gallery.ImageKey(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}

			res = alice.get(photo)
			mustStatus(t, res, http.StatusOK)
			mustContain(t, res, "Harbor at dusk", "Your photo is up.", `href="/tags/sea"`, `href="/tags/harbor"`,
				`href="/tags/dusk"`, `src="`+ta.front.ImageURL(id, key, models.Original)+`"`, "<p>And gulls.</p>", "0 favorites", "Delete this photo")

			img := alice.get(photo + "/image")
			mustStatus(t, img, http.StatusOK)
			if ct := img.Header.Get("Content-Type"); ct != "image/jpeg" || img.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Fatalf("image served as %q (nosniff %q)", ct, img.Header.Get("X-Content-Type-Options"))
			}
			thumb := alice.get(photo + "/thumb")
			mustStatus(t, thumb, http.StatusOK)
			if len(thumb.Body) == 0 || len(thumb.Body) >= len(img.Body) {
				t.Fatalf("thumbnail is %d bytes, image %d", len(thumb.Body), len(img.Body))
			}

			for _, page := range []string{"/", "/users/alice", "/tags/harbor"} {
				res = alice.get(page)
				mustStatus(t, res, http.StatusOK)
				mustContain(t, res, `href="`+photo+`"`)
			}

			res = alice.post(photo+"/favorite", url.Values{"action": {"add"}})
			mustStatus(t, res, http.StatusSeeOther)
			mustContain(t, alice.get(photo), "1 favorite", "Unfavorite", "Added to your favorites.")

			res = alice.post(photo+"/comments", url.Values{"body": {"Lovely light <b>here</b>"}})
			mustStatus(t, res, http.StatusSeeOther)
			mustContain(t, alice.get(photo), "Lovely light &lt;b&gt;here&lt;/b&gt;", "1 comment")

			res = alice.post(photo+"/favorite", url.Values{"action": {"remove"}})
			mustStatus(t, res, http.StatusSeeOther)
			mustContain(t, alice.get(photo), "0 favorites", "☆ Favorite")

			filesBefore := ta.countFiles(t)
			res = alice.post(photo+"/delete", nil)
			mustStatus(t, res, http.StatusSeeOther)
			mustStatus(t, alice.get(photo), http.StatusNotFound)
			mustStatus(t, alice.get(photo+"/image"), http.StatusNotFound)
			if got := ta.countFiles(t); got != filesBefore-2 {
				t.Fatalf("%d image files after delete, want %d", got, filesBefore-2)
			}
			if strings.Contains(alice.get("/tags/harbor").Body, `href="`+photo+`"`) || strings.Contains(alice.get("/").Body, `href="`+photo+`"`) {
				t.Fatal("a deleted photo is still listed")
			}
			if n := ta.countRows(t, "comments"); n != 0 {
				t.Fatalf("%d comments left after the photo was deleted", n)
			}
		})
	}
}

func TestSessionTokenChangesAtLoginAndLogout(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	b := ta.browser(t)
	b.signup("carol")
	b.post("/logout", nil)
	anon := b.cookie("flickrkillr_session") // holds the "logged out" flash

	res := b.post("/login", url.Values{"name": {"carol"}, "password": {"correct horse battery"}})
	mustStatus(t, res, http.StatusSeeOther)
	in := b.cookie("flickrkillr_session")
	if in == "" || in == anon {
		t.Fatalf("session token at log-in %q, before %q: want a new one", in, anon)
	}
	mustContain(t, b.get("/"), "Welcome back", "Log out")

	mustStatus(t, b.post("/logout", nil), http.StatusSeeOther)
	out := b.cookie("flickrkillr_session")
	if out == in {
		t.Fatal("session token unchanged at log-out")
	}
	res = b.get("/")
	mustContain(t, res, "You are logged out.", "Log in")
	// The old token no longer logs anyone in.
	stale := ta.browser(t)
	stale.c.Jar.SetCookies(mustURL(ta.srv.URL), []*http.Cookie{{Name: "flickrkillr_session", Value: in}})
	if strings.Contains(stale.get("/").Body, "Log out") {
		t.Fatal("the pre-logout token is still logged in")
	}
}

func TestLoginRejections(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	ta.browser(t).signup("dave")
	tests := []struct {
		name     string
		form     url.Values
		wantText string
	}{
		{"wrong password", url.Values{"name": {"dave"}, "password": {"incorrect password"}}, "do not match"},
		{"unknown user", url.Values{"name": {"nobody"}, "password": {"correct horse battery"}}, "do not match"},
		{"empty name", url.Values{"name": {""}, "password": {"x"}}, "Enter your user name"},
		{"password over 72 bytes", url.Values{"name": {"dave"}, "password": {strings.Repeat("p", 73)}}, "at most 72 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := ta.browser(t)
			res := b.post("/login", tt.form)
			mustStatus(t, res, http.StatusUnprocessableEntity)
			mustContain(t, res, tt.wantText)
			if b.cookie("flickrkillr_session") != "" {
				t.Fatal("a failed log-in set a session")
			}
		})
	}
}

func TestSignupRejections(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	ta.browser(t).signup("erin")
	tests := []struct {
		name     string
		form     url.Values
		wantText string
	}{
		{"name taken", url.Values{"name": {"erin"}, "password": {"long enough pw"}}, "That name is taken"},
		{"name with spaces", url.Values{"name": {"e r"}, "password": {"long enough pw"}}, "3 to 30 characters"},
		{"short password", url.Values{"name": {"frank"}, "password": {"short"}}, "at least 8"},
		{"password over 72 bytes", url.Values{"name": {"frank"}, "password": {strings.Repeat("é", 37)}}, "at most 72 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := ta.browser(t).post("/signup", tt.form)
			mustStatus(t, res, http.StatusUnprocessableEntity)
			mustContain(t, res, tt.wantText)
		})
	}
	if n := ta.countRows(t, "users"); n != 1 {
		t.Fatalf("%d users, want 1: a rejected sign-up stored a user", n)
	}
}

func TestOnlyTheOwnerDeletes(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	owner, other := ta.browser(t), ta.browser(t)
	owner.signup("owner")
	other.signup("other")
	res := owner.upload(map[string]string{"title": "Mine"}, "a.png", testPNG(t, 50, 40))
	mustStatus(t, res, http.StatusSeeOther)
	photo := res.Header.Get("Location")

	t.Run("not the owner", func(t *testing.T) {
		res := other.post(photo+"/delete", nil)
		mustStatus(t, res, http.StatusForbidden)
		mustStatus(t, owner.get(photo), http.StatusOK)
		if strings.Contains(other.get(photo).Body, "Delete this photo") {
			t.Fatal("the delete button is shown to someone else")
		}
	})
	t.Run("logged out", func(t *testing.T) {
		mustStatus(t, ta.browser(t).post(photo+"/delete", nil), http.StatusUnauthorized)
		mustStatus(t, owner.get(photo), http.StatusOK)
	})
	t.Run("missing photo", func(t *testing.T) {
		mustStatus(t, owner.post("/photos/999999/delete", nil), http.StatusNotFound)
	})
	t.Run("non-numeric id", func(t *testing.T) {
		mustStatus(t, owner.post("/photos/abc/delete", nil), http.StatusNotFound)
	})
}

func TestCrossSitePostsAreRefused(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	b := ta.browser(t)
	b.signup("gina")
	res := b.upload(map[string]string{"title": "Target"}, "a.png", testPNG(t, 20, 20))
	photo := res.Header.Get("Location")

	tests := []struct {
		name   string
		header string
		value  string
	}{
		{"cross-site fetch metadata", "Sec-Fetch-Site", "cross-site"},
		{"foreign origin", "Origin", "https://evil.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, ta.srv.URL+photo+"/comments", strings.NewReader("body=pwned"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set(tt.header, tt.value)
			mustStatus(t, b.do(req), http.StatusForbidden)
		})
	}
	if n := ta.countRows(t, "comments"); n != 0 {
		t.Fatalf("a cross-site post stored %d comments", n)
	}
	req, _ := http.NewRequest(http.MethodPost, ta.srv.URL+photo+"/comments", strings.NewReader("body=fine"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	mustStatus(t, b.do(req), http.StatusSeeOther)
}

func TestBadUploadsAreRejectedAndStoreNothing(t *testing.T) {
	// The parts of a multipart form over 1 MiB wait in temporary files:
	// those must go too.
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ta := newTestApp(t, DefaultStage())
	b := ta.browser(t)
	b.signup("hank")
	big := make([]byte, 11<<20)
	copy(big, testJPEG(t, 10, 10))
	// One byte over the photo limit: within the body cap (which leaves room
	// for the form's text), so only the per-file check can refuse it.
	justOver := make([]byte, models.MaxUploadBytes+1)
	copy(justOver, testJPEG(t, 10, 10))
	tests := []struct {
		name     string
		fields   map[string]string
		file     string
		data     []byte
		status   int
		wantText string
	}{
		{"no file", map[string]string{"title": "x"}, "", nil, 422, "Choose a JPEG or PNG file"},
		{"a text file named .jpg", map[string]string{"title": "x"}, "evil.jpg", []byte("#!/bin/sh\necho not an image\n"), 422, "not a JPEG or PNG"},
		{"a truncated JPEG", map[string]string{"title": "x"}, "cut.jpg", testJPEG(t, 64, 64)[:200], 422, "could not be read"},
		{"too many pixels", map[string]string{"title": "x"}, "huge.png", hugePNGHeader(100_000, 100_000), 422, "megapixels"},
		{"over the size cap", map[string]string{"title": "x"}, "big.jpg", big, 413, "larger than 10 MB"},
		{"the limit plus one byte", map[string]string{"title": "x"}, "over.jpg", justOver, 413, "larger than 10 MB"},
		{"no title", map[string]string{"title": "  "}, "ok.jpg", testJPEG(t, 20, 20), 422, "Give the photo a title"},
		{"a bad tag", map[string]string{"title": "x", "tags": "ok no/slash"}, "ok.jpg", testJPEG(t, 20, 20), 422, "Tags use letters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := b.upload(tt.fields, tt.file, tt.data)
			mustStatus(t, res, tt.status)
			mustContain(t, res, tt.wantText)
		})
	}
	if n := ta.countRows(t, "photos"); n != 0 {
		t.Fatalf("%d photos stored by rejected uploads", n)
	}
	if n := ta.countFiles(t); n != 0 {
		t.Fatalf("%d files stored by rejected uploads", n)
	}
	if left := files(t, tmp); len(left) != 0 {
		t.Fatalf("rejected uploads left temporary files: %v", left)
	}
	t.Run("the form says the limit the handler holds files to", func(t *testing.T) {
		mustContain(t, b.get("/upload"), "up to 10 MB")
	})
	t.Run("malformed multipart", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, ta.srv.URL+"/upload", strings.NewReader("--x\r\nnot really"))
		req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
		mustStatus(t, b.do(req), http.StatusBadRequest)
	})
}

func TestPagesForMissingThings(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	b := ta.browser(t)
	tests := []struct {
		name   string
		path   string
		status int
	}{
		{"missing photo", "/photos/424242", 404},
		{"non-numeric id", "/photos/abc", 404},
		{"missing user", "/users/nobody", 404},
		{"missing tag", "/tags/nothing", 404},
		{"unknown route", "/nope", 404},
		{"broken cursor", "/users/nobody?before=x", 400},
		{"upload needs a login", "/upload", 303},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := b.get(tt.path)
			mustStatus(t, res, tt.status)
			if tt.status >= 400 {
				mustContain(t, res, "<html", "Back to the recent photos")
			}
		})
	}
}

func TestGetNeverChangesState(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	b := ta.browser(t)
	b.signup("ivy")
	res := b.upload(map[string]string{"title": "x"}, "a.png", testPNG(t, 20, 20))
	photo := res.Header.Get("Location")
	for _, path := range []string{photo + "/delete", photo + "/favorite", photo + "/comments", "/logout"} {
		if got := b.get(path).Status; got != http.StatusMethodNotAllowed && got != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 405 or 404", path, got)
		}
	}
	mustStatus(t, b.get(photo), http.StatusOK)
	mustContain(t, b.get("/"), "Log out")
}

func TestHeadAnswersLikeGet(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	b := ta.browser(t)
	b.signup("hal")
	photo := b.upload(map[string]string{"title": "x"}, "a.png", testPNG(t, 20, 20)).Header.Get("Location")
	for _, path := range []string{"/", "/static/style.css", photo, photo + "/thumb", "/users/hal", "/upload", "/healthz", "/nope"} {
		get := b.get(path)
		req, _ := http.NewRequest(http.MethodHead, b.base+path, nil)
		head := b.do(req)
		if head.Status != get.Status || head.Body != "" || head.Header.Get("Content-Type") != get.Header.Get("Content-Type") {
			t.Errorf("HEAD %s: status %d, %d body bytes, %q; want GET's %d, none, %q", path,
				head.Status, len(head.Body), head.Header.Get("Content-Type"), get.Status, get.Header.Get("Content-Type"))
		}
	}
}

func TestHealthz(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	res := ta.browser(t).get("/healthz?data=1")
	mustStatus(t, res, http.StatusOK)
	mustContain(t, res, `"status":"ok"`, fmt.Sprintf(`"stage":%d`, DefaultStage()), `"pid":`, `"rows":`)
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
