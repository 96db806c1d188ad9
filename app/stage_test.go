package app

import (
	"reflect"
	"slices"
	"testing"
)

// resolve folds every hook the same way, new ones included: the hook of
// the highest stage up to n that sets it.
func TestResolveTakesTheLastHookOfEveryKind(t *testing.T) {
	typ := reflect.TypeFor[Stage]()
	for _, top := range Stages() {
		r, err := resolve(top.Number)
		if err != nil {
			t.Fatal(err)
		}
		rv := reflect.ValueOf(r)
		for i := range typ.NumField() {
			if typ.Field(i).Type.Kind() != reflect.Func {
				continue
			}
			var want uintptr
			for _, s := range Stages() {
				if f := reflect.ValueOf(s).Field(i); s.Number <= top.Number && !f.IsNil() {
					want = f.Pointer()
				}
			}
			if got := rv.Field(i); (got.IsNil() && want != 0) || (!got.IsNil() && got.Pointer() != want) {
				t.Errorf("stage %d: %s is not the last one set", top.Number, typ.Field(i).Name)
			}
		}
	}
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
