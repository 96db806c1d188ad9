package app

import (
	"reflect"
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
