// Package sweep is `flickrkillr loadtest sweep`: every stage measured in
// turn on one or both ladders, each on a fresh server (migrating as each run
// needs), a control pair that says how far identical runs agree, and the
// report of it all: results/README.md, the chart, sweep.json and the docs'
// figure blocks. It takes plain options: the command reads the flags and
// the build's stages (package app, which the sweep does not import); each
// run is measured with package loadtest.
package sweep

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"flickrkillr/loadtest"
)

// StageSchemas is one stage of the build and the schema versions it runs on:
// its own (Own), and with --indexes (Indexed; equal to Own from the stage
// that adds the indexes on, 0 when the build has no index migration).
type StageSchemas struct {
	Stage   int    `json:"stage"`
	Name    string `json:"name"`
	Own     int64  `json:"own_schema"`
	Indexed int64  `json:"indexed_schema,omitempty"`
	// Note is the stage's note (app's Stage.Note): what its step buys and
	// where it shows; the report prints it with the step.
	Note string `json:"note,omitempty"`
	// Mixes are further mixes to measure the stage on, as --anonymous
	// shares, beside the sweep's own (the topology stages, 7 and 8, are also
	// measured with most visitors anonymous: stage 8's front cache serves
	// only them). Each is a run of its own, outside the ladders' steps.
	Mixes []float64 `json:"mixes,omitempty"`
	// Env is what the stage's migrate and serve get on top of the sweep's
	// environment (stage 10: DATABASE_URL the ring, SHARD_URLS).
	Env []string `json:"-"`
	// Instances are the app hosts of a topology stage in model mode
	// (serve --instances); 0 leaves the stage's default.
	Instances int `json:"instances,omitempty"`
}

// The two ladders.
const (
	LadderTagged = "tagged" // each stage on its own schema, as the workshop tags build it
	LadderAlone  = "alone"  // stages before the indexes on the index schema: each step alone
)

// Ladders lists the --ladder values.
var Ladders = []string{LadderTagged, LadderAlone, "both"}

var ladderTitles = map[string]string{
	LadderTagged: "as the tags build it",
	LadderAlone:  "each step alone (--indexes)",
}

// Result is a sweep: the runs in the order they were measured, and the
// ladders that read them.
type Result struct {
	Command      string    `json:"command"`
	Rerun        string    `json:"rerun"`
	Note         string    `json:"note,omitempty"`
	Warmup       string    `json:"warmup"`
	Redis        string    `json:"redis"`
	Host         HostInfo  `json:"host"`
	Started      time.Time `json:"started"`
	PostgresNote string    `json:"postgres_note,omitempty"`
	Runs         []*Run    `json:"runs"`
	Ladders      []Ladder  `json:"ladders"`
	// Control is the control pair: the first run measured again at the
	// sweep's end (nil in a sweep recorded before there was one).
	Control *Control `json:"control,omitempty"`
	// Model is the scale model's spec every server ran with (model mode;
	// docs/scale-model.md), "" for a sweep of the unconstrained machine.
	Model string `json:"model,omitempty"`
}

// Run is one server measured: a stage's code on one schema. A run can
// be a step of both ladders (from stage 4 on, --indexes changes nothing).
type Run struct {
	Stage   int      `json:"stage"`
	Name    string   `json:"name"`
	Note    string   `json:"note,omitempty"` // StageSchemas.Note
	Indexes bool     `json:"indexes"`        // served with --indexes
	Schema  int64    `json:"schema"`
	Ladders []string `json:"ladders"`
	// Anonymous is the run's --anonymous share; SecondMix marks a run on a
	// stage's further mix (StageSchemas.Mixes): not a ladder's step, but
	// shown beside its stage's step. Ladders are the ladders it belongs with.
	Anonymous float64          `json:"anonymous,omitempty"`
	SecondMix bool             `json:"second_mix,omitempty"`
	Result    *loadtest.Result `json:"result,omitempty"`
	CPU       *loadtest.CPU    `json:"cpu,omitempty"`
	Error     string           `json:"error,omitempty"`
	// Retried says why each earlier attempt failed, when the run was
	// measured again.
	Retried []string `json:"retried,omitempty"`
	// Model is the run's hosts over its measured window (model mode).
	Model *ModelRun `json:"model,omitempty"`
	// Removed is what the sweep deleted after the run to give the next one
	// the same data (models.RunMark).
	Removed *Removed `json:"removed,omitempty"`
}

// Removed counts the rows a run added, deleted after it.
type Removed struct {
	Comments  int64 `json:"comments"`
	Favorites int64 `json:"favorites"`
}

// Label names the run: "3 cache", "3 cache --indexes" or
// "7 scale-out --anonymous 0.9".
func (r *Run) Label() string {
	l := fmt.Sprintf("%d %s", r.Stage, r.Name)
	if r.Indexes {
		l += " --indexes"
	}
	if r.Anonymous > 0 {
		l += fmt.Sprintf(" --anonymous %g", r.Anonymous)
	}
	return l
}

// Ladder is one ladder: for each stage, the run measured for it.
type Ladder struct {
	Name  string       `json:"name"`
	Title string       `json:"title"`
	Steps []LadderStep `json:"steps"`
}

// LadderStep is a stage of a ladder; Run indexes Result.Runs.
type LadderStep struct {
	Stage int `json:"stage"`
	Run   int `json:"run"`
}

// HostInfo describes the machine for the record.
type HostInfo struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Memory string `json:"memory"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
}

// Failed lists the runs that could not be measured.
func (sr *Result) Failed() []*Run {
	var failed []*Run
	for _, r := range sr.Runs {
		if r.Error != "" {
			failed = append(failed, r)
		}
	}
	return failed
}

// planSweep turns the stages and the ladder choice into runs, ordered to
// migrate as little as possible: the runs on the schema the database is at
// come first, then each other schema in turn (the index migration on the
// full seed takes a while, so each direction happens once). A stage whose
// own schema already has the indexes is one run that both ladders share.
func planSweep(stages []StageSchemas, ladder string, current int64) ([]*Run, []Ladder, error) {
	var names []string
	switch ladder {
	case LadderTagged, LadderAlone:
		names = []string{ladder}
	case "both", "":
		names = []string{LadderTagged, LadderAlone}
	default:
		return nil, nil, fmt.Errorf("--ladder must be tagged, alone or both (got %q)", ladder)
	}
	type key struct {
		stage   int
		indexes bool
		mix     int // 0: the sweep's own; i: the stage's Mixes[i-1]
	}
	byKey := map[key]*Run{}
	var runs []*Run
	for _, name := range names {
		for _, st := range stages {
			k, schema := key{st.Stage, false, 0}, st.Own
			if name == LadderAlone {
				if st.Indexed == 0 {
					return nil, nil, fmt.Errorf("the %q ladder needs the index migration, which this build does not have: use --ladder tagged (or main)", LadderAlone)
				}
				if st.Indexed != st.Own {
					k, schema = key{st.Stage, true, 0}, st.Indexed
				}
			}
			for mix := 0; mix <= len(st.Mixes); mix++ {
				k.mix = mix
				r := byKey[k]
				if r == nil {
					r = &Run{Stage: st.Stage, Name: st.Name, Note: st.Note, Indexes: k.indexes, Schema: schema}
					if mix > 0 {
						r.Anonymous, r.SecondMix = st.Mixes[mix-1], true
					}
					byKey[k] = r
					runs = append(runs, r)
				}
				r.Ladders = append(r.Ladders, name)
			}
		}
	}
	// Order: the current schema first, then the others in ascending version;
	// within a schema, by stage (a stage's further mixes after its own run:
	// the sort is stable).
	rank := func(r *Run) int64 {
		if r.Schema == current {
			return -1
		}
		return r.Schema
	}
	sort.SliceStable(runs, func(i, j int) bool {
		if ri, rj := rank(runs[i]), rank(runs[j]); ri != rj {
			return ri < rj
		}
		return runs[i].Stage < runs[j].Stage
	})
	var ladders []Ladder
	for _, name := range names {
		l := Ladder{Name: name, Title: ladderTitles[name]}
		for _, st := range stages {
			for i, r := range runs {
				// A further mix's run is beside the step, not a step:
				// the report finds it by its stage (secondMixes).
				if r.Stage == st.Stage && slices.Contains(r.Ladders, name) && !r.SecondMix {
					l.Steps = append(l.Steps, LadderStep{Stage: st.Stage, Run: i})
				}
			}
		}
		ladders = append(ladders, l)
	}
	return runs, ladders, nil
}

// restoreArgs are the migrate flags that bring the database back to the
// schema version it was found at, or nil when no stage runs on it.
func restoreArgs(stages []StageSchemas, version int64) []string {
	for _, st := range stages {
		if st.Own == version {
			return []string{"--stage", fmt.Sprint(st.Stage)}
		}
	}
	for _, st := range stages {
		if st.Indexed == version {
			return []string{"--stage", fmt.Sprint(st.Stage), "--indexes"}
		}
	}
	return nil
}
