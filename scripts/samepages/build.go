package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// build compiles the flickrkillr binary at rev (a git revision of repo), or
// from repo's working tree when rev is "". A revision is checked out with
// `git worktree add --detach` into a folder under tmp and removed after, so
// the checkout in use is never touched. -trimpath keeps the build cache
// shared between folders: a second build of the same sources only links.
func build(repo, rev, tmp, name string) (string, error) {
	bin := filepath.Join(tmp, name)
	src := repo
	if rev != "" {
		src = filepath.Join(tmp, "src-"+name)
		if out, err := exec.Command("git", "-C", repo, "worktree", "add", "--detach", "-q", src, rev).CombinedOutput(); err != nil {
			return "", fmt.Errorf("build: git worktree add %s: %v: %s", rev, err, out)
		}
		defer func() {
			exec.Command("git", "-C", repo, "worktree", "remove", "--force", src).Run()
			exec.Command("git", "-C", repo, "worktree", "prune").Run()
		}()
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build: go build at %q: %v: %s", rev, err, out)
	}
	return bin, nil
}

// describe names a revision for the report: its short commit, or
// "working tree".
func describe(repo, rev string) string {
	if rev == "" {
		head, _ := exec.Command("git", "-C", repo, "rev-parse", "--short", "HEAD").Output()
		return "working tree (on " + strings.TrimSpace(string(head)) + ")"
	}
	out, err := exec.Command("git", "-C", repo, "rev-parse", "--short", rev).Output()
	if err != nil {
		return rev
	}
	return strings.TrimSpace(string(out))
}

// stageHelp matches the stage list in the help of `serve --stage`:
// "scaling stage 0=cgi, 1=db-sessions, …".
var stageHelp = regexp.MustCompile(`(\d+)=([a-z0-9-]+)`)

// stagesOf reads the stages a binary has from `serve --help`, so a build
// of a workshop tag or of a later commit is asked only for what it knows.
func stagesOf(bin string) (map[int]string, error) {
	out, _ := exec.Command(bin, "serve", "--help").CombinedOutput() // flag's -help exits 0 or 2
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(line, "scaling stage") {
			continue
		}
		stages := map[int]string{}
		for _, m := range stageHelp.FindAllStringSubmatch(line, -1) {
			n, _ := strconv.Atoi(m[1])
			stages[n] = m[2]
		}
		return stages, nil
	}
	return nil, fmt.Errorf("build: %s serve --help names no stages:\n%s", bin, out)
}

// common is the sorted list of stages both maps hold.
func common(a, b map[int]string) []int {
	var ns []int
	for n := range a {
		if _, ok := b[n]; ok {
			ns = append(ns, n)
		}
	}
	sort.Ints(ns)
	return ns
}

// needs lists the servers a stage's topology starts (stage 7: nginx in front
// of the instances, a Redis of its own and PgBouncer; stage 8 adds
// memcached, its default front cache). The other stages run in one process.
var needs = map[int][]string{
	7: {"nginx", "redis-server", "pgbouncer"},
	8: {"nginx", "redis-server", "pgbouncer", "memcached"},
}

// missing names the first tool stage n needs that is not on PATH (which
// includes /usr/sbin: Debian puts nginx and pgbouncer there), or "".
func missing(n int) string {
	for _, tool := range needs[n] {
		if _, err := exec.LookPath(tool); err != nil {
			return tool
		}
	}
	return ""
}

// withSbin puts /usr/sbin on PATH for this process and its children.
func withSbin() {
	path := os.Getenv("PATH")
	for _, dir := range filepath.SplitList(path) {
		if dir == "/usr/sbin" {
			return
		}
	}
	os.Setenv("PATH", path+string(filepath.ListSeparator)+"/usr/sbin")
}
