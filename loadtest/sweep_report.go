package loadtest

import (
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// WriteSweep writes dir/README.md (both ladders side by side with ratios to
// the stage before and the talk's figures, each step's routes, each side's
// CPU), dir/chart.svg (req/s per stage and ladder) and dir/sweep.json
// (everything measured).
func WriteSweep(dir string, sr *SweepResult) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := WriteJSON(filepath.Join(dir, "sweep.json"), sr); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "README.md"))
	if err != nil {
		return err
	}
	if err := writeSweepMarkdown(f, sr); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "chart.svg"), []byte(sweepSVG(sr)), 0o644)
}

// talkFigure is what the PyCon 2007 talk measured for the iteration that a
// stage retells (DESIGN.md): req/s with its own tool. Before, when set, is
// the figure the step is measured against instead of the previous stage's
// (the talk's index step is "the same iteration without an index").
type talkFigure struct {
	RPS    float64
	Before float64
	Note   string
}

var talk = map[int]talkFigure{
	0: {RPS: 23},
	1: {RPS: 139},
	2: {RPS: 217},
	3: {RPS: 616},
	4: {RPS: 616, Before: 28, Note: "without the index: 28"},
}

// stepNotes say, per step, what it buys and where it shows on each ladder
// (the stage docs say why); a stage added later adds its line here.
var stepNotes = map[int]string{
	1: "**Buys:** no process, connection and template parse per request. **Shows:** each step alone, on the aggregate; as the tags build it, on the server CPU per request and the routes with the least SQL (`thumb`, `upload-form`), since table scans bound the rest.",
	2: "**Buys:** sessions stop loading the database. **Shows:** each step alone, on the aggregate and the PostgreSQL CPU per request; as the tags build it, within the noise behind the scans (`upload-form`, the session and nothing else, waits in the server's in-flight line with the pages that scan).",
	3: "**Buys:** the hot reads (and images) without the database. **Shows:** each step alone, on the aggregate; as the tags build it, on `home` (its p99 becomes a cache hit's) and the PostgreSQL CPU per request, while the total p99 is still a miss that scans a table.",
	4: "**Buys:** no table scans. **Shows:** as the tags build it, on everything (the aggregate, every route, the p99). Each step alone: stages 0-3 already had the indexes, so the ratio is the run-to-run noise.",
	5: "**Buys:** a page's independent lookups at once (errgroup), so a page waits for its longest chain of round trips, not their sum. **Shows:** with `--db-latency 1ms`, on the `photo` p50 (in `sweep.json`) and p99; at loopback (a round trip of microseconds) it buys no latency and, on a CPU-bound machine, costs throughput.",
	6: "**Buys:** uploads answer at once; workers make the images. **Shows:** not in the browse mix, which has no uploads (expect the noise: the grids read one more column); the upload p99 and the drain are measured by `--scenario upload` (docs/stages/06-queue.md).",
	7: "**Buys:** instances that can be killed or replaced without a failed GET or a lost session, and photo files served by nginx from disk. **Shows:** on the image routes (`thumb`, `image`: nginx's sendfile, a p99 of milliseconds) and in the CPU table (the server side counts nginx, the instances and the supervisor); on one shared machine the pages pay nginx's hop, so the aggregate moves little (docs/stages/07-scale-out.md).",
	8: "**Buys:** anonymous visitors' pages from memcached through nginx, no instance reached. **Shows:** with anonymous visitors (`--anonymous 0.9`), in the front cache's hit ratio per route and the p99 of the listings it answers; the aggregate is bound by what misses (photo pages spread over 1.5M photos) and by the CPU the load tool and nginx share with everything else on one machine. The logged-in mix goes through as at stage 7 (docs/stages/08-front-cache.md).",
}

func writeSweepMarkdown(w io.Writer, sr *SweepResult) error {
	fmt.Fprintln(w, "# Stage sweep: both ladders")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Measured %s with:\n\n    %s\n\n", sr.Started.Format("2006-01-02 15:04 MST"), sr.Command)
	if sr.Rerun != "" {
		fmt.Fprintf(w, "Re-run it all with one command: `%s` (it migrates as each run needs, the index migration once each way, and leaves the schema as it found it).\n\n", sr.Rerun)
	}
	if sr.Note != "" {
		fmt.Fprintf(w, "**Note:** %s\n\n", sr.Note)
	}
	fmt.Fprintf(w, "Machine: %s, %d cores, %s memory, %s, %s. The server, PostgreSQL and the load tool share it.\n\n",
		orUnknown(sr.Host.CPU), sr.Host.Cores, orUnknown(sr.Host.Memory), orUnknown(sr.Host.Kernel), sr.Host.Go)
	if r := firstResult(sr); r != nil {
		load := fmt.Sprintf("closed loop, %d virtual users", r.Settings.Concurrency)
		if r.Settings.Mode == "open" {
			load = fmt.Sprintf("open loop at %g req/s", r.Settings.Rate)
		}
		if r.Settings.Anonymous > 0 {
			load += fmt.Sprintf(", --anonymous %g", r.Settings.Anonymous)
		}
		if mixes := secondMixRuns(sr); len(mixes) > 0 {
			load += fmt.Sprintf(" (the topology stages also with --anonymous %g)", mixes[0].Anonymous)
		}
		fmt.Fprintf(w, "Data: %s. Scenario %s, %s, %s per run after a %s warm-up; each run is a fresh server. Redis (stages 2 and later): %s.\n\n",
			dataSize(r.Server.Rows), r.Settings.Scenario, load, r.Settings.Duration, orUnknown(sr.Warmup), orUnknown(sr.Redis))
	}
	fmt.Fprintln(w, "![req/s per stage on both ladders, with the talk's figures](chart.svg)")
	fmt.Fprintln(w)
	writeLadderTable(w, sr)
	writeSteps(w, sr)
	for _, l := range sr.Ladders {
		fmt.Fprintf(w, "## Per route, %s: req/s (p99 ms)\n\n", l.Title)
		var cols []*SweepRun
		for _, st := range l.Steps {
			cols = append(cols, sr.Runs[st.Run])
		}
		writeRouteTable(w, cols)
	}
	if mixes := secondMixRuns(sr); len(mixes) > 0 {
		fmt.Fprintf(w, "## Per route, with anonymous visitors (--anonymous %g): req/s (p99 ms)\n\n", mixes[0].Anonymous)
		fmt.Fprintf(w, "The runs of %s.\n\n", secondMixNote)
		writeRouteTable(w, mixes)
	}
	writeCPUTable(w, sr)
	writeSweepTiming(w, sr)
	writeSignIns(w, sr)
	var retried []string
	for _, r := range sr.Runs {
		for i, why := range r.Retried {
			retried = append(retried, fmt.Sprintf("- %s, attempt %d: %s", r.Label(), i+1, strings.ReplaceAll(why, "\n", " ")))
		}
	}
	if len(retried) > 0 {
		fmt.Fprintln(w, "## Runs measured again")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "These attempts failed; the figures above are the last attempt's (or the run is listed as failed).")
		fmt.Fprintln(w)
		fmt.Fprintln(w, strings.Join(retried, "\n"))
		fmt.Fprintln(w)
	}
	if failed := sr.Failed(); len(failed) > 0 {
		fmt.Fprintln(w, "## Failed runs")
		fmt.Fprintln(w)
		for _, r := range failed {
			fmt.Fprintf(w, "- %s: %s\n", r.Label(), strings.ReplaceAll(r.Error, "\n", " "))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "sweep.json has every figure; docs/loadtest.md says how the tool measures.")
	return nil
}

func firstResult(sr *SweepResult) *Result {
	for _, r := range sr.Runs {
		if r.Result != nil {
			return r.Result
		}
	}
	return nil
}

// stagesOf lists the stages of every ladder, in order, once each.
func stagesOf(sr *SweepResult) []int {
	seen := map[int]bool{}
	var list []int
	for _, l := range sr.Ladders {
		for _, st := range l.Steps {
			if !seen[st.Stage] {
				seen[st.Stage] = true
				list = append(list, st.Stage)
			}
		}
	}
	sort.Ints(list)
	return list
}

// step returns the run of a ladder at a stage, or nil.
func (sr *SweepResult) step(l Ladder, stage int) *SweepRun {
	for _, st := range l.Steps {
		if st.Stage == stage {
			return sr.Runs[st.Run]
		}
	}
	return nil
}

// secondMixes returns the runs of a stage on its further mixes (the
// topology stages' anonymous mix), once each however many ladders list them.
func (sr *SweepResult) secondMixes(stage int) []*SweepRun {
	var list []*SweepRun
	for _, r := range sr.Runs {
		if r.Stage == stage && r.SecondMix && !slices.Contains(list, r) {
			list = append(list, r)
		}
	}
	return list
}

// sameMix returns the run of stage on the mix of r (another stage's further
// mix), or nil.
func (sr *SweepResult) sameMix(stage int, r *SweepRun) *SweepRun {
	for _, o := range sr.secondMixes(stage) {
		if o.Anonymous == r.Anonymous {
			return o
		}
	}
	return nil
}

func stageName(sr *SweepResult, stage int) string {
	for _, r := range sr.Runs {
		if r.Stage == stage {
			return r.Name
		}
	}
	return ""
}

func rps(r *SweepRun) (float64, bool) {
	if r == nil || r.Result == nil {
		return 0, false
	}
	return r.Result.Total.RPS, true
}

func ratio(now, before *SweepRun) string {
	a, ok1 := rps(now)
	b, ok2 := rps(before)
	if !ok1 || !ok2 || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func writeLadderTable(w io.Writer, sr *SweepResult) {
	fmt.Fprintln(w, "## Both ladders")
	fmt.Fprintln(w)
	writeLadderIntro(w, sr)
	writeLadderRows(w, sr)
}

func writeLadderIntro(w io.Writer, sr *SweepResult) {
	for _, l := range sr.Ladders {
		switch l.Name {
		case LadderTagged:
			fmt.Fprintln(w, "- **As the tags build it**: each stage on its own schema, as `git checkout stage-N-…` runs it; the hot queries' indexes come only with stage 4, so the stages before it scan tables.")
		case LadderAlone:
			fmt.Fprintln(w, "- **Each step alone**: the stages before the indexes run on the index schema (`--indexes`), so each step shows by itself, the way the talk measured (its indexes were there all along; \"without an index\" was its counterfactual).")
		}
	}
	fmt.Fprintln(w, "- **The talk, 2007**: PyCon 2007's FlickrKillr with its own tool, for the iteration each stage retells.")
	fmt.Fprintln(w)
}

// writeLadderRows is the table of both ladders and the talk, with its notes.
func writeLadderRows(w io.Writer, sr *SweepResult) {
	fmt.Fprint(w, "| stage |")
	for _, l := range sr.Ladders {
		fmt.Fprintf(w, " %s: req/s | × previous | p99 ms |", l.Title)
	}
	fmt.Fprintln(w, " the talk, 2007: req/s | × previous |")
	fmt.Fprint(w, "|---|")
	for range sr.Ladders {
		fmt.Fprint(w, "---:|---:|---:|")
	}
	fmt.Fprintln(w, "---:|---:|")
	shared, noise := false, ""
	stages := stagesOf(sr)
	for i, n := range stages {
		fmt.Fprintf(w, "| %d %s |", n, stageName(sr, n))
		for _, l := range sr.Ladders {
			r := sr.step(l, n)
			var prev *SweepRun
			if i > 0 {
				prev = sr.step(l, stages[i-1])
			}
			cell, p99 := "—", "—"
			if r != nil && r.Error != "" {
				cell = "failed"
			} else if v, ok := rps(r); ok {
				cell, p99 = fmt.Sprintf("%.1f", v), fmt.Sprintf("%.1f", r.Result.Total.P99)
				if len(r.Ladders) > 1 && len(sr.Ladders) > 1 {
					cell += " ‡"
					shared = true
				}
				if l.Name == LadderAlone && prev != nil && prev.Indexes && !r.Indexes && prev.Schema == r.Schema {
					noise = fmt.Sprintf("On the \"each step alone\" ladder, stage %d runs the code of stage %d on the same schema: its stage's one change is the migration that `--indexes` had already applied, so its × previous is this sweep's run-to-run noise.", n, prev.Stage)
				}
			}
			fmt.Fprintf(w, " %s | %s | %s |", cell, ratio(r, prev), p99)
		}
		fmt.Fprintf(w, " %s |\n", talkCells(n, i > 0 && stages[i-1] == n-1))
		// A topology stage's anonymous mix: a row of its own, against the
		// stage before on the same mix; the ladders' rows stay as they are.
		for _, r := range sr.secondMixes(n) {
			var prev *SweepRun
			if i > 0 {
				prev = sr.sameMix(stages[i-1], r)
			}
			fmt.Fprintf(w, "| %s |", r.Label())
			for _, l := range sr.Ladders {
				cell, p99 := "—", "—"
				if !slices.Contains(r.Ladders, l.Name) {
					fmt.Fprintf(w, " %s | — | %s |", cell, p99)
					continue
				}
				if r.Error != "" {
					cell = "failed"
				} else if v, ok := rps(r); ok {
					cell, p99 = fmt.Sprintf("%.1f", v), fmt.Sprintf("%.1f", r.Result.Total.P99)
					if len(r.Ladders) > 1 && len(sr.Ladders) > 1 {
						cell += " ‡"
						shared = true
					}
				}
				fmt.Fprintf(w, " %s | %s | %s |", cell, ratio(r, prev), p99)
			}
			fmt.Fprintln(w, " — | — |")
		}
	}
	fmt.Fprintln(w)
	if shared {
		fmt.Fprintln(w, "‡ one run that both ladders share: the stage's own schema already has the indexes, so `--indexes` changes nothing (same code, same schema).")
		fmt.Fprintln(w)
	}
	if noise != "" {
		fmt.Fprintln(w, noise)
		fmt.Fprintln(w)
	}
	if mixes := secondMixRuns(sr); len(mixes) > 0 {
		fmt.Fprintf(w, "Rows with `--anonymous %g`: %s; × previous is against the stage before on the same mix.\n\n", mixes[0].Anonymous, secondMixNote)
	}
}

// secondMixNote says what the rows and tables of the further mix are.
const secondMixNote = "the topology stages measured again with that share of the virtual users browsing without an account (`--anonymous`: the shape of a real photo site, and the visitors a front cache serves), their routes prefixed `anon-`"

// secondMixRuns lists every run on a further mix, in stage order.
func secondMixRuns(sr *SweepResult) []*SweepRun {
	var list []*SweepRun
	for _, n := range stagesOf(sr) {
		list = append(list, sr.secondMixes(n)...)
	}
	return list
}

// talkCells are the talk's req/s and × previous for a stage ("—" when the
// talk has none); the ratio needs the previous stage in the table.
func talkCells(stage int, hasPrev bool) string {
	f, ok := talk[stage]
	if !ok {
		return "— | —"
	}
	cell := fmt.Sprintf("%g", f.RPS)
	if f.Note != "" {
		cell += " (" + f.Note + ")"
	}
	before := f.Before
	if before == 0 && hasPrev {
		before = talk[stage-1].RPS
	}
	r := "—"
	if before > 0 {
		r = fmt.Sprintf("%.2f×", f.RPS/before)
		if f.Before > 0 {
			r += " over no index"
		}
	}
	return cell + " | " + r
}

// writeSteps gives each step its own section (docs/stages link to them):
// both ladders' totals and every route, the stage before against this one.
func writeSteps(w io.Writer, sr *SweepResult) {
	stages := stagesOf(sr)
	if len(stages) < 2 {
		return
	}
	fmt.Fprintln(w, "## Step by step")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Each stage against the one before it on the same data, on each ladder: req/s (p99 ms) per route. The stage docs (docs/stages/) say which figure shows the step and why.")
	fmt.Fprintln(w)
	for i := 1; i < len(stages); i++ {
		fmt.Fprintf(w, "### Step %d: %s\n\n", stages[i], stageName(sr, stages[i]))
		if note, ok := stepNotes[stages[i]]; ok && stages[i-1] == stages[i]-1 {
			fmt.Fprintf(w, "%s\n\n", note)
		}
		writeStep(w, sr, stages[i-1], stages[i])
	}
}

// writeStep is stage n against stage p on each ladder: the totals, the
// talk's step, and every route.
func writeStep(w io.Writer, sr *SweepResult, p, n int) {
	var cols []*SweepRun
	var heads []string
	for _, l := range sr.Ladders {
		before, now := sr.step(l, p), sr.step(l, n)
		if before == nil || now == nil {
			continue
		}
		fmt.Fprintf(w, "- %s: %s → %s req/s (**%s**), p99 %s → %s ms; CPU per request: server %s, PostgreSQL %s, tool %s ms\n",
			l.Title, rpsText(before), rpsText(now), ratio(now, before), p99Text(before), p99Text(now),
			cpuStep(before, now, func(c *CPU) (float64, bool) { return c.ServerS, true }),
			cpuStep(before, now, func(c *CPU) (float64, bool) { return c.PostgresS, c.PostgresOK }),
			cpuStep(before, now, func(c *CPU) (float64, bool) { return c.ToolS, true }))
		cols = append(cols, before, now)
		heads = append(heads, fmt.Sprintf("%s: %s", l.Name, before.Label()), fmt.Sprintf("%s: %s", l.Name, now.Label()))
	}
	if f, ok := talk[n]; ok {
		before, note := f.Before, ""
		if before > 0 {
			note = " without the index"
		} else {
			before = talk[p].RPS
		}
		if before > 0 {
			fmt.Fprintf(w, "- the talk, 2007: %g%s → %g req/s (%.2f×)\n", before, note, f.RPS, f.RPS/before)
		}
	}
	fmt.Fprintln(w)
	writeRouteTableWithHeads(w, cols, heads)
	writeFrontTable(w, cols, heads)
	writeSecondMixStep(w, sr, p, n)
}

// writeSecondMixStep is the step on a topology stage's further mix (the
// anonymous visitors): after the ladders' figures, so that those read as
// before.
func writeSecondMixStep(w io.Writer, sr *SweepResult, p, n int) {
	for _, now := range sr.secondMixes(n) {
		fmt.Fprintf(w, "With anonymous visitors (`--anonymous %g`, the topology stages' second mix; routes `anon-…`):\n\n", now.Anonymous)
		cols, heads := []*SweepRun{now}, []string{now.Label()}
		if before := sr.sameMix(p, now); before != nil {
			fmt.Fprintf(w, "- %s → %s: %s → %s req/s (**%s**), p99 %s → %s ms; CPU per request: server %s, PostgreSQL %s, tool %s ms\n\n",
				before.Label(), now.Label(), rpsText(before), rpsText(now), ratio(now, before), p99Text(before), p99Text(now),
				cpuStep(before, now, func(c *CPU) (float64, bool) { return c.ServerS, true }),
				cpuStep(before, now, func(c *CPU) (float64, bool) { return c.PostgresS, c.PostgresOK }),
				cpuStep(before, now, func(c *CPU) (float64, bool) { return c.ToolS, true }))
			cols, heads = []*SweepRun{before, now}, []string{before.Label(), now.Label()}
		} else {
			fmt.Fprintf(w, "- %s: %s req/s, p99 %s ms%s (the stage before was not measured on this mix)\n\n", now.Label(), rpsText(now), p99Text(now), cpuPerRequest(now))
		}
		writeRouteTableWithHeads(w, cols, heads)
		writeFrontTable(w, cols, heads)
	}
}

// writeFrontTable is, when a front cache answered any of the runs, the
// pages it answered per route: hits of the pages that said whether they
// came from it (X-Front-Cache), and the ratio.
func writeFrontTable(w io.Writer, runs []*SweepRun, heads []string) {
	names := routeNames(runs, func(rr RouteResult) bool { return rr.Front != nil })
	if len(names) == 0 {
		return
	}
	fmt.Fprintln(w, "The front cache's answers (X-Front-Cache): pages from the front cache of the pages that went through it, and the hit ratio.")
	fmt.Fprintln(w)
	writeRouteGrid(w, heads, "---:", append(names, "total"), func(route string, col int) string {
		if rr, ok := routeRow(runs[col], route); ok && rr.Front != nil {
			return fmt.Sprintf("%d of %d (%.1f%%)", rr.Front.Hits, rr.Front.Responses, 100*rr.Front.HitRatio)
		}
		return ""
	})
}

// routeNames is the sorted names of the routes of runs for which keep holds
// in any run (the total row is not among them).
func routeNames(runs []*SweepRun, keep func(RouteResult) bool) []string {
	routes := map[string]bool{}
	for _, r := range runs {
		if r.Result == nil {
			continue
		}
		for _, rr := range r.Result.Routes {
			if keep(rr) {
				routes[rr.Route] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(routes))
}

// routeRow is run r's row for route ("total": its total row), if it has one.
func routeRow(r *SweepRun, route string) (RouteResult, bool) {
	if r.Result == nil {
		return RouteResult{}, false
	}
	for _, rr := range r.Result.Routes {
		if rr.Route == route {
			return rr, true
		}
	}
	if r.Result.Total.Route == route {
		return r.Result.Total, true
	}
	return RouteResult{}, false
}

// docBlock matches a part of a doc that the sweep refreshes:
//
//	<!-- sweep: step 2 -->    (stage 1 against stage 2 on each ladder; step 0 is stage 0 alone)
//	<!-- sweep: ladders -->   (the table of both ladders and the talk)
//	… (generated) …
//	<!-- /sweep -->
var docBlock = regexp.MustCompile(`(?s)(<!-- sweep: (step (\d+)|ladders) -->\n).*?(<!-- /sweep -->)`)

// WriteStepBlocks refreshes the figures in the docs at paths (files, or
// directories whose *.md files are read): each block gets this sweep's
// figures when the sweep measured what it shows; other blocks, and
// everything outside the blocks, stay as they are. It returns the files it
// changed.
func WriteStepBlocks(paths []string, sr *SweepResult) ([]string, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		md, err := filepath.Glob(filepath.Join(p, "*.md"))
		if err != nil {
			return nil, err
		}
		files = append(files, md...)
	}
	measured := map[int]bool{}
	for _, n := range stagesOf(sr) {
		measured[n] = true
	}
	var changed []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return changed, err
		}
		rel, err := filepath.Rel(filepath.Dir(f), "results/README.md")
		if err != nil {
			rel = "results/README.md"
		}
		out := docBlock.ReplaceAllStringFunc(string(b), func(block string) string {
			m := docBlock.FindStringSubmatch(block)
			var body strings.Builder
			header := func() {
				fmt.Fprintf(&body, "Measured %s by the sweep in [results/README.md](%s), where its command, machine and notes are (the sweep refreshes this block: do not edit it).\n\n",
					sr.Started.Format("2006-01-02 15:04 MST"), filepath.ToSlash(rel))
			}
			if m[2] == "ladders" {
				if len(stagesOf(sr)) < 2 {
					return block
				}
				header()
				writeLadderRows(&body, sr)
				return m[1] + body.String() + m[4]
			}
			n, _ := strconv.Atoi(m[3])
			if !measured[n] || (n > 0 && !measured[n-1]) {
				return block
			}
			header()
			fmt.Fprintln(&body, "req/s (p99 ms) per route:")
			fmt.Fprintln(&body)
			if n == 0 {
				var cols []*SweepRun
				var heads []string
				for _, l := range sr.Ladders {
					if r := sr.step(l, 0); r != nil {
						cols, heads = append(cols, r), append(heads, l.Name+": "+r.Label())
						if r.CPU != nil {
							fmt.Fprintf(&body, "- %s: %s req/s, p99 %s ms; CPU per request: server %.2f, PostgreSQL %.2f, tool %.2f ms\n", l.Title, rpsText(r), p99Text(r),
								r.CPU.PerRequestMS(r.CPU.ServerS), r.CPU.PerRequestMS(r.CPU.PostgresS), r.CPU.PerRequestMS(r.CPU.ToolS))
						}
					}
				}
				fmt.Fprintln(&body)
				writeRouteTableWithHeads(&body, cols, heads)
			} else {
				writeStep(&body, sr, n-1, n)
			}
			return m[1] + body.String() + m[4]
		})
		if out != string(b) {
			if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
				return changed, err
			}
			changed = append(changed, f)
		}
	}
	return changed, nil
}

// cpuPerRequest is "; CPU per request: server …, PostgreSQL …, tool … ms"
// of one run, or "" when its CPU was not measured.
func cpuPerRequest(r *SweepRun) string {
	c := r.CPU
	if c == nil {
		return ""
	}
	pg := "—"
	if c.PostgresOK {
		pg = fmt.Sprintf("%.2f", c.PerRequestMS(c.PostgresS))
	}
	return fmt.Sprintf("; CPU per request: server %.2f, PostgreSQL %s, tool %.2f ms", c.PerRequestMS(c.ServerS), pg, c.PerRequestMS(c.ToolS))
}

// cpuStep is "a → b" of one side's CPU ms per request over two runs.
func cpuStep(before, now *SweepRun, side func(*CPU) (float64, bool)) string {
	text := func(r *SweepRun) string {
		if r.CPU == nil {
			return "—"
		}
		v, ok := side(r.CPU)
		if !ok {
			return "—"
		}
		return fmt.Sprintf("%.2f", r.CPU.PerRequestMS(v))
	}
	return text(before) + " → " + text(now)
}

func rpsText(r *SweepRun) string {
	if v, ok := rps(r); ok {
		return fmt.Sprintf("%.1f", v)
	}
	return "—"
}

func p99Text(r *SweepRun) string {
	if _, ok := rps(r); ok {
		return fmt.Sprintf("%.1f", r.Result.Total.P99)
	}
	return "—"
}

func writeRouteTable(w io.Writer, runs []*SweepRun) {
	var heads []string
	for _, r := range runs {
		heads = append(heads, r.Label())
	}
	writeRouteTableWithHeads(w, runs, heads)
}

func writeRouteTableWithHeads(w io.Writer, runs []*SweepRun, heads []string) {
	names := routeNames(runs, func(RouteResult) bool { return true })
	writeRouteGrid(w, heads, "---:", append(names, "total"), func(route string, col int) string {
		if rr, ok := routeRow(runs[col], route); ok {
			return fmt.Sprintf("%.1f (%.1f)", rr.RPS, rr.P99)
		}
		return ""
	})
}

// writeRouteGrid writes a Markdown table with a row per route and a column
// per head; cell gives each cell (empty where a run has no figure).
func writeRouteGrid(w io.Writer, heads []string, align string, routes []string, cell func(route string, col int) string) {
	fmt.Fprint(w, "| route |")
	for _, h := range heads {
		fmt.Fprintf(w, " %s |", h)
	}
	fmt.Fprint(w, "\n|---|")
	for range heads {
		fmt.Fprint(w, align+"|")
	}
	fmt.Fprintln(w)
	for _, n := range routes {
		fmt.Fprintf(w, "| %s |", n)
		for i := range heads {
			fmt.Fprintf(w, " %s |", cell(n, i))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

func writeCPUTable(w io.Writer, sr *SweepResult) {
	fmt.Fprintln(w, "## CPU per side")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "CPU seconds (user + system) over each measured window, from /proc: the load tool's own (/proc/self/stat), the server's with the children it waited for (stage 0's CGI processes) and any still running, and PostgreSQL's postmaster with all its children (the backends, the checkpointer, autovacuum). \"others\" is the machine's busy time (/proc/stat) that none of the three took: other processes on a shared machine, which disturb the figures; \"of\" is what the machine had (cores × seconds). The runs are listed in the order they were measured.")
	fmt.Fprintln(w)
	if sr.PostgresNote != "" {
		fmt.Fprintf(w, "PostgreSQL's CPU was not measured: %s.\n\n", sr.PostgresNote)
	}
	fmt.Fprintln(w, "| run | schema | indexes (its /healthz) | ladders | requests | tool CPU s | server CPU s | PostgreSQL CPU s | others CPU s | of | tool ms/req | server ms/req | PostgreSQL ms/req | tool < server |")
	fmt.Fprintln(w, "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	over := 0
	for _, r := range sr.Runs {
		c := r.CPU
		if c == nil {
			fmt.Fprintf(w, "| %s | %d | | %s | | | | | | | | | | not measured |\n", r.Label(), r.Schema, strings.Join(r.Ladders, ", "))
			continue
		}
		pg, pgReq := "—", "—"
		if c.PostgresOK {
			pg, pgReq = fmt.Sprintf("%.1f", c.PostgresS), fmt.Sprintf("%.2f", c.PerRequestMS(c.PostgresS))
		}
		flag := "yes"
		if c.ToolOverServer {
			flag = "**NO: the tool took more CPU than the server**"
			over++
		}
		idx := "no"
		if r.Result != nil && r.Result.Server.Indexes {
			idx = "yes"
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %d | %.1f | %.1f | %s | %.1f | %.0f | %.2f | %.2f | %s | %s |\n", r.Label(), r.Schema, idx, strings.Join(r.Ladders, ", "),
			c.Requests, c.ToolS, c.ServerS, pg, c.OthersS, c.MachineS, c.PerRequestMS(c.ToolS), c.PerRequestMS(c.ServerS), pgReq, flag)
	}
	fmt.Fprintln(w)
	if over > 0 {
		fmt.Fprintf(w, "In %d run(s) the load tool took more CPU than the server it measured: on a shared machine those figures are partly the tool's limit.\n\n", over)
	}
}

// writeSignIns lists the runs whose server shed sign-ins (docs/loadtest.md):
// their users got in late, or not at all, and a run with users still
// waiting at the end measured fewer users than it says.
func writeSignIns(w io.Writer, sr *SweepResult) {
	var rows []string
	for _, r := range sr.Runs {
		if r.Result == nil || r.Result.SignIn == nil {
			continue
		}
		if s := r.Result.SignIn; s.Shed > 0 || s.Waiting > 0 || s.Errors > 0 {
			rows = append(rows, fmt.Sprintf("| %s | %d | %d | %d | %d | %d | %.1f | %d |", r.Label(), s.Users, s.Before, s.During, s.Waiting, s.Shed, s.PhaseS, s.Errors))
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, "## Sign-ins the servers shed")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "The server lets a few sign-ins run bcrypt at a time and sheds the others with a 503 and Retry-After; the tool waits and tries again, and counts them apart from the errors. Users still waiting at the end made no page requests: those runs measured fewer users than they say.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| run | users who sign in | in before the window | in inside it | still waiting at the end | sign-ins shed | sign-in phase s | other refusals (errors) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	fmt.Fprintln(w, strings.Join(rows, "\n"))
	fmt.Fprintln(w)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// sweepSVG draws req/s per stage as grouped bars on a log scale: one bar
// per ladder and one for the talk's 2007 figure.
func sweepSVG(sr *SweepResult) string {
	const W, H, left, right, top, bottom = 760, 380, 70, 20, 60, 50
	plotW, plotH := float64(W-left-right), float64(H-top-bottom)
	stages := stagesOf(sr)
	colors := map[string]string{LadderTagged: "#0063dc", LadderAlone: "#ff0084"}
	const talkColor = "#9e9e9e"
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">FlickrKillr: req/s per stage, both ladders and the talk (2007)</text>`+"\n", left)
	// Legend.
	x := float64(left)
	type series struct{ name, title, color string }
	var all []series
	for _, l := range sr.Ladders {
		all = append(all, series{l.Name, l.Title, colors[l.Name]})
	}
	all = append(all, series{"talk", "the talk, 2007", talkColor})
	for _, s := range all {
		fmt.Fprintf(&b, `<rect x="%.1f" y="32" width="12" height="12" fill="%s"/><text x="%.1f" y="43">%s</text>`+"\n", x, s.color, x+16, xmlEscape(s.title))
		x += 30 + 7*float64(len(s.title))
	}
	if len(stages) == 0 {
		b.WriteString("</svg>\n")
		return b.String()
	}
	maxRPS := 1.0
	for _, r := range sr.Runs {
		if v, ok := rps(r); ok {
			maxRPS = math.Max(maxRPS, v)
		}
	}
	rpsTop := math.Pow(10, math.Ceil(math.Log10(maxRPS)))
	y := func(v float64) float64 {
		if v < 1 {
			v = 1
		}
		return float64(top) + plotH*(1-math.Log10(v)/math.Log10(rpsTop))
	}
	for d := 1.0; d <= rpsTop; d *= 10 {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n",
			left, W-right, y(d), y(d), left-6, y(d)+4, d)
	}
	slot := plotW / float64(len(stages))
	barW := slot * 0.8 / float64(len(all))
	for i, n := range stages {
		x0 := float64(left) + slot*float64(i) + slot*0.1
		for j, s := range all {
			var v float64
			ok := false
			if s.name == "talk" {
				f, has := talk[n]
				v, ok = f.RPS, has
			} else {
				for _, l := range sr.Ladders {
					if l.Name == s.name {
						v, ok = rps(sr.step(l, n))
					}
				}
			}
			if !ok {
				continue
			}
			bx, by := x0+barW*float64(j), y(v)
			fmt.Fprintf(&b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", bx+1, by, barW-2, float64(top)+plotH-by, s.color)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10" fill="%s">%.0f</text>`+"\n", bx+barW/2, by-4, s.color, v)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d %s</text>`+"\n", float64(left)+slot*(float64(i)+0.5), H-bottom+18, n, xmlEscape(stageName(sr, n)))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">log scale; req/s of each measured run (the talk: its own tool, its own machine, 2007)</text>`+"\n", left, H-12)
	b.WriteString("</svg>\n")
	return b.String()
}

func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
