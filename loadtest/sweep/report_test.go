package sweep

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flickrkillr/loadtest"
)

func fixedResult(stage int, name string, indexes bool, rps, p99 float64) *loadtest.Result {
	return &loadtest.Result{
		Tool:     "flickrkillr loadtest",
		Settings: loadtest.Settings{Scenario: "browse", Mode: "closed", Concurrency: 32, Duration: "30s"},
		Server:   loadtest.ServerInfo{Stage: stage, StageName: name, Indexes: indexes, Rows: map[string]int64{"users": 100000, "photos": 1500000}},
		Elapsed:  30,
		Routes:   []loadtest.RouteResult{{Route: "photo", Requests: int64(rps * 30 / 2), RPS: rps / 2, P99: p99}, {Route: "thumb", Requests: int64(rps * 15), RPS: rps / 2, P99: p99 / 2}},
		Total:    loadtest.RouteResult{Route: "total", Requests: int64(rps * 30), RPS: rps, P50: p99 / 4, P99: p99, P999: p99 * 2},
	}
}

func fixedSweep() *Result {
	runs, ladders, _ := planSweep(fiveStages, "both", 2)
	figures := map[string]float64{
		"0 cgi --indexes": 20, "1 db-sessions --indexes": 800, "2 mem-sessions --indexes": 1400, "3 cache --indexes": 2000,
		"4 indexes": 1990, "0 cgi": 5, "1 db-sessions": 10, "2 mem-sessions": 12, "3 cache": 15,
	}
	for _, r := range runs {
		v := figures[r.Label()]
		r.Result = fixedResult(r.Stage, r.Name, r.Indexes || r.Stage == 4, v, 40000/v)
		r.CPU = &loadtest.CPU{Seconds: 30, Requests: int64(v * 30), ToolS: 5, ServerS: 30, PostgresS: 20, PostgresOK: true, OthersS: 3, MachineS: 60}
	}
	runs[2].CPU.ToolS, runs[2].CPU.ToolOverServer = 40, true
	return &Result{
		Command: "flickrkillr loadtest sweep --duration 30s",
		Rerun:   `make loadtest-sweep SWEEP_FLAGS="--duration 30s"`,
		Note:    "four other helpers shared the machine",
		Warmup:  "10s",
		Host:    HostInfo{CPU: "Test CPU", Cores: 2, Memory: "24 GiB", Go: "go1.26"},
		Started: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC),
		Runs:    runs, Ladders: ladders,
	}
}

func TestSweepReportFromFixedInputs(t *testing.T) {
	sr := fixedSweep()
	var md bytes.Buffer
	if err := writeSweepMarkdown(&md, sr); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"flickrkillr loadtest sweep --duration 30s",
		`make loadtest-sweep SWEEP_FLAGS="--duration 30s"`,
		"four other helpers shared the machine",
		"Test CPU, 2 cores, 24 GiB memory",
		"100,000 users, 1,500,000 photos",
		"| stage | as the tags build it: req/s | × previous | p99 ms | each step alone (--indexes): req/s | × previous | p99 ms | the talk, 2007: req/s | × previous |",
		"| 0 cgi | 5.0 | — | 8000.0 | 20.0 | — | 2000.0 | 23 | — |",
		"| 1 db-sessions | 10.0 | 2.00× | 4000.0 | 800.0 | 40.00× | 50.0 | 139 | 6.04× |",
		"| 4 indexes | 1990.0 ‡ | 132.67× | 20.1 | 1990.0 ‡ | 0.99× | 20.1 | 616 (without the index: 28) | 22.00× over no index |",
		"‡ one run that both ladders share",
		"its × previous is this sweep's run-to-run noise",
		"### Step 2: mem-sessions\n\n**Buys:** sessions stop loading the database.",
		"- as the tags build it: 10.0 → 12.0 req/s (**1.20×**), p99 4000.0 → 3333.3 ms; CPU per request: server 100.00 → 83.33, PostgreSQL 66.67 → 55.56, tool 16.67 → 13.89 ms",
		"- each step alone (--indexes): 800.0 → 1400.0 req/s (**1.75×**)",
		"| route | tagged: 1 db-sessions | tagged: 2 mem-sessions | alone: 1 db-sessions --indexes | alone: 2 mem-sessions --indexes |",
		"## Per route, as the tags build it: req/s (p99 ms)",
		"## Per route, each step alone (--indexes): req/s (p99 ms)",
		"| photo | 2.5 (8000.0) | 5.0 (4000.0) | 6.0 (3333.3) | 7.5 (2666.7) | 995.0 (20.1) |",
		"## CPU per side",
		"- the talk, 2007: 28 without the index → 616 req/s (22.00×)",
		"- the talk, 2007: 139 → 217 req/s (1.56×)",
		"| 1 db-sessions | 1 | no | tagged | 300 |",
		"| 3 cache --indexes | 2 | yes | alone | 60000 | 5.0 | 30.0 | 20.0 | 3.0 | 60 | 0.08 | 0.50 | 0.33 | yes |",
		"| 2 mem-sessions --indexes | 2 | yes | alone | 42000 | 40.0 | 30.0 | 20.0 | 3.0 | 60 | 0.95 | 0.71 | 0.48 | **NO: the tool took more CPU than the server** |",
		"In 1 run(s) the load tool took more CPU than the server",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("README lacks %q", want)
		}
	}
	if strings.Contains(md.String(), "Sign-ins the servers shed") {
		t.Error("a sweep that shed no sign-ins has a section for them")
	}
	if t.Failed() || os.Getenv("SHOW") != "" {
		t.Log(md.String())
	}
	svg := sweepSVG(sr)
	dec := xml.NewDecoder(strings.NewReader(svg))
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("chart.svg is not well-formed XML: %v", err)
		}
	}
	if bars := strings.Count(svg, `class="bar"`); bars != 15 {
		t.Fatalf("%d bars, want 5 stages × (two ladders + the talk)", bars)
	}
	dir := t.TempDir()
	if err := WriteReport(dir, sr); err != nil {
		t.Fatal(err)
	}
}

// The sweep refreshes the figure blocks of the stage docs for the steps it
// measured and leaves the rest of each doc, and other steps' blocks, alone.
func TestWriteStepBlocks(t *testing.T) {
	dir := t.TempDir()
	doc := "# Stage 2\n\nProse that stays.\n\n<!-- sweep: step 2 -->\nold figures\n<!-- /sweep -->\n\nMore prose.\n"
	other := "<!-- sweep: step 0 -->\nold\n<!-- /sweep -->\n<!-- sweep: step 9 -->\nnot measured\n<!-- /sweep -->\n"
	readme := filepath.Join(t.TempDir(), "README.md")
	os.WriteFile(readme, []byte("# App\n<!-- sweep: ladders -->\n<!-- /sweep -->\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "02-mem-sessions.md"), []byte(doc), 0o644)
	os.WriteFile(filepath.Join(dir, "00-cgi.md"), []byte(other), 0o644)
	changed, err := WriteStepBlocks([]string{dir, readme}, fixedSweep())
	if err != nil || len(changed) != 3 {
		t.Fatalf("changed %v, %v", changed, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "02-mem-sessions.md"))
	got := string(b)
	for _, want := range []string{"Prose that stays.", "More prose.", "<!-- sweep: step 2 -->\nMeasured 2026-11-22 00:00 UTC by the sweep in [results/README.md](",
		"- each step alone (--indexes): 800.0 → 1400.0 req/s (**1.75×**)", "| route | tagged: 1 db-sessions | tagged: 2 mem-sessions |", "\n<!-- /sweep -->\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("doc lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "old figures") {
		t.Errorf("the old figures stayed:\n%s", got)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "00-cgi.md"))
	if got := string(b); !strings.Contains(got, "| route | tagged: 0 cgi | alone: 0 cgi --indexes |") || !strings.Contains(got, "not measured") {
		t.Errorf("stage 0's block or the unmeasured one:\n%s", got)
	}
	b, _ = os.ReadFile(readme)
	if got := string(b); !strings.Contains(got, "| 1 db-sessions | 10.0 | 2.00× | 4000.0 | 800.0 | 40.00× | 50.0 | 139 | 6.04× |") {
		t.Errorf("README's ladders block:\n%s", got)
	}
}

// fixedTopologySweep is stages 6-8 on one ladder, 7 and 8 on both mixes.
func fixedTopologySweep() *Result {
	stages := []StageSchemas{
		{Stage: 6, Name: "queue", Own: 3, Indexed: 3},
		{Stage: 7, Name: "scale-out", Own: 3, Indexed: 3, Mixes: []float64{0.9}},
		{Stage: 8, Name: "front-cache", Own: 3, Indexed: 3, Mixes: []float64{0.9}, Note: "**Buys:** anonymous visitors' pages from memcached through nginx, no instance reached."},
	}
	runs, ladders, _ := planSweep(stages, "both", 3)
	figures := map[string]float64{"6 queue": 1000, "7 scale-out": 800, "7 scale-out --anonymous 0.9": 1200, "8 front-cache": 790, "8 front-cache --anonymous 0.9": 4800}
	for _, r := range runs {
		v := figures[r.Label()]
		r.Result = fixedResult(r.Stage, r.Name, true, v, 40000/v)
		if r.SecondMix {
			for i := range r.Result.Routes {
				r.Result.Routes[i].Route = "anon-" + r.Result.Routes[i].Route
			}
		}
		r.CPU = &loadtest.CPU{Seconds: 30, Requests: int64(v * 30), ToolS: 5, ServerS: 30, PostgresS: 20, PostgresOK: true, OthersS: 3, MachineS: 60}
	}
	return &Result{Command: "flickrkillr loadtest sweep --stages 6-8", Warmup: "10s", Host: HostInfo{Cores: 2}, Started: time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC), Runs: runs, Ladders: ladders}
}

// A step with a front cache shows its hit ratio per route beside the rates
// (the stage-8 doc's "hit ratio per page kind"); steps without one do not.
func TestSweepReportShowsTheFrontCacheHits(t *testing.T) {
	sr := fixedTopologySweep()
	for _, r := range sr.Runs {
		if r.Stage != 8 {
			continue
		}
		for i := range r.Result.Routes {
			rr := &r.Result.Routes[i]
			hits := int64(0)
			if r.SecondMix && rr.Route == "anon-photo" {
				hits = rr.Requests * 9 / 10
			}
			rr.Front = &loadtest.FrontResult{Responses: rr.Requests, Hits: hits, HitRatio: float64(hits) / float64(rr.Requests)}
		}
		r.Result.Total.Front = &loadtest.FrontResult{Responses: 100, Hits: 25, HitRatio: 0.25}
	}
	var md bytes.Buffer
	if err := writeSweepMarkdown(&md, sr); err != nil {
		t.Fatal(err)
	}
	got := md.String()
	step8 := got[strings.Index(got, "### Step 8: front-cache"):strings.Index(got, "## Per route, as the tags build it")]
	photo := sr.Runs[len(sr.Runs)-1].Result.Routes[0] // anon-photo of the last run, 8 --anonymous 0.9
	for _, want := range []string{
		"**Buys:** anonymous visitors' pages from memcached through nginx",
		"The front cache's answers (X-Front-Cache)",
		fmt.Sprintf("| anon-photo |  | %d of %d (90.0%%) |", photo.Requests*9/10, photo.Requests),
		"| total |  | 25 of 100 (25.0%) |",
	} {
		if !strings.Contains(step8, want) {
			t.Errorf("step 8 lacks %q:\n%s", want, step8)
		}
	}
	if step7 := got[strings.Index(got, "### Step 7"):strings.Index(got, "### Step 8")]; strings.Contains(step7, "X-Front-Cache") {
		t.Errorf("step 7 has a front-cache table:\n%s", step7)
	}
}

// The anonymous mix's rows come after their stage's row, in the ladder
// table's format, against the stage before on the same mix; the other rows
// read as before, and each step and the per-route tables show the mix apart.
func TestSweepReportShowsTheAnonymousMixApart(t *testing.T) {
	sr := fixedTopologySweep()
	sr.Runs[1].Result.SignIn = &loadtest.SignInResult{Users: 32, Before: 30, During: 1, Waiting: 1, Shed: 57, PhaseS: 30}
	var md bytes.Buffer
	if err := writeSweepMarkdown(&md, sr); err != nil {
		t.Fatal(err)
	}
	got := md.String()
	for _, want := range []string{
		"| 6 queue | 1000.0 ‡ | — | 40.0 | 1000.0 ‡ | — | 40.0 | — | — |\n| 7 scale-out | 800.0 ‡ | 0.80× | 50.0 | 800.0 ‡ | 0.80× | 50.0 | — | — |\n| 7 scale-out --anonymous 0.9 | 1200.0 ‡ | — | 33.3 | 1200.0 ‡ | — | 33.3 | — | — |\n| 8 front-cache | 790.0 ‡ | 0.99× |",
		"| 8 front-cache --anonymous 0.9 | 4800.0 ‡ | 4.00× | 8.3 | 4800.0 ‡ | 4.00× | 8.3 | — | — |\n\n",
		"Rows with `--anonymous 0.9`: the topology stages measured again",
		"### Step 8: front-cache",
		"- as the tags build it: 800.0 → 790.0 req/s (**0.99×**)",
		"With anonymous visitors (`--anonymous 0.9`, the topology stages' second mix; routes `anon-…`):",
		"closed loop, 32 virtual users (the topology stages also with --anonymous 0.9), 30s per run",
		"- 7 scale-out --anonymous 0.9 → 8 front-cache --anonymous 0.9: 1200.0 → 4800.0 req/s (**4.00×**), p99 33.3 → 8.3 ms; CPU per request: server",
		"| route | 7 scale-out --anonymous 0.9 | 8 front-cache --anonymous 0.9 |\n|---|---:|---:|\n| anon-photo | 600.0 (33.3) | 2400.0 (8.3) |",
		"- 7 scale-out --anonymous 0.9: 1200.0 req/s, p99 33.3 ms; CPU per request: server 0.83, PostgreSQL 0.56, tool 0.14 ms (the stage before was not measured on this mix)",
		"## Per route, with anonymous visitors (--anonymous 0.9): req/s (p99 ms)",
		"| 7 scale-out --anonymous 0.9 | 3 | yes | tagged, alone | 36000 |",
		"## Sign-ins the servers shed",
		"| 7 scale-out | 32 | 30 | 1 | 1 | 57 | 30.0 | 0 |\n\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("README lacks %q", want)
		}
	}
	// The ladders' per-route tables are the logged-in runs' alone.
	perRoute := got[strings.Index(got, "## Per route, as the tags build it"):strings.Index(got, "## Per route, each step alone")]
	if strings.Contains(perRoute, "anon-") || strings.Contains(perRoute, "--anonymous") {
		t.Errorf("the ladder's per-route table has the anonymous runs:\n%s", perRoute)
	}
	if t.Failed() || os.Getenv("SHOW") != "" {
		t.Log(got)
	}
	if bars := strings.Count(sweepSVG(sr), `class="bar"`); bars != 6 {
		t.Errorf("%d bars, want 3 stages × two ladders (the chart is the ladders')", bars)
	}
}

// The runs whose server sent Server-Timing get the section of where the
// time goes: per run, and per route and run.
func TestSweepReportShowsWhereTheTimeGoes(t *testing.T) {
	res := fixedResult(4, "indexes", true, 100, 50)
	tm := &loadtest.TimingResult{Responses: 1500, SQLPerRequest: 5, DB: 2, Cache: .5, Session: 1, Render: .25, Other: 1.25, Total: 5}
	res.Routes[0].Timing, res.Total.Timing = tm, tm
	sr := &Result{Runs: []*Run{{Stage: 4, Name: "indexes", Result: res}}}
	var md bytes.Buffer
	if err := writeSweepMarkdown(&md, sr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "| photo | 5.0 SQL; 2.0 / 0.5 / 1.0 / 0.2 / 1.2 |") ||
		!strings.Contains(md.String(), "## Where the time goes") {
		t.Fatalf("the sweep report lacks the timing section:\n%s", md.String())
	}
}
