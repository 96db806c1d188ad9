package sweep

import (
	"fmt"
	"io"

	"flickrkillr/loadtest"
)

// writeSweepTiming is the sweep report's section: per run, SQL per request
// and where the time of the whole mix goes; then per route and run.
func writeSweepTiming(w io.Writer, sr *Result) {
	var runs []*Run
	for _, r := range sr.Runs {
		if r.Result != nil && r.Result.Total.Timing != nil {
			runs = append(runs, r)
		}
	}
	if len(runs) == 0 {
		return
	}
	fmt.Fprintln(w, "## Where the time goes (the server's Server-Timing)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Means per request in ms, over the whole mix; other is the server's total minus the parts (handler code, encoding).")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| run | SQL per request | db | cache | session | render | other | server total |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range runs {
		t := r.Result.Total.Timing
		fmt.Fprintf(w, "| %s | %.1f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
			r.Label(), t.SQLPerRequest, t.DB, t.Cache, t.Session, t.Render, t.Other, t.Total)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Per route: SQL per request, and db / cache / session / render / other ms.")
	fmt.Fprintln(w)
	names := routeNames(runs, func(rr loadtest.RouteResult) bool { return rr.Timing != nil })
	heads := make([]string, len(runs))
	for i, r := range runs {
		heads[i] = r.Label()
	}
	writeRouteGrid(w, heads, "---", names, func(route string, col int) string {
		if rr, ok := routeRow(runs[col], route); ok && rr.Timing != nil {
			t := rr.Timing
			return fmt.Sprintf("%.1f SQL; %.1f / %.1f / %.1f / %.1f / %.1f", t.SQLPerRequest, t.DB, t.Cache, t.Session, t.Render, t.Other)
		}
		return ""
	})
}
