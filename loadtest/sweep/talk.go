package sweep

import (
	"fmt"
)

// talkFigure is what the PyCon 2007 talk measured for the iteration that a
// stage retells (DESIGN.md): req/s with its own tool. Before, when set, is
// the figure the step is measured against instead of the previous stage's
// (the talk's index step is "the same iteration without an index").
type talkFigure struct {
	RPS    float64
	Before float64
	Note   string
}

var talk = map[int]talkFigure{
	0: {RPS: 23},
	1: {RPS: 139},
	2: {RPS: 217},
	3: {RPS: 616},
	4: {RPS: 616, Before: 28, Note: "without the index: 28"},
}

// talkCells are the talk's req/s and × previous for a stage ("—" when the
// talk has none); the ratio needs the previous stage in the table.
func talkCells(stage int, hasPrev bool) string {
	f, ok := talk[stage]
	if !ok {
		return "— | —"
	}
	cell := fmt.Sprintf("%g", f.RPS)
	if f.Note != "" {
		cell += " (" + f.Note + ")"
	}
	before := f.Before
	if before == 0 && hasPrev {
		before = talk[stage-1].RPS
	}
	r := "—"
	if before > 0 {
		r = fmt.Sprintf("%.2f×", f.RPS/before)
		if f.Before > 0 {
			r += " over no index"
		}
	}
	return cell + " | " + r
}
