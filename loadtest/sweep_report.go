package loadtest

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// WriteSweep writes dir/README.md (the table across stages, with ratios to
// the stage before), dir/chart.svg (throughput and p99 per stage) and
// dir/sweep.json (everything measured).
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

func writeSweepMarkdown(w io.Writer, sr *SweepResult) error {
	fmt.Fprintln(w, "# Stage sweep")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Measured %s with:\n\n    %s\n\n", sr.Started.Format("2006-01-02 15:04 MST"), sr.Command)
	fmt.Fprintf(w, "Machine: %s, %d cores, %s memory, %s, %s. The server, PostgreSQL and the load tool share it.\n\n",
		orUnknown(sr.Host.CPU), sr.Host.Cores, orUnknown(sr.Host.Memory), orUnknown(sr.Host.Kernel), sr.Host.Go)
	if len(sr.Stages) > 0 {
		r := sr.Stages[0]
		load := fmt.Sprintf("closed loop, %d virtual users", r.Settings.Concurrency)
		if r.Settings.Mode == "open" {
			load = fmt.Sprintf("open loop at %g req/s", r.Settings.Rate)
		}
		fmt.Fprintf(w, "Data: %s. Scenario %s, %s, %s per stage.\n\n", dataSize(r.Server.Rows), r.Settings.Scenario, load, r.Settings.Duration)
	}
	fmt.Fprintln(w, "![throughput and p99 latency per stage](chart.svg)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| stage | name | req/s | × previous | p50 ms | p99 ms | p99.9 ms | errors |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---:|")
	var prev *Result
	for _, r := range sr.Stages {
		ratio := "—"
		if prev != nil && prev.Total.RPS > 0 {
			ratio = fmt.Sprintf("%.2f×", r.Total.RPS/prev.Total.RPS)
		}
		fmt.Fprintf(w, "| %d | %s | %.1f | %s | %.2f | %.2f | %.2f | %d |\n",
			r.Server.Stage, r.Server.StageName, r.Total.RPS, ratio, r.Total.P50, r.Total.P99, r.Total.P999, r.Total.Errors)
		prev = r
	}
	for _, f := range sr.Failed {
		fmt.Fprintf(w, "| %d | (failed) | | | | | | %s |\n", f.Stage, strings.ReplaceAll(f.Error, "\n", " "))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "## Per route: req/s (p99 ms)")
	fmt.Fprintln(w)
	routes := map[string]bool{}
	for _, r := range sr.Stages {
		for _, rr := range r.Routes {
			routes[rr.Route] = true
		}
	}
	var names []string
	for n := range routes {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprint(w, "| route |")
	for _, r := range sr.Stages {
		fmt.Fprintf(w, " %d %s |", r.Server.Stage, r.Server.StageName)
	}
	fmt.Fprint(w, "\n|---|")
	for range sr.Stages {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
	for _, n := range names {
		fmt.Fprintf(w, "| %s |", n)
		for _, r := range sr.Stages {
			cell := ""
			for _, rr := range r.Routes {
				if rr.Route == n {
					cell = fmt.Sprintf("%.1f (%.1f)", rr.RPS, rr.P99)
				}
			}
			fmt.Fprintf(w, " %s |", cell)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	writeSweepTiming(w, sr)
	fmt.Fprintln(w, "Regenerate with `make loadtest-sweep` (see docs/loadtest.md); sweep.json has every figure.")
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// sweepSVG draws req/s as bars and p99 as a line, both on log scales (stage
// 0 and stage 4 differ by orders of magnitude).
func sweepSVG(sr *SweepResult) string {
	const W, H, left, right, top, bottom = 720, 360, 70, 70, 40, 50
	plotW, plotH := float64(W-left-right), float64(H-top-bottom)
	n := len(sr.Stages)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">FlickrKillr: throughput (bars, req/s) and p99 latency (line, ms) per stage</text>`+"\n", left)
	if n == 0 {
		b.WriteString("</svg>\n")
		return b.String()
	}
	maxRPS, maxP99 := 1.0, 1.0
	for _, r := range sr.Stages {
		maxRPS, maxP99 = math.Max(maxRPS, r.Total.RPS), math.Max(maxP99, r.Total.P99)
	}
	rpsTop, p99Top := math.Pow(10, math.Ceil(math.Log10(maxRPS))), math.Pow(10, math.Ceil(math.Log10(maxP99)))
	y := func(v, topV float64) float64 {
		if v < 1 {
			v = 1
		}
		return float64(top) + plotH*(1-math.Log10(v)/math.Log10(topV))
	}
	// Axes with decade ticks.
	for d := 1.0; d <= rpsTop; d *= 10 {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n",
			left, W-right, y(d, rpsTop), y(d, rpsTop), left-6, y(d, rpsTop)+4, d)
	}
	for d := 1.0; d <= p99Top; d *= 10 {
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" fill="#c2185b">%g ms</text>`+"\n", W-right+6, y(d, p99Top)+4, d)
	}
	slot := plotW / float64(n)
	var points []string
	for i, r := range sr.Stages {
		x := float64(left) + slot*float64(i)
		by := y(r.Total.RPS, rpsTop)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#0063dc"/>`+"\n", x+slot*0.2, by, slot*0.6, float64(top)+plotH-by)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#0063dc">%.0f</text>`+"\n", x+slot/2, by-6, r.Total.RPS)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d %s</text>`+"\n", x+slot/2, H-bottom+18, r.Server.Stage, r.Server.StageName)
		points = append(points, fmt.Sprintf("%.1f,%.1f", x+slot/2, y(r.Total.P99, p99Top)))
	}
	fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#c2185b" stroke-width="2.5"/>`+"\n", strings.Join(points, " "))
	for _, p := range points {
		xy := strings.Split(p, ",")
		fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="4" fill="#c2185b"/>`+"\n", xy[0], xy[1])
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">log scales; bars: req/s (left), line: p99 ms (right)</text>`+"\n", left, H-12)
	b.WriteString("</svg>\n")
	return b.String()
}
