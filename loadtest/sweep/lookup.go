package sweep

import (
	"fmt"
	"slices"
	"sort"
)

// stagesOf lists the stages of every ladder, in order, once each.
func stagesOf(sr *Result) []int {
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
func (sr *Result) step(l Ladder, stage int) *Run {
	for _, st := range l.Steps {
		if st.Stage == stage {
			return sr.Runs[st.Run]
		}
	}
	return nil
}

// secondMixes returns the runs of a stage on its further mixes (the
// topology stages' anonymous mix), once each however many ladders list them.
func (sr *Result) secondMixes(stage int) []*Run {
	var list []*Run
	for _, r := range sr.Runs {
		if r.Stage == stage && r.SecondMix && !slices.Contains(list, r) {
			list = append(list, r)
		}
	}
	return list
}

// sameMix returns the run of stage on the mix of r (another stage's further
// mix), or nil.
func (sr *Result) sameMix(stage int, r *Run) *Run {
	for _, o := range sr.secondMixes(stage) {
		if o.Anonymous == r.Anonymous {
			return o
		}
	}
	return nil
}

// secondMixRuns lists every run on a further mix, in stage order.
func secondMixRuns(sr *Result) []*Run {
	var list []*Run
	for _, n := range stagesOf(sr) {
		list = append(list, sr.secondMixes(n)...)
	}
	return list
}

func stageName(sr *Result, stage int) string {
	for _, r := range sr.Runs {
		if r.Stage == stage {
			return r.Name
		}
	}
	return ""
}

// stageNote is the note of a stage's step (StageSchemas.Note), "" without one.
func stageNote(sr *Result, stage int) string {
	for _, r := range sr.Runs {
		if r.Stage == stage && r.Note != "" {
			return r.Note
		}
	}
	return ""
}

func rps(r *Run) (float64, bool) {
	if r == nil || r.Result == nil {
		return 0, false
	}
	return r.Result.Total.RPS, true
}

// ratio is now's req/s over before's, "1.20×", marked unreadable when it is
// within the control pair's spread and that spread is too wide to read it.
func (sr *Result) ratio(now, before *Run) string {
	a, ok1 := rps(now)
	b, ok2 := rps(before)
	if !ok1 || !ok2 || b == 0 {
		return "—"
	}
	if sr.unreadable(a / b) {
		return fmt.Sprintf("%.2f× (unreadable)", a/b)
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func rpsText(r *Run) string {
	if v, ok := rps(r); ok {
		return fmt.Sprintf("%.1f", v)
	}
	return "—"
}

func p99Text(r *Run) string {
	if _, ok := rps(r); ok {
		return fmt.Sprintf("%.1f", r.Result.Total.P99)
	}
	return "—"
}
