// Package scripts holds the project's shell scripts; this test runs one of
// them, workshop-tags.sh, on a throwaway repository so that `make test` checks
// how it cuts the workshop tags without building or verifying them.
package scripts

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A small main: two stages, one mechanism folder owned by stage 1, one that
// every tag holds, and a testdata folder (not a package: Go skips it).
var tinyMain = map[string]string{
	"stages.manifest": "# a comment\n" +
		"0 base:  app/stage0_base.go\n" +
		"1 queue: app/stage1_queue.go app/jobqueue/\n" +
		"- all:   app/obs/\n",
	"app/app.go":                  "package app\n",
	"app/stage0_base.go":          "package app\n",
	"app/stage1_queue.go":         "package app\n",
	"app/jobqueue/queue.go":       "package jobqueue\n",
	"app/jobqueue/worker/pool.go": "package worker\n",
	"app/obs/obs.go":              "package obs\n",
	"app/testdata/gen/gen.go":     "package gen\n",
	"app/dashboard/app.js":        "// no Go here\n",
}

func TestWorkshopTagsCutsFoldersByTheManifest(t *testing.T) {
	repo := newRepo(t, tinyMain)
	if out, err := runTags(t, repo); err != nil {
		t.Fatalf("workshop-tags.sh: %v\n%s", err, out)
	}

	stage0 := tree(t, repo, "stage-0-base")
	for _, f := range []string{"app/app.go", "app/stage0_base.go", "app/obs/obs.go", "app/testdata/gen/gen.go"} {
		if !slices.Contains(stage0, f) {
			t.Errorf("stage 0's tag lacks %s, which it holds", f)
		}
	}
	for _, f := range []string{"app/stage1_queue.go", "app/jobqueue/queue.go", "app/jobqueue/worker/pool.go"} {
		if slices.Contains(stage0, f) {
			t.Errorf("stage 0's tag holds %s, which stage 1 brings", f)
		}
	}

	// Stage 1's tag is main's tree, and the step between the tags is stage 1's line.
	if got, want := tree(t, repo, "stage-1-queue"), tree(t, repo, "HEAD"); !slices.Equal(got, want) {
		t.Errorf("stage 1's tag (the last stage) is not main's tree:\n got %v\nwant %v", got, want)
	}
	step := strings.Fields(git(t, repo, "diff", "--name-only", "stage-0-base", "stage-1-queue"))
	if want := []string{"app/jobqueue/queue.go", "app/jobqueue/worker/pool.go", "app/stage1_queue.go"}; !slices.Equal(step, want) {
		t.Errorf("git diff stage-0-base stage-1-queue = %v, want %v", step, want)
	}
	if parent := git(t, repo, "rev-parse", "stage-1-queue^{commit}^"); parent != git(t, repo, "rev-parse", "stage-0-base^{commit}") {
		t.Errorf("stage 1's tag is not on top of stage 0's")
	}
	if status := git(t, repo, "status", "--porcelain"); status != "" {
		t.Errorf("the script touched main's index or work tree:\n%s", status)
	}
}

func TestWorkshopTagsRefusesWhatNoLineOwns(t *testing.T) {
	tests := []struct {
		name  string
		add   map[string]string
		wants []string // each must be in the output
	}{
		{"a mechanism folder no line owns",
			map[string]string{"app/foo/foo.go": "package foo\n"},
			[]string{"app/foo/", "add app/foo/ to the line of the stage", `"- all:"`}},
		{"a package deep in a folder no line owns",
			map[string]string{"app/bar/deep/deep.go": "package deep\n"},
			[]string{"add app/bar/ to the line", "(in app/bar/deep/)"}},
		{"a stage file not in the manifest",
			map[string]string{"app/stage2_more.go": "package app\n"},
			[]string{"app/stage2_more.go belongs to a stage but is not in stages.manifest"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := maps.Clone(tinyMain)
			maps.Copy(files, tt.add)
			repo := newRepo(t, files)
			out, err := runTags(t, repo)
			if err == nil {
				t.Fatalf("workshop-tags.sh succeeded; want a refusal\n%s", out)
			}
			for _, want := range tt.wants {
				if !strings.Contains(out, want) {
					t.Errorf("output does not say %q:\n%s", want, out)
				}
			}
			if tags := git(t, repo, "tag"); tags != "" {
				t.Errorf("refused, yet it made tags: %s", tags)
			}
		})
	}
}

// newRepo commits files into a fresh repository beside a copy of the script,
// with no user or system git configuration (the script brings its own identity).
func newRepo(t *testing.T, files map[string]string) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	t.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	repo := t.TempDir()
	script, err := os.ReadFile("workshop-tags.sh")
	if err != nil {
		t.Fatal(err)
	}
	files = maps.Clone(files)
	files["scripts/workshop-tags.sh"] = string(script)
	for name, body := range files {
		path := filepath.Join(repo, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	git(t, repo, "init", "-q")
	git(t, repo, "add", "-A")
	git(t, repo, "-c", "user.name=test", "-c", "user.email=test@flickrkillr.invalid", "commit", "-q", "-m", "main")
	return repo
}

func runTags(t *testing.T, repo string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", "scripts/workshop-tags.sh")
	cmd.Dir = repo
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func tree(t *testing.T, repo, rev string) []string {
	t.Helper()
	return strings.Fields(git(t, repo, "ls-tree", "-r", "--name-only", rev))
}

func git(t *testing.T, repo string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
