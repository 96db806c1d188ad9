package sweep

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"flickrkillr/loadtest"
)

func writeSweepMarkdown(w io.Writer, sr *Result) error {
	if sr.Model != "" {
		fmt.Fprintln(w, "# Stage sweep in model mode: a datacenter in a box")
	} else {
		fmt.Fprintln(w, "# Stage sweep: both ladders")
	}
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
		fmt.Fprintf(w, "Data: %s. Scenario %s, %s, %s per run after a %s warm-up; each run is a fresh server%s. Redis (stages 2 and later): %s.\n\n",
			loadtest.DataSize(r.Server.Rows), r.Settings.Scenario, load, r.Settings.Duration, orUnknown(sr.Warmup), removedNote(sr), orUnknown(sr.Redis))
	}
	writeModelIntro(w, sr)
	fmt.Fprintln(w, "![req/s per stage on both ladders, with the talk's figures](chart.svg)")
	fmt.Fprintln(w)
	writeLadderTable(w, sr)
	writeModelRuns(w, sr)
	writeSteps(w, sr)
	for _, l := range sr.Ladders {
		fmt.Fprintf(w, "## Per route, %s: req/s (p99 ms)\n\n", l.Title)
		var cols []*Run
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

func firstResult(sr *Result) *loadtest.Result {
	for _, r := range sr.Runs {
		if r.Result != nil {
			return r.Result
		}
	}
	return nil
}

func writeLadderTable(w io.Writer, sr *Result) {
	fmt.Fprintln(w, "## Both ladders")
	fmt.Fprintln(w)
	writeLadderIntro(w, sr)
	writeLadderRows(w, sr)
}

func writeLadderIntro(w io.Writer, sr *Result) {
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
func writeLadderRows(w io.Writer, sr *Result) {
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
			var prev *Run
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
			fmt.Fprintf(w, " %s | %s | %s |", cell, sr.ratio(r, prev), p99)
		}
		fmt.Fprintf(w, " %s |\n", talkCells(n, i > 0 && stages[i-1] == n-1))
		// A topology stage's anonymous mix: a row of its own, against the
		// stage before on the same mix; the ladders' rows stay as they are.
		for _, r := range sr.secondMixes(n) {
			var prev *Run
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
				fmt.Fprintf(w, " %s | %s | %s |", cell, sr.ratio(r, prev), p99)
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
	writeControl(w, sr)
}

// secondMixNote says what the rows and tables of the further mix are.
const secondMixNote = "the topology stages measured again with that share of the virtual users browsing without an account (`--anonymous`: the shape of a real photo site, and the visitors a front cache serves), their routes prefixed `anon-`"

func writeCPUTable(w io.Writer, sr *Result) {
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
func writeSignIns(w io.Writer, sr *Result) {
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

// removedNote says that each run started from the same data, when the
// sweep took every run's writes back (Run.Removed).
func removedNote(sr *Result) string {
	var comments, favorites int64
	for _, r := range sr.Runs {
		if r.Removed == nil {
			if r.Result != nil {
				return "" // a sweep from before the restore, or one that failed
			}
			continue
		}
		comments, favorites = comments+r.Removed.Comments, favorites+r.Removed.Favorites
	}
	if comments+favorites == 0 {
		return ""
	}
	return fmt.Sprintf(" on the same data (the comments and favorites each run added were deleted after it: %d and %d in all)", comments, favorites)
}
