package loadtest

import (
	"encoding/json"
	"fmt"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
)

// WriteText writes the human report: the settings, the stage and data, and a
// table of routes with the total.
func WriteText(w io.Writer, r *Result) error {
	fmt.Fprintf(w, "%s — %s, %s/%s, %d CPUs, GOMAXPROCS %d\n", r.Tool, r.Machine.GoVersion, r.Machine.OS, r.Machine.Arch, r.Machine.CPUs, r.Machine.GOMAXPROCS)
	fmt.Fprintf(w, "server:   %s  stage %d (%s), %s\n", r.Settings.URL, r.Server.Stage, r.Server.StageName, schemaText(r.Server.Indexes))
	fmt.Fprintf(w, "data:     %s\n", DataSize(r.Server.Rows))
	load := fmt.Sprintf("closed loop, %d virtual users, think time %s", r.Settings.Concurrency, r.Settings.ThinkTime)
	if r.Settings.Mode == "open" {
		load = fmt.Sprintf("open loop, %g req/s, up to %d in flight (latency from the intended send time)", r.Settings.Rate, r.Settings.Concurrency)
	}
	fmt.Fprintf(w, "settings: scenario %s, %s, %s, seed %d%s\n", r.Settings.Scenario, load, r.Settings.Duration, r.Settings.Seed, mixText(r.Settings))
	status := fmt.Sprintf("%.1fs measured", r.Elapsed)
	if r.Interrupted {
		status += " (INTERRUPTED: partial results)"
	}
	fmt.Fprintf(w, "run:      %s, started %s\n", status, r.Started.Format("2006-01-02 15:04:05 MST"))
	if s := r.SignIn; s != nil {
		fmt.Fprintf(w, "sign-in:  %s\n", signInText(s))
	}
	fmt.Fprintln(w)

	// The shed column only when the server shed sign-ins in the window:
	// the table of a run that shed none reads as it always did.
	shed := r.Total.Shed > 0
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "route\trequests\treq/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\terrors\t"
	if shed {
		head += "shed\t"
	}
	fmt.Fprintln(tw, head+"MB/s\t")
	for _, row := range append(append([]RouteResult{}, r.Routes...), r.Total) {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t",
			row.Route, row.Requests, row.RPS, row.P50, row.P90, row.P99, row.P999, row.Max, row.Errors)
		if shed {
			fmt.Fprintf(tw, "%d\t", row.Shed)
		}
		fmt.Fprintf(tw, "%.2f\t\n", row.MBps)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, row := range r.Routes {
		for _, c := range topCauses(row.Causes, 3) {
			fmt.Fprintf(w, "  %s error: %s (%d×)\n", row.Route, c, row.Causes[c])
		}
	}
	if err := writeTiming(w, r); err != nil {
		return err
	}
	return writeFront(w, r)
}

// mixText says how many users browse without an account, if any do.
func mixText(s Settings) string {
	if s.Anonymous == 0 {
		return ""
	}
	return fmt.Sprintf(", --anonymous %g: %d of the %d virtual users browse without an account (routes anon-…)", s.Anonymous, s.AnonymousUsers, s.Concurrency)
}

// signInText says how the sign-ins went: who got in when, how many the
// server shed, and who was still waiting at the end.
func signInText(s *SignInResult) string {
	t := numbers.Sprintf("%d users sign in: %d got in before the window (in %.1fs), %d inside it", s.Users, s.Before, s.PhaseS, s.During)
	if s.Waiting > 0 {
		t += numbers.Sprintf("; %d STILL WAITING at the end (they made no page requests)", s.Waiting)
	} else {
		t += "; none still waiting at the end"
	}
	t += numbers.Sprintf(". %d attempts: %d shed by the server's sign-in gate (503 + Retry-After: waited on and retried, not errors)", s.Attempts, s.Shed)
	if s.Errors > 0 {
		t += numbers.Sprintf(", %d refused or failed otherwise (errors, retried)", s.Errors)
	}
	return t
}

// schemaText says which schema a server ran on, as its /healthz said.
func schemaText(indexes bool) string {
	if indexes {
		return "schema with the hot queries' indexes"
	}
	return "schema without the hot queries' indexes"
}

func topCauses(causes map[string]int64, n int) []string {
	var keys []string
	for k := range causes {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return causes[keys[i]] > causes[keys[j]] })
	return keys[:min(n, len(keys))]
}

// DataSize is the seeded rows of a run's server, "100,000 users, 1,500,000 photos, …".
func DataSize(rows map[string]int64) string {
	if len(rows) == 0 {
		return "unknown"
	}
	var parts []string
	for _, t := range []string{"users", "photos", "tags", "photo_tags", "favorites", "comments"} {
		if n, ok := rows[t]; ok {
			parts = append(parts, numbers.Sprintf("%d %s", n, t))
		}
	}
	return strings.Join(parts, ", ")
}

// WriteJSON writes the result to path.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// numbers prints 1234567 as 1,234,567.
var numbers = message.NewPrinter(language.English)
