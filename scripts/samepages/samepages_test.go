package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testStages are the stages the tests serve. The whole run (0-8) takes
// about two minutes, and stage 0 alone takes most of it (a process per
// request: about 35-55 s for its 150 pages on 2 busy cores), so the tests
// take two quick stages that keep pages differently: stage 1's sessions in
// PostgreSQL and stage 3's cache (the second round of every page comes from
// Redis). scripts/samepages.sh runs every stage.
var testStages = []int{1, 3}

// changedClone clones this checkout's HEAD into a temporary folder and
// commits one change on top of it: the log-in page's heading. It returns
// the clone.
func changedClone(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout (%v): nothing to build a revision from", err)
	}
	clone := filepath.Join(t.TempDir(), "clone")
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", clone, "-c", "user.name=samepages", "-c", "user.email=samepages@localhost"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	if out, err := exec.Command("git", "clone", "-q", "--shared", "--no-checkout", root, clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v: %s", err, out)
	}
	git("checkout", "-q", "--detach", strings.TrimSpace(string(head)))
	login := filepath.Join(clone, "templates", "pages", "login.html")
	b, err := os.ReadFile(login)
	if err != nil {
		t.Fatal(err)
	}
	changed := bytes.Replace(b, []byte("<h1>Log in</h1>"), []byte("<h1>Sign in</h1>"), 1)
	if bytes.Equal(b, changed) {
		t.Fatal("templates/pages/login.html has no <h1>Log in</h1> to change")
	}
	if err := os.WriteFile(login, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	git("commit", "-q", "-am", "the log-in page's heading changes")
	return clone
}

// TestReportsAChangedTemplate compares a commit with one that changes the
// log-in page's heading, then that commit with itself: the first must
// report the log-in pages (and only those), the second nothing.
func TestReportsAChangedTemplate(t *testing.T) {
	admin := os.Getenv("TEST_DATABASE_URL")
	if admin == "" {
		t.Skip("TEST_DATABASE_URL is not set (scripts/pg.sh start test)")
	}
	// It takes 45-100 s here (stages 1 and 3), about 2.6 min at the stage-0
	// tag (stage 0 alone, on cores busy at load 13); the deadline is a guard
	// against a server that hangs, not the budget.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	clone := changedClone(t)
	bins := t.TempDir()
	base, err := build(clone, "HEAD~1", bins, "base")
	if err != nil {
		t.Fatal(err)
	}
	changed, err := build(clone, "HEAD", bins, "changed")
	if err != nil {
		t.Fatal(err)
	}
	// A workshop tag has the stages up to its own: stage 0's tag serves
	// stage 0 alone.
	have, err := stagesOf(changed)
	if err != nil {
		t.Fatal(err)
	}
	var stages []int
	for _, n := range testStages {
		if _, ok := have[n]; ok {
			stages = append(stages, n)
		}
	}
	if stages == nil {
		stages = common(have, have)[:1]
	}

	var out bytes.Buffer
	res, err := Run(ctx, Options{Repo: clone, Base: "HEAD~1", Head: "HEAD", BaseBin: base, HeadBin: changed,
		Stages: stages, AdminURL: admin, Out: &out})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	report := out.String()
	t.Logf("BASE = HEAD~1, HEAD = the changed heading:\n%s", report)
	// Per stage: /login for each of the three viewers, twice, and the
	// anonymous visitor's refused log-in (the same template, 422).
	if want := 7 * len(stages); res.Differences != want {
		t.Errorf("%d pages differ, want %d (the log-in pages)", res.Differences, want)
	}
	for _, want := range []string{"page login (/login), user anonymous, round 1", "page login (/login), user user1, round 2",
		"page login-wrong-password (/login), user anonymous, round 1", "-<h1>Log in</h1>", "+<h1>Sign in</h1>"} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	for _, page := range []string{"page home", "page photo", "page user", "page tag", "page upload"} {
		if strings.Contains(report, page+" ") {
			t.Errorf("the report names %s, which the change does not touch", page)
		}
	}

	out.Reset()
	res, err = Run(ctx, Options{Repo: clone, Base: "HEAD", Head: "HEAD", BaseBin: changed, HeadBin: changed,
		Stages: stages, AdminURL: admin, Out: &out})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Logf("HEAD against itself:\n%s", out.String())
	if res.Differences != 0 {
		t.Errorf("HEAD against itself: %d pages differ, want 0", res.Differences)
	}
	if len(res.Stages) != len(stages) || res.Pages < 70*len(stages) {
		t.Errorf("HEAD against itself compared stages %v, %d pages; want %v, 70 pages or more each", res.Stages, res.Pages, stages)
	}
}
