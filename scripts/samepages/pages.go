package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// page is what one request answered, as compared.
type page struct {
	key         string // viewer/page/round
	url         string
	status      int
	contentType string
	location    string // a redirect's target
	body        string // masked
}

// The viewers: an anonymous visitor, user1 (the owner of the photo shown)
// and user2 (another user: the photo page differs for its owner). Every
// seeded user's password is "flickrkillr".
var viewers = []string{"anonymous", "user1", "user2"}

// paths is the fixed list of pages; "{photo}" and "{tag}" are found on the
// server (the first photo on user1's page, the first tag on that photo's
// page). app/routes.go has no popular or explore page today, so none is
// fetched.
var paths = []struct{ name, path string }{
	{"home", "/"},
	{"photo", "{photo}"},
	{"user", "/users/user1"},
	{"tag", "{tag}"},
	{"user-next", "/users/user1?before={photoid}"},
	{"upload", "/upload"},
	{"login", "/login"},
	{"signup", "/signup"},
	{"not-found", "/photos/999999999"},
	{"no-user", "/users/nosuchuser"},
	{"bad-cursor", "/users/user1?before=abc"},
	{"bad-id", "/photos/abc"},
}

// masks are the parts of a body that differ between two runs of the same
// build, replaced before comparing. Each entry says why it differs by
// nature. Today the list is empty: HEAD against HEAD at every stage gives
// byte-equal bodies with nothing masked. The app has no CSRF token in its
// forms (it checks Sec-Fetch-Site/Origin, app/middleware.go), no nonce
// (its CSP allows 'self' only), and the only dates on the pages are the
// day a row was created ({{date}}: "2 Jan 2006"), which the seeded rows fix
// and every server reads from the same copy of the seeded database.
// Server-Timing, Set-Cookie, Date and X-Front-Cache are headers, which are
// not compared (only the status, Content-Type and Location are).
var masks []struct {
	re     *regexp.Regexp
	repl   string
	reason string
}

func mask(body string) string {
	for _, m := range masks {
		body = m.re.ReplaceAllString(body, m.repl)
	}
	return body
}

var (
	photoLink = regexp.MustCompile(`href="(/photos/([0-9]+))"`)
	tagLink   = regexp.MustCompile(`href="(/tags/[^"]+)"`)
	// hidden form fields (a CSRF token, should one appear) are sent back
	// with the log-in.
	hiddenInput = regexp.MustCompile(`<input[^>]*type="hidden"[^>]*>`)
	attr        = regexp.MustCompile(`(name|value)="([^"]*)"`)
)

// fetchAll fetches every page for every viewer, twice each (the second time
// from whatever the stage keeps: its cache, its front cache).
func fetchAll(base string) ([]page, error) {
	anon := client()
	user, err := get(anon, base, "/users/user1")
	if err != nil {
		return nil, err
	}
	m := photoLink.FindStringSubmatch(user.body)
	if user.status != http.StatusOK || m == nil {
		return nil, fmt.Errorf("/users/user1 answered %d without a photo link", user.status)
	}
	photo, photoID := m[1], m[2]
	ph, err := get(anon, base, photo)
	if err != nil {
		return nil, err
	}
	t := tagLink.FindStringSubmatch(ph.body)
	if ph.status != http.StatusOK || t == nil {
		return nil, fmt.Errorf("%s answered %d without a tag link", photo, ph.status)
	}
	fill := strings.NewReplacer("{photo}", photo, "{tag}", t[1], "{photoid}", photoID)

	var out []page
	for _, v := range viewers {
		c := client()
		if v != "anonymous" {
			posted, err := login(c, base, v)
			if err != nil {
				return nil, err
			}
			out = append(out, posted)
		} else {
			wrong, err := post(c, base, "/login", url.Values{"name": {"user1"}, "password": {"wrong"}})
			if err != nil {
				return nil, err
			}
			wrong.key = "anonymous/login-wrong-password/1"
			out = append(out, wrong)
		}
		for round := 1; round <= 2; round++ {
			for _, p := range paths {
				got, err := get(c, base, fill.Replace(p.path))
				if err != nil {
					return nil, err
				}
				got.key = fmt.Sprintf("%s/%s/%d", v, p.name, round)
				if err := check(v, p.name, got); err != nil {
					return nil, err
				}
				out = append(out, got)
			}
		}
	}
	return out, nil
}

// check refuses a comparison that would mean nothing: a page that should
// be there and is not, a viewer who is not logged in as they should be.
func check(viewer, name string, p page) error {
	switch name {
	case "home", "photo", "user", "tag", "login":
		if p.status != http.StatusOK {
			return fmt.Errorf("%s: %s answered %d", viewer, p.url, p.status)
		}
	case "not-found":
		if p.status != http.StatusNotFound {
			return fmt.Errorf("%s: %s answered %d, not 404", viewer, p.url, p.status)
		}
	}
	loggedIn := strings.Contains(p.body, `action="/logout"`)
	if name == "home" && loggedIn != (viewer != "anonymous") {
		return fmt.Errorf("%s: the home page shows logged in=%v", viewer, loggedIn)
	}
	return nil
}

// login logs viewer in through the form, as a browser would: the log-in
// page first (for its hidden fields), then the POST.
func login(c *http.Client, base, viewer string) (page, error) {
	form, err := get(c, base, "/login")
	if err != nil {
		return page{}, err
	}
	values := url.Values{"name": {viewer}, "password": {"flickrkillr"}}
	for _, in := range hiddenInput.FindAllString(form.body, -1) {
		kv := map[string]string{}
		for _, a := range attr.FindAllStringSubmatch(in, -1) {
			kv[a[1]] = a[2]
		}
		values.Set(kv["name"], kv["value"])
	}
	p, err := post(c, base, "/login", values)
	if err != nil {
		return page{}, err
	}
	if p.status != http.StatusSeeOther {
		return page{}, fmt.Errorf("logging in as %s answered %d", viewer, p.status)
	}
	p.key = viewer + "/login-post/1"
	return p, nil
}

// client is a visitor: its own cookies, redirects not followed (their
// status and target are compared).
func client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(c *http.Client, base, path string) (page, error) {
	return do(c, http.MethodGet, base+path, "", nil)
}

func post(c *http.Client, base, path string, form url.Values) (page, error) {
	return do(c, http.MethodPost, base+path, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
}

func do(c *http.Client, method, u, contentType string, body io.Reader) (page, error) {
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return page{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := c.Do(req)
	if err != nil {
		return page{}, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return page{}, fmt.Errorf("%s %s: %w", method, u, err)
	}
	path := u[strings.Index(u[len("http://"):], "/")+len("http://"):]
	return page{url: path, status: res.StatusCode, contentType: res.Header.Get("Content-Type"),
		location: res.Header.Get("Location"), body: mask(string(b))}, nil
}

// compare prints every page that differs between base and head and returns
// how many do.
func compare(w io.Writer, stage int, base, head []page) int {
	if len(base) != len(head) {
		fmt.Fprintf(w, "stage %d: BASE gave %d pages, HEAD %d\n", stage, len(base), len(head))
		return max(1, abs(len(base)-len(head)))
	}
	diffs := 0
	for i := range head {
		b, h := base[i], head[i]
		if b == h {
			continue
		}
		diffs++
		parts := strings.SplitN(h.key, "/", 3) // viewer/page/round
		fmt.Fprintf(w, "--- stage %d, page %s (%s), user %s, round %s\n", stage, parts[1], h.url, parts[0], parts[2])
		if b.url != h.url {
			fmt.Fprintf(w, "  url: BASE %s, HEAD %s\n", b.url, h.url)
		}
		if b.status != h.status {
			fmt.Fprintf(w, "  status: BASE %d, HEAD %d\n", b.status, h.status)
		}
		if b.contentType != h.contentType {
			fmt.Fprintf(w, "  content-type: BASE %q, HEAD %q\n", b.contentType, h.contentType)
		}
		if b.location != h.location {
			fmt.Fprintf(w, "  location: BASE %q, HEAD %q\n", b.location, h.location)
		}
		if b.body != h.body {
			fmt.Fprint(w, unified(b.body, h.body))
		}
	}
	return diffs
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// unified is diff -u of two bodies, cut to 40 lines.
func unified(a, b string) string {
	dir, err := os.MkdirTemp("", "samepages-diff-")
	if err != nil {
		return "  (bodies differ)\n"
	}
	defer os.RemoveAll(dir)
	pa, pb := filepath.Join(dir, "BASE"), filepath.Join(dir, "HEAD")
	os.WriteFile(pa, []byte(a), 0o644)
	os.WriteFile(pb, []byte(b), 0o644)
	out, _ := exec.Command("diff", "-u", "--label", "BASE", "--label", "HEAD", pa, pb).Output()
	lines := strings.SplitAfter(string(out), "\n")
	if len(lines) > 40 {
		lines = append(lines[:40], fmt.Sprintf("  … %d more lines\n", len(lines)-40))
	}
	return strings.Join(lines, "")
}
