package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// The layout's arrows point one way (docs/architecture.md): main → app →
// the mechanism packages under app/ → models. A mechanism never imports
// app; among them, topology and jobqueue may use obs and guard, frontcache guard, and obs,
// guard, netdelay and scalemodel use none of the others. models imports none of app's.
// obs imports nothing of models but the request timings (models/timing), a
// leaf that imports nothing of the project: obs reads them, models writes them.
// A new package under app/ must be given its arrows here.
func TestImportsPointOneWay(t *testing.T) {
	const app = "flickrkillr/app"
	const models, leaf = "flickrkillr/models", "flickrkillr/models/timing"
	mechanisms := []string{app + "/obs", app + "/guard", app + "/netdelay", app + "/jobqueue", app + "/topology", app + "/frontcache", app + "/scalemodel", app + "/standby"}
	may := map[string][]string{ // the mechanisms each mechanism may use
		app + "/obs":        nil,
		app + "/guard":      nil,
		app + "/netdelay":   nil,
		app + "/jobqueue":   {app + "/obs", app + "/guard"},
		app + "/topology":   {app + "/obs", app + "/guard"},
		app + "/frontcache": {app + "/guard"}, // stage 8
		app + "/scalemodel": nil,              // the scale model's hosts (every stage)
		app + "/standby":    nil,              // stage 9's streaming standbys
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goTool, "list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", "./app/...", "./models/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, deps := fields[0], fields[1:]
		if pkg == app {
			continue
		}
		if pkg == leaf {
			for _, d := range deps {
				if strings.HasPrefix(d, "flickrkillr/") {
					t.Errorf("%s imports %s: the timings are a leaf, importing nothing of the project", pkg, d)
				}
			}
			continue
		}
		if strings.HasPrefix(pkg, models) {
			for _, d := range deps {
				if d == app || strings.HasPrefix(d, app+"/") {
					t.Errorf("%s imports %s: models is below app and its packages", pkg, d)
				}
			}
			continue
		}
		allowed, ok := may[pkg]
		if !ok {
			t.Errorf("%s is a package under app/ with no arrows in this test: add it to may", pkg)
			continue
		}
		seen++
		for _, d := range deps {
			switch {
			case d == app:
				t.Errorf("%s imports %s: a mechanism never imports app", pkg, app)
			case slices.Contains(mechanisms, d) && !slices.Contains(allowed, d):
				t.Errorf("%s imports %s: an arrow the layout does not allow (allowed: %v)", pkg, d, allowed)
			case pkg == app+"/obs" && (d == models || strings.HasPrefix(d, models+"/")) && d != leaf:
				t.Errorf("%s imports %s: obs uses nothing of models but its timings (%s)", pkg, d, leaf)
			}
		}
	}
	if seen == 0 {
		t.Fatal("go list found no mechanism package under app/")
	}
}
