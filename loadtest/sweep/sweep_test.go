package sweep

import (
	"strings"
	"testing"
)

// fiveStages are stages 0-4 of the design: the indexes come with stage 4.
var fiveStages = []StageSchemas{
	{Stage: 0, Name: "cgi", Own: 1, Indexed: 2}, {Stage: 1, Name: "db-sessions", Own: 1, Indexed: 2}, {Stage: 2, Name: "mem-sessions", Own: 1, Indexed: 2, Note: "**Buys:** sessions stop loading the database. **Shows:** on the aggregate."}, {Stage: 3, Name: "cache", Own: 1, Indexed: 2}, {Stage: 4, Name: "indexes", Own: 2, Indexed: 2},
}

func TestSweepPlan(t *testing.T) {
	labels := func(runs []*Run) string {
		var l []string
		for _, r := range runs {
			l = append(l, r.Label())
		}
		return strings.Join(l, ", ")
	}
	t.Run("both ladders from the index schema: no migration until the tagged runs, stage 4 measured once", func(t *testing.T) {
		runs, ladders, err := planSweep(fiveStages, "both", 2)
		if err != nil {
			t.Fatal(err)
		}
		want := "0 cgi --indexes, 1 db-sessions --indexes, 2 mem-sessions --indexes, 3 cache --indexes, 4 indexes, 0 cgi, 1 db-sessions, 2 mem-sessions, 3 cache"
		if got := labels(runs); got != want {
			t.Fatalf("runs %s\nwant %s", got, want)
		}
		if len(ladders) != 2 || ladders[0].Name != LadderTagged || ladders[1].Name != LadderAlone {
			t.Fatalf("ladders %+v", ladders)
		}
		for _, l := range ladders {
			if len(l.Steps) != 5 || runs[l.Steps[4].Run].Label() != "4 indexes" {
				t.Fatalf("%s: steps %+v", l.Name, l.Steps)
			}
		}
		if got := runs[4].Ladders; len(got) != 2 {
			t.Fatalf("stage 4 serves ladders %v, want both", got)
		}
		if restoreArgs(fiveStages, 2)[1] != "4" {
			t.Fatalf("restore to version 2 with %v", restoreArgs(fiveStages, 2))
		}
	})
	t.Run("from the schema without indexes: the tagged runs first", func(t *testing.T) {
		runs, _, _ := planSweep(fiveStages, "both", 1)
		if got := labels(runs[:4]); got != "0 cgi, 1 db-sessions, 2 mem-sessions, 3 cache" {
			t.Fatalf("first runs %s", got)
		}
	})
	t.Run("later stages with their own migrations join both ladders", func(t *testing.T) {
		more := append(append([]StageSchemas{}, fiveStages...), StageSchemas{Stage: 5, Name: "fanout", Own: 2, Indexed: 2}, StageSchemas{Stage: 6, Name: "queue", Own: 3, Indexed: 3}, StageSchemas{Stage: 7, Name: "scale-out", Own: 3, Indexed: 3})
		runs, ladders, err := planSweep(more, "both", 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 12 || len(ladders[1].Steps) != 8 {
			t.Fatalf("%d runs (%s), alone steps %d; want 12 and 8", len(runs), labels(runs), len(ladders[1].Steps))
		}
		if got := labels(runs[len(runs)-2:]); got != "6 queue, 7 scale-out" {
			t.Fatalf("the highest schema should come last: %s", labels(runs))
		}
	})
	t.Run("one ladder", func(t *testing.T) {
		runs, ladders, _ := planSweep(fiveStages[1:3], LadderAlone, 2)
		if got := labels(runs); got != "1 db-sessions --indexes, 2 mem-sessions --indexes" || len(ladders) != 1 {
			t.Fatalf("runs %s, %d ladders", got, len(ladders))
		}
	})
	t.Run("a build without the index migration has no alone ladder", func(t *testing.T) {
		tag := []StageSchemas{{Stage: 0, Name: "cgi", Own: 1, Indexed: 0}, {Stage: 1, Name: "db-sessions", Own: 1, Indexed: 0}}
		if _, _, err := planSweep(tag, "both", 1); err == nil || !strings.Contains(err.Error(), "--ladder tagged") {
			t.Fatalf("planSweep: %v", err)
		}
		if runs, _, err := planSweep(tag, LadderTagged, 1); err != nil || len(runs) != 2 {
			t.Fatalf("tagged: %v, %d runs", err, len(runs))
		}
	})
}

// The topology stages are measured on a second mix too (most visitors
// anonymous): a run of its own after the stage's run, shared by both
// ladders like it, and never taken for the stage's step.
func TestSweepPlanMeasuresTopologyStagesOnBothMixes(t *testing.T) {
	stages := append(append([]StageSchemas{}, fiveStages...),
		StageSchemas{Stage: 6, Name: "queue", Own: 3, Indexed: 3},
		StageSchemas{Stage: 7, Name: "scale-out", Own: 3, Indexed: 3, Mixes: []float64{0.9}},
		StageSchemas{Stage: 8, Name: "front-cache", Own: 3, Indexed: 3, Mixes: []float64{0.9}})
	runs, ladders, err := planSweep(stages, "both", 3)
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, r := range runs {
		labels = append(labels, r.Label())
	}
	if got, want := strings.Join(labels[:5], ", "), "6 queue, 7 scale-out, 7 scale-out --anonymous 0.9, 8 front-cache, 8 front-cache --anonymous 0.9"; got != want {
		t.Fatalf("runs %s\nwant first %s", strings.Join(labels, ", "), want)
	}
	if !runs[2].SecondMix || runs[1].SecondMix || len(runs[2].Ladders) != 2 || len(runs) != 14 {
		t.Fatalf("runs %+v", runs[:5])
	}
	sr := &Result{Runs: runs, Ladders: ladders}
	for _, l := range ladders {
		if r := sr.step(l, 7); r == nil || r.SecondMix {
			t.Fatalf("%s: stage 7's step is %+v, want the logged-in run", l.Name, r)
		}
	}
	if mixes := sr.secondMixes(8); len(mixes) != 1 || mixes[0].Label() != "8 front-cache --anonymous 0.9" {
		t.Fatalf("stage 8's further mixes: %+v", mixes)
	}
}
