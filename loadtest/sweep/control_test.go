package sweep

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"flickrkillr/loadtest"
)

// The control pair is in the report and in sweep.json; over 5% of spread,
// the ratios within it of 1× are marked unreadable (in the ladder table, the
// steps and the docs' blocks), the others are not; a sweep recorded before
// there was a pair reads as before.
func TestControlPairMarksSmallRatiosUnreadable(t *testing.T) {
	report := func(sr *Result) string {
		var md bytes.Buffer
		if err := writeSweepMarkdown(&md, sr); err != nil {
			t.Fatal(err)
		}
		return md.String()
	}
	if got := report(fixedSweep()); strings.Contains(got, "control pair") || strings.Contains(got, "unreadable") {
		t.Fatal("a sweep without a control pair mentions one")
	}

	sr := fixedSweep() // its first run is 0 cgi --indexes at 20 req/s
	sr.Control = &Control{Run: 0, Repeat: &Run{Stage: 0, Name: "cgi", Indexes: true, Result: fixedResult(0, "cgi", true, 23, 1000)},
		FirstRPS: 20, SecondRPS: 23, SpreadPercent: 15}
	got := report(sr)
	for _, want := range []string{
		"**Identical runs:** control pair (0 cgi --indexes measured again at the sweep's end): 20.0 and 23.0 req/s, spread 15.0%. That is over 5%",
		"| 4 indexes | 1990.0 ‡ | 132.67× | 20.1 | 1990.0 ‡ | 0.99× (unreadable) | 20.1 |", // 1990 against 2000
		"- each step alone (--indexes): 2000.0 → 1990.0 req/s (**0.99× (unreadable)**)",
		"- control pair (0 cgi --indexes measured again at the sweep's end): 20.0 and 23.0 req/s, spread 15.0%: a ratio within it of 1× is unreadable",
		"- as the tags build it: 10.0 → 12.0 req/s (**1.20×**)", // outside the spread
		"(**1.43×**)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("README lacks %q", want)
		}
	}
	if t.Failed() || os.Getenv("SHOW") != "" {
		t.Log(got)
	}

	dir := t.TempDir()
	if err := WriteReport(dir, sr); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Control struct {
			Run           int     `json:"run"`
			Repeat        *Run    `json:"repeat"`
			FirstRPS      float64 `json:"first_rps"`
			SecondRPS     float64 `json:"second_rps"`
			SpreadPercent float64 `json:"spread_percent"`
		} `json:"control"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, "sweep.json"))
	if err := json.Unmarshal(b, &back); err != nil || back.Control.Repeat == nil || back.Control.SpreadPercent != 15 || back.Control.SecondRPS != 23 {
		t.Fatalf("sweep.json's control %+v (%v)", back.Control, err)
	}
	readme := filepath.Join(t.TempDir(), "README.md")
	os.WriteFile(readme, []byte("<!-- sweep: ladders -->\n<!-- /sweep -->\n"), 0o644)
	if _, err := WriteStepBlocks([]string{readme}, sr); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(readme); !bytes.Contains(b, []byte("spread 15.0%")) || !bytes.Contains(b, []byte("0.99× (unreadable)")) {
		t.Errorf("the ladders block lacks the control pair:\n%s", b)
	}

	// Within 5%, the same sweep's ratios are read as they are.
	sr.Control.SecondRPS, sr.Control.SpreadPercent = 20.4, 2
	got = report(sr)
	if !strings.Contains(got, "20.0 and 20.4 req/s, spread 2.0%.\n") || strings.Contains(got, "unreadable") {
		t.Errorf("a 2%% spread: the pair's line, and no ratio marked:\n%s", got)
	}
}

// The run the pair repeats is the first measured, or the first that could be.
func TestControlRunIsTheFirstMeasured(t *testing.T) {
	ok, failed := &Run{Result: fixedResult(4, "indexes", true, 10, 10)}, &Run{Error: "boom"}
	for _, tt := range []struct {
		runs []*Run
		want int
	}{{[]*Run{ok, failed}, 0}, {[]*Run{failed, ok}, 1}, {[]*Run{failed}, -1}, {nil, -1}} {
		if got := controlRun(tt.runs); got != tt.want {
			t.Errorf("controlRun = %d, want %d", got, tt.want)
		}
	}
}

// The control pair takes the machine's speed out: the load tool does the
// same work per request in both runs, so its CPU per request says how much
// slower the machine ran one of them (the figures of 7 Dec's pair: 79.0
// and 99.9 req/s, the tool 0.279 and 0.235 ms per request).
func TestControlPairCorrectsForTheMachinesSpeed(t *testing.T) {
	run := func(rps, toolMS float64) *Run {
		r := &Run{Stage: 6, Name: "queue", Result: fixedResult(6, "queue", true, rps, 1000)}
		r.CPU = &loadtest.CPU{Requests: 1000, ToolS: toolMS}
		return r
	}
	first, repeat := run(79.0, 0.279), run(99.9, 0.235)
	c := &Control{Run: 0, Repeat: repeat, FirstRPS: 79.0, SecondRPS: 99.9, SpreadPercent: spread(79.0, 99.9)}
	c.correct(first, repeat)
	if c.FirstToolMS != 0.279 || c.SecondToolMS != 0.235 || c.CorrectedSpreadPercent < 6.4 || c.CorrectedSpreadPercent > 6.6 {
		t.Fatalf("corrected %+v, want the tool's 0.279 and 0.235 ms and 6.5%% apart", c)
	}
	sr := &Result{Runs: []*Run{first}, Control: c}
	want := "spread 26.5%; the load tool's own CPU per request, the same work in both, was 0.279 and 0.235 ms (the machine 19% slower in one), and with each run's req/s scaled by it the pair is 6.5% apart"
	if got := c.text(sr); !strings.Contains(got, want) {
		t.Fatalf("text %q, want it to say %q", got, want)
	}
}
