package app

import (
	"reflect"
	"slices"
	"testing"
)

// resolve folds the stages up to n: each maker is the last one set, the
// wrappers and parts stay with their stages (steps, in order), the pool is
// the largest asked for.
func TestResolveFoldsMakersAndKeepsTheStagesInOrder(t *testing.T) {
	makers := []string{"Serve", "Sessions", "Views", "Lookups", "Uploads", "Front", "Throttles", "FrontPages"}
	for _, top := range Stages() {
		r, err := resolve(top.Number)
		if err != nil {
			t.Fatal(err)
		}
		var steps []int
		pool := 0
		for _, s := range r.steps {
			steps = append(steps, s.Number)
			pool = max(pool, s.Pool)
		}
		for i, n := range steps {
			if n > top.Number || (i > 0 && n <= steps[i-1]) {
				t.Fatalf("stage %d runs the stages %v, not 0..%d in order", top.Number, steps, top.Number)
			}
		}
		if len(steps) != len(stagesUpTo(top.Number)) {
			t.Errorf("stage %d runs %v, want every stage up to it", top.Number, steps)
		}
		if r.Pool != pool {
			t.Errorf("stage %d: pool %d, want the largest asked for, %d", top.Number, r.Pool, pool)
		}
		for _, name := range makers {
			var want uintptr
			for _, s := range r.steps {
				if f := reflect.ValueOf(s).FieldByName(name); !f.IsNil() {
					want = f.Pointer()
				}
			}
			if got := reflect.ValueOf(r).FieldByName(name); (got.IsNil() && want != 0) || (!got.IsNil() && got.Pointer() != want) {
				t.Errorf("stage %d: %s is not the last one set", top.Number, name)
			}
		}
	}
}

func stagesUpTo(n int) []Stage {
	var list []Stage
	for _, s := range Stages() {
		if s.Number <= n {
			list = append(list, s)
		}
	}
	return list
}

// A stage's flags come with the stage: serve takes --workers where stage 6
// is in the build and --instances where stage 7 is, and not before.
func TestServeTakesTheFlagsOfTheStagesItHas(t *testing.T) {
	flags := StageFlags("serve")
	for _, tc := range []struct {
		flag  string
		stage int
	}{{"workers", 6}, {"instances", 7}} {
		_, have := LookupStage(tc.stage)
		if got := slices.Contains(flags, tc.flag); got != have {
			t.Errorf("serve takes --%s: %v; stage %d is in this build: %v", tc.flag, got, tc.stage, have)
		}
	}
	if !slices.Contains(StageFlags("worker"), "workers") && HighestStage() >= 6 {
		t.Error("worker does not take --workers")
	}
}
