package sweep

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// The model mode's part of the report: each run's hosts, the bounding host
// and the rate it predicts against the rate measured, whether the run was
// valid (the machine and the tool not the limit), and per step which host
// bounded before and after with its CPU per request.

// writeModelIntro says what the model was, beside the machine's line.
func writeModelIntro(w io.Writer, sr *Result) {
	if sr.Model == "" {
		return
	}
	fmt.Fprintf(w, "**Scale model** (docs/scale-model.md): every server ran `serve --model %s`, the same spec at every stage; only the number of hosts changes (the topology stages' app instances). The load tool, the topology's supervisor and the `--db-latency` proxy run outside the model. Each host's CPU is read from its cgroup over the measured window only (not the log-ins, not the warm-up). The unconstrained sweep, what one box does, is [results/README.md](../README.md).\n\n", sr.Model)
}

// writeModelRuns is, per run, the model's verdict and every host.
func writeModelRuns(w io.Writer, sr *Result) {
	runs := modelRuns(sr)
	if len(runs) == 0 {
		return
	}
	fmt.Fprintln(w, "## The model, run by run")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "For each host: CPU per request = its CPU-seconds in the window / the window's requests; it would saturate at quota / CPU per request. The predicted rate is the lowest of them, and that host is the bottleneck; the model explains a run when the measured rate lands within %.0f%% of it. A run is **invalid** when the machine was under %.0f%% idle, or the load tool's CPU plus the hosts' quotas exceed the machine's cores: then the machine or the tool, not a host, may have been the limit. An invalid run is measured again once; one still invalid stays marked, and its figures are not the model's.\n\n", 100*explainedWithin, 100*minIdleShare)
	fmt.Fprintln(w, "| run | req/s | bottleneck | predicted req/s | measured / predicted | tool CPU | machine idle | tool + quotas of cores | valid |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---|")
	for _, r := range runs {
		m := r.Model
		ratio, ok := m.explained(r.Result.Total.RPS)
		verdict := "yes"
		switch {
		case m.Invalid != "" && m.Discarded != "":
			verdict = "**INVALID**, measured twice: " + m.Invalid + " (the first: " + m.Discarded + ")"
		case m.Invalid != "":
			verdict = "**INVALID**: " + m.Invalid
		case m.Discarded != "":
			verdict = "yes, measured again (the first was invalid: " + m.Discarded + ")"
		}
		mark := ""
		if ratio > 0 && !ok {
			mark = " (not within 10%)"
		}
		idle := "—"
		if m.IdleOK {
			idle = fmt.Sprintf("%.0f%%", 100*m.IdleShare)
		}
		fmt.Fprintf(w, "| %s | %.1f | %s | %.1f | %.2f%s | %.2f | %s | %.2f of %d | %s |\n", r.Label(), r.Result.Total.RPS, orDash(m.Bottleneck), m.PredictedRPS,
			ratio, mark, m.ToolCPUs, idle, m.ToolCPUs+m.QuotaCPUs, m.Cores, verdict)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every host of every run: CPUs used of its quota over the window, the share of CFS periods in which it hit its quota, the kernel's throttled time, CPU per request and the rate at which it would saturate (**bold**: the bottleneck).")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| run | host | quota | used | used / quota | periods throttled | throttled ms | CPU ms/request | saturates at req/s |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range runs {
		for _, h := range r.Model.Hosts {
			name := h.Name
			if name == r.Model.Bottleneck {
				name = "**" + name + "**"
			}
			sat := "—"
			if h.SaturatesRPS > 0 {
				sat = fmt.Sprintf("%.1f", h.SaturatesRPS)
			}
			fmt.Fprintf(w, "| %s | %s | %.2f | %.3f | %.0f%% | %.0f%% | %.0f | %.3f | %s |\n", r.Label(), name, h.Quota, h.Used, 100*h.Used/h.Quota,
				100*h.Throttled, h.ThrottledMS, h.CPUPerRequestMS, sat)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "![each host's CPU used as a share of its quota, per run](hosts.svg)")
	fmt.Fprintln(w)
}

// modelRuns are the runs measured in model mode, in the order measured,
// and the control pair's repeat last.
func modelRuns(sr *Result) []*Run {
	var out []*Run
	for _, r := range sr.Runs {
		if r.Model != nil && r.Result != nil {
			out = append(out, r)
		}
	}
	if c := sr.Control; c != nil && c.Repeat != nil && c.Repeat.Model != nil && c.Repeat.Result != nil {
		out = append(out, c.Repeat)
	}
	return out
}

// writeModelStep is a step's model line on one ladder: the host that bound
// before and the one that binds now, each host's CPU per request by role
// before and after, the step the model predicts, and the talk's ratio.
func writeModelStep(w io.Writer, sr *Result, title string, before, now *Run, p, n int) {
	if before == nil || now == nil || before.Model == nil || now.Model == nil || before.Result == nil || now.Result == nil {
		return
	}
	bm, nm := before.Model, now.Model
	talkText := ""
	if f, ok := talk[n]; ok {
		b := f.Before
		if b == 0 {
			b = talk[p].RPS
		}
		if b > 0 {
			talkText = fmt.Sprintf("; the talk: %.2f×", f.RPS/b)
		}
	}
	predicted := "—"
	if bm.PredictedRPS > 0 && nm.PredictedRPS > 0 {
		predicted = fmt.Sprintf("%.2f×", nm.PredictedRPS/bm.PredictedRPS)
	}
	fmt.Fprintf(w, "- model, %s: bounded by **%s** (saturates at %.1f req/s) → **%s** (%.1f req/s); predicted step %s, measured %s%s\n",
		title, orDash(bm.Bottleneck), bm.PredictedRPS, orDash(nm.Bottleneck), nm.PredictedRPS, predicted, sr.ratio(now, before), talkText)
	var parts []string
	for _, name := range uniq(bm.Bottleneck, nm.Bottleneck) {
		parts = append(parts, fmt.Sprintf("%s %s → %s", name, perReq(bm, name), perReq(nm, name)))
	}
	for _, role := range []string{"app", "db", "redis", "front", "worker"} {
		a, b := roleCPU(bm, role), roleCPU(nm, role)
		if a > 0 || b > 0 {
			parts = append(parts, fmt.Sprintf("all %s hosts %.3f → %.3f", role, a, b))
		}
	}
	fmt.Fprintf(w, "  - CPU ms per request: %s\n", strings.Join(parts, "; "))
	if bm.Invalid != "" || nm.Invalid != "" {
		fmt.Fprintln(w, "  - **one of the two runs is invalid** (see the model's table): this step's figures are not the model's")
	}
}

func perReq(m *ModelRun, name string) string {
	if h, ok := m.host(name); ok {
		return fmt.Sprintf("%.3f", h.CPUPerRequestMS)
	}
	return "—"
}

func roleCPU(m *ModelRun, role string) float64 {
	var sum float64
	for _, h := range m.Hosts {
		if h.Role == role {
			sum += h.CPUPerRequestMS
		}
	}
	return sum
}

func uniq(names ...string) []string {
	var out []string
	for _, n := range names {
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// hostsSVG draws each run's hosts, used CPU as a share of quota (a bar per
// host, grouped by run, a line at the quota), the bottleneck outlined.
func hostsSVG(sr *Result) string {
	// By stage, as the ladder reads (a stage's further mix after it); the
	// control pair's repeat stays last.
	runs := modelRuns(sr)
	n := len(runs)
	if c := sr.Control; c != nil && n > 0 && runs[n-1] == c.Repeat {
		n--
	}
	slices.SortStableFunc(runs[:n], func(a, b *Run) int {
		if a.Stage != b.Stage {
			return a.Stage - b.Stage
		}
		return boolInt(a.SecondMix) - boolInt(b.SecondMix)
	})
	var names []string
	for _, r := range runs {
		for _, h := range r.Model.Hosts {
			if !slices.Contains(names, h.Name) {
				names = append(names, h.Name)
			}
		}
	}
	slices.SortFunc(names, func(a, b string) int { return strings.Compare(hostOrder(a), hostOrder(b)) })
	colors := map[string]string{"db": "#d32f2f", "redis": "#7b1fa2", "front": "#f57c00", "app": "#0063dc", "worker": "#388e3c"}
	const H, left, right, top, bottom = 460, 60, 20, 70, 130
	slot := math.Max(70, float64(len(names))*12+20)
	W := max(760, left+right+int(slot*float64(max(1, len(runs)))))
	plotH := float64(H - top - bottom)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">FlickrKillr scale model: each host's CPU used, share of its quota</text>`+"\n", left)
	fmt.Fprintf(&b, `<text x="%d" y="62" fill="#555">--model %s</text>`+"\n", left, xmlEscape(sr.Model))
	x := float64(left)
	for _, role := range []string{"db", "redis", "front", "app", "worker"} {
		fmt.Fprintf(&b, `<rect x="%.1f" y="34" width="12" height="12" fill="%s"/><text x="%.1f" y="45">%s</text>`+"\n", x, colors[role], x+16, role)
		x += 70
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="45">black outline: the bottleneck</text>`+"\n", x)
	const yMax = 1.2
	y := func(v float64) float64 { return float64(top) + plotH*(1-math.Min(v, yMax)/yMax) }
	for _, v := range []float64{0, 0.25, 0.5, 0.75, 1} {
		stroke := "#ddd"
		if v == 1 {
			stroke = "#000"
		}
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s"/><text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", left, W-right, y(v), y(v), stroke, left-6, y(v)+4, v)
	}
	barW := (slot - 20) / float64(max(1, len(names)))
	for i, r := range runs {
		x0 := float64(left) + slot*float64(i) + 10
		for j, name := range names {
			h, ok := r.Model.host(name)
			if !ok || h.Quota <= 0 {
				continue
			}
			v := h.Used / h.Quota
			outline := ""
			if name == r.Model.Bottleneck {
				outline = ` stroke="#000" stroke-width="2"`
			}
			bx := x0 + barW*float64(j)
			fmt.Fprintf(&b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"%s><title>%s %s: %.3f of %.2f CPU</title></rect>`+"\n",
				bx+1, y(v), math.Max(1, barW-2), float64(top)+plotH-y(v), colors[h.Role], outline, xmlEscape(r.Label()), name, h.Used, h.Quota)
		}
		label := r.Label()
		if r.Model.Invalid != "" {
			label += " (invalid)"
		}
		fmt.Fprintf(&b, `<text transform="translate(%.1f,%d) rotate(30)" font-size="11">%s</text>`+"\n", x0, H-bottom+14, xmlEscape(label))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">per run over its measured window; 1 is a host at its quota</text>`+"\n", left, H-8)
	b.WriteString("</svg>\n")
	return b.String()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
