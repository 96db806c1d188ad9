package sweep

import (
	"fmt"
	"io"

	"flickrkillr/loadtest"
)

// writeSteps gives each step its own section (docs/stages link to them):
// both ladders' totals and every route, the stage before against this one.
func writeSteps(w io.Writer, sr *Result) {
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
		if note := stageNote(sr, stages[i]); note != "" && stages[i-1] == stages[i]-1 {
			fmt.Fprintf(w, "%s\n\n", note)
		}
		writeStep(w, sr, stages[i-1], stages[i])
	}
}

// writeStep is stage n against stage p on each ladder: the totals, the
// talk's step, and every route.
func writeStep(w io.Writer, sr *Result, p, n int) {
	var cols []*Run
	var heads []string
	for _, l := range sr.Ladders {
		before, now := sr.step(l, p), sr.step(l, n)
		if before == nil || now == nil {
			continue
		}
		fmt.Fprintf(w, "- %s: %s → %s req/s (**%s**), p99 %s → %s ms; CPU per request: server %s, PostgreSQL %s, tool %s ms\n",
			l.Title, rpsText(before), rpsText(now), sr.ratio(now, before), p99Text(before), p99Text(now),
			cpuStep(before, now, func(c *loadtest.CPU) (float64, bool) { return c.ServerS, true }),
			cpuStep(before, now, func(c *loadtest.CPU) (float64, bool) { return c.PostgresS, c.PostgresOK }),
			cpuStep(before, now, func(c *loadtest.CPU) (float64, bool) { return c.ToolS, true }))
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
	for _, l := range sr.Ladders { // model mode: which host bounds, before and after
		writeModelStep(w, sr, l.Title, sr.step(l, p), sr.step(l, n), p, n)
	}
	if c := sr.Control; c.measured() && c.SpreadPercent > readableSpread {
		fmt.Fprintf(w, "- %s: a ratio within it of 1× is unreadable\n", c.text(sr))
	}
	fmt.Fprintln(w)
	writeRouteTableWithHeads(w, cols, heads)
	writeFrontTable(w, cols, heads)
	writeSecondMixStep(w, sr, p, n)
}

// writeSecondMixStep is the step on a topology stage's further mix (the
// anonymous visitors): after the ladders' figures, so that those read as
// before.
func writeSecondMixStep(w io.Writer, sr *Result, p, n int) {
	for _, now := range sr.secondMixes(n) {
		fmt.Fprintf(w, "With anonymous visitors (`--anonymous %g`, the topology stages' second mix; routes `anon-…`):\n\n", now.Anonymous)
		cols, heads := []*Run{now}, []string{now.Label()}
		if before := sr.sameMix(p, now); before != nil {
			fmt.Fprintf(w, "- %s → %s: %s → %s req/s (**%s**), p99 %s → %s ms; CPU per request: server %s, PostgreSQL %s, tool %s ms\n",
				before.Label(), now.Label(), rpsText(before), rpsText(now), sr.ratio(now, before), p99Text(before), p99Text(now),
				cpuStep(before, now, func(c *loadtest.CPU) (float64, bool) { return c.ServerS, true }),
				cpuStep(before, now, func(c *loadtest.CPU) (float64, bool) { return c.PostgresS, c.PostgresOK }),
				cpuStep(before, now, func(c *loadtest.CPU) (float64, bool) { return c.ToolS, true }))
			writeModelStep(w, sr, "this mix", before, now, p, n)
			fmt.Fprintln(w)
			cols, heads = []*Run{before, now}, []string{before.Label(), now.Label()}
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
func writeFrontTable(w io.Writer, runs []*Run, heads []string) {
	names := routeNames(runs, func(rr loadtest.RouteResult) bool { return rr.Front != nil })
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

// cpuPerRequest is "; CPU per request: server …, PostgreSQL …, tool … ms"
// of one run, or "" when its CPU was not measured.
func cpuPerRequest(r *Run) string {
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
func cpuStep(before, now *Run, side func(*loadtest.CPU) (float64, bool)) string {
	text := func(r *Run) string {
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
