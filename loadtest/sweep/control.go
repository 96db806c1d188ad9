package sweep

import (
	"context"
	"fmt"
	"io"
	"math"
)

// Control is the sweep's control pair: its first run measured again, the
// same way, after every other run. The two measure the same code on the
// same schema and data, so how far they differ is the noise each of the
// sweep's ratios carries (the sweep of 4 Dec read "3 --indexes" and "4",
// the same code, 1.27× apart).
type Control struct {
	Run    int  `json:"run"`    // Runs[Run] is the pair's first measurement
	Repeat *Run `json:"repeat"` // the same run measured again at the sweep's end
	// The pair's req/s and their spread: the higher over the lower, minus
	// one, in percent. Zero when either could not be measured.
	FirstRPS      float64 `json:"first_rps"`
	SecondRPS     float64 `json:"second_rps"`
	SpreadPercent float64 `json:"spread_percent"`
	// The load tool's own CPU per request in each (ms): the same work in
	// both, so their ratio is how much slower the machine ran one of them.
	// CorrectedSpreadPercent is the pair's spread with each req/s scaled by
	// it (req/s × the tool's ms per request): what is left once the
	// machine's speed is taken out. On the shared machine of 7 Dec the
	// tool's ms per request moved with the app host's, 0.23 to 0.39 ms
	// between identical runs of stage 6: four pairs read 26.5, 6.9, 3.9
	// and 14.9% apart, corrected 6.5, 15.1, 4.6 and 0.3%; all eight runs
	// 55-100 req/s, corrected within 1.18× (docs/scale-model.md,
	// "Identical runs"). Zero when the CPU was not read.
	FirstToolMS            float64 `json:"first_tool_ms,omitempty"`
	SecondToolMS           float64 `json:"second_tool_ms,omitempty"`
	CorrectedSpreadPercent float64 `json:"corrected_spread_percent,omitempty"`
}

// spread is the higher of a and b over the lower, minus one, in percent.
func spread(a, b float64) float64 { return (math.Max(a, b)/math.Min(a, b) - 1) * 100 }

// toolMS is the load tool's CPU per request over r's window, in ms.
func toolMS(r *Run) float64 {
	if r.CPU == nil || r.CPU.Requests == 0 {
		return 0
	}
	return 1000 * r.CPU.ToolS / float64(r.CPU.Requests)
}

// correct reads the tool's CPU per request of both and the spread without
// the machine's speed.
func (c *Control) correct(first, repeat *Run) {
	c.FirstToolMS, c.SecondToolMS = toolMS(first), toolMS(repeat)
	if c.FirstToolMS > 0 && c.SecondToolMS > 0 {
		c.CorrectedSpreadPercent = spread(c.FirstRPS*c.FirstToolMS, c.SecondRPS*c.SecondToolMS)
	}
}

// readableSpread is the control pair's spread (percent) above which the
// sweep cannot read its small ratios: a step that moves req/s by less than
// the spread is indistinguishable from running the same thing twice.
const readableSpread = 5.0

// measured says whether both of the pair were measured.
func (c *Control) measured() bool { return c != nil && c.FirstRPS > 0 && c.SecondRPS > 0 }

// text is "control pair: X and Y req/s, spread Z%", or why it has no spread.
func (c *Control) text(sr *Result) string {
	label := sr.Runs[c.Run].Label()
	if !c.measured() {
		why := "its first measurement failed"
		if c.Repeat != nil && c.Repeat.Error != "" {
			why = "the repeat failed: " + c.Repeat.Error
		}
		return fmt.Sprintf("control pair (%s measured again at the sweep's end): no spread, %s", label, why)
	}
	t := fmt.Sprintf("control pair (%s measured again at the sweep's end): %.1f and %.1f req/s, spread %.1f%%", label, c.FirstRPS, c.SecondRPS, c.SpreadPercent)
	if c.CorrectedSpreadPercent > 0 {
		t += fmt.Sprintf("; the load tool's own CPU per request, the same work in both, was %.3f and %.3f ms (the machine %.0f%% slower in one), and with each run's req/s scaled by it the pair is %.1f%% apart",
			c.FirstToolMS, c.SecondToolMS, spread(c.FirstToolMS, c.SecondToolMS), c.CorrectedSpreadPercent)
	}
	return t
}

// unreadable says whether a ratio of the sweep is within the control pair's
// spread of 1×, when that spread is over readableSpread.
func (sr *Result) unreadable(ratio float64) bool {
	c := sr.Control
	if !c.measured() || c.SpreadPercent <= readableSpread || ratio <= 0 {
		return false
	}
	return math.Max(ratio, 1/ratio) <= 1+c.SpreadPercent/100
}

// writeControl is the control pair's line under the ladder table (and in
// the docs' ladder blocks); nothing for a sweep recorded before it had one.
func writeControl(w io.Writer, sr *Result) {
	if sr.Control == nil {
		return
	}
	fmt.Fprintf(w, "**Identical runs:** %s.", sr.Control.text(sr))
	if sr.Control.measured() && sr.Control.SpreadPercent > readableSpread {
		fmt.Fprintf(w, " That is over %g%%: a ratio within the spread of 1× cannot be told from the same run twice, and is marked unreadable.", readableSpread)
	}
	fmt.Fprint(w, "\n\n")
}

// controlRun picks the run the pair repeats: the first measured, or the
// first that could be measured; -1 when none was.
func controlRun(runs []*Run) int {
	for i, r := range runs {
		if r.Result != nil {
			return i
		}
	}
	return -1
}

// measureControl measures the control run again, after every other run.
func (s *sweeper) measureControl(ctx context.Context, sr *Result) {
	i := controlRun(sr.Runs)
	if i < 0 {
		return
	}
	first := sr.Runs[i]
	repeat := &Run{Stage: first.Stage, Name: first.Name, Indexes: first.Indexes, Schema: first.Schema, Ladders: first.Ladders,
		Anonymous: first.Anonymous, SecondMix: first.SecondMix}
	sr.Control = &Control{Run: i, Repeat: repeat}
	s.logf("control pair: %s once more, as the sweep's first run", first.Label())
	if s.measureRun(ctx, repeat) != nil {
		s.logf("%s", sr.Control.text(sr))
		return
	}
	a, b := first.Result.Total.RPS, repeat.Result.Total.RPS
	sr.Control.FirstRPS, sr.Control.SecondRPS = a, b
	if a > 0 && b > 0 {
		sr.Control.SpreadPercent = spread(a, b)
		sr.Control.correct(first, repeat)
	}
	s.logf("%s", sr.Control.text(sr))
}
