package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	"flickrkillr/models/modeltest"

	"flickrkillr/app/netdelay"
)

// TestMain lets the test binary be the CGI script of stage 0's tests: the
// handler re-executes it with FLICKRKILLR_TEST_CGI=1, and it answers one request.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "netdelay" { // --db-latency's child (package netdelay)
		if err := netdelay.ServeChild(os.Args[2:], os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString("netdelay: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv("FLICKRKILLR_TEST_CGI") == "1" {
		cfg, err := ConfigFromEnv()
		if err == nil {
			err = ServeCGIChild(context.Background(), cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
		}
		if err != nil {
			os.Stderr.WriteString("cgi child: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testCGIHandler is stage 0's CGI handler on a fresh database, running
// this test binary as the child (TestMain answers as it).
func testCGIHandler(t *testing.T) *cgi.Handler {
	t.Helper()
	need, _ := SchemaFor(0)
	cfg := Config{DatabaseURL: modeltest.NewDB(t, need), DataDir: t.TempDir(), Stage: 0}
	h, err := cgiHandler(cfg, slog.Default(), os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	h.Env = append(h.Env, "FLICKRKILLR_TEST_CGI=1")
	return h
}

func TestStage0AnswersEachRequestFromANewProcess(t *testing.T) {
	h := testCGIHandler(t)
	srv := httptest.NewServer(h)
	defer srv.Close()

	pids := map[int]bool{}
	for range 3 {
		res, err := http.Get(srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		var body health
		err = json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("healthz: status %d, %v", res.StatusCode, err)
		}
		if body.Stage != 0 || body.PID == os.Getpid() {
			t.Fatalf("healthz says stage %d pid %d (test pid %d)", body.Stage, body.PID, os.Getpid())
		}
		pids[body.PID] = true
	}
	if len(pids) != 3 {
		t.Fatalf("3 requests were answered by %d processes, want 3", len(pids))
	}

	// A whole page works through CGI too, sessions included.
	ta := &testApp{srv: srv}
	b := ta.browser(t)
	b.signup("cgi_user")
	res := b.get("/")
	mustStatus(t, res, http.StatusOK)
	mustContain(t, res, "Log out", "Stage <strong>0 · cgi")
}

// Stage 0 throttles log-ins where its children can count: in the database.
// Each request is a new process, so an in-memory count never reached two
// (issue 31: twelve wrong passwords, all 422). The 11th wrong password for
// an account within a minute is a 429, and so is the right one after it.
func TestStage0ThrottlesLoginsAcrossProcesses(t *testing.T) {
	h := testCGIHandler(t)
	srv := httptest.NewServer(h)
	defer srv.Close()
	ta := &testApp{srv: srv}
	ta.browser(t).signup("victim")

	b := ta.browser(t)
	for range maxNameFailures {
		res := b.post("/login", url.Values{"name": {"victim"}, "password": {"wrong password"}})
		mustStatus(t, res, http.StatusUnprocessableEntity)
	}
	res := b.post("/login", url.Values{"name": {"victim"}, "password": {"wrong password"}})
	mustStatus(t, res, http.StatusTooManyRequests)
	if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || s < 1 || s > int(failureWindow.Seconds())+1 {
		t.Fatalf("Retry-After %q, want seconds up to the window", res.Header.Get("Retry-After"))
	}
	res = b.post("/login", url.Values{"name": {"victim"}, "password": {"correct horse battery"}})
	mustStatus(t, res, http.StatusTooManyRequests)
	// Another account is not affected.
	ta.browser(t).signup("bystander")
}

// Stage 0's parent keeps the sign-in budget of a long-running server: a
// child's gate died with it, so every log-in of a storm ran bcrypt in a
// process of its own, all at once (on the scale model's small app host,
// until all of them timed out). Twenty log-ins at once: a turn of the
// budget each is a 303, the rest the app's 503 page, shed with Retry-After.
func TestStage0ParentShedsASignInStorm(t *testing.T) {
	h := testCGIHandler(t)
	s, _ := resolve(0)
	gated, err := cgiSignIns(s, h)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gated)
	defer srv.Close()
	(&testApp{srv: srv}).browser(t).signup("stormy")

	const n = 20
	type answer struct {
		status      int
		shed, retry string
		body        string
		err         error
	}
	answers := make(chan answer, n)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for range n {
		go func() {
			res, err := noRedirect.PostForm(srv.URL+"/login", url.Values{"name": {"stormy"}, "password": {"correct horse battery"}})
			if err != nil {
				answers <- answer{err: err}
				return
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			answers <- answer{res.StatusCode, res.Header.Get(shedHeader), res.Header.Get("Retry-After"), string(body), nil}
		}()
	}
	var in, shed int
	for range n {
		a := <-answers
		switch {
		case a.err != nil:
			t.Fatal(a.err)
		case a.status == http.StatusSeeOther:
			in++
		case a.status == http.StatusServiceUnavailable && a.shed == "sign-in" && a.retry == "1" && strings.Contains(a.body, busyMessage):
			shed++
		default:
			t.Fatalf("a log-in answered %d (X-Shed %q, Retry-After %q), want 303 or the shed 503:\n%.1000s", a.status, a.shed, a.retry, a.body)
		}
	}
	if in == 0 || shed == 0 {
		t.Fatalf("%d log-ins got in and %d were shed, want some of each", in, shed)
	}
	t.Logf("%d of %d log-ins at once got in, %d shed", in, n, shed)
}
