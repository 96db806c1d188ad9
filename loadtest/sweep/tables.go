package sweep

import (
	"fmt"
	"io"
	"maps"
	"slices"

	"flickrkillr/loadtest"
)

// routeNames is the sorted names of the routes of runs for which keep holds
// in any run (the total row is not among them).
func routeNames(runs []*Run, keep func(loadtest.RouteResult) bool) []string {
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
func routeRow(r *Run, route string) (loadtest.RouteResult, bool) {
	if r.Result == nil {
		return loadtest.RouteResult{}, false
	}
	for _, rr := range r.Result.Routes {
		if rr.Route == route {
			return rr, true
		}
	}
	if r.Result.Total.Route == route {
		return r.Result.Total, true
	}
	return loadtest.RouteResult{}, false
}

func writeRouteTable(w io.Writer, runs []*Run) {
	var heads []string
	for _, r := range runs {
		heads = append(heads, r.Label())
	}
	writeRouteTableWithHeads(w, runs, heads)
}

func writeRouteTableWithHeads(w io.Writer, runs []*Run, heads []string) {
	names := routeNames(runs, func(loadtest.RouteResult) bool { return true })
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
