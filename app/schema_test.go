package app

import (
	"errors"
	"testing"
)

// withoutIndexStage drops the stages that bring the index schema (and every
// later one) for the test, as a workshop tag of stages 0-3 is built.
func withoutIndexStage(t *testing.T) {
	t.Helper()
	saved := map[int]Stage{}
	for n, s := range stages {
		saved[n] = s
	}
	t.Cleanup(func() { stages = saved })
	cut := -1
	for _, s := range Stages() {
		if s.Indexes {
			cut = s.Number
			break
		}
	}
	for n := range stages {
		if cut >= 0 && n >= cut {
			delete(stages, n)
		}
	}
}

// At a workshop tag before stage 4 there is no index migration: --indexes
// is a configuration error naming INDEXES, never a crash or a wrong schema.
func TestIndexesWithoutAnIndexMigrationIsAConfigError(t *testing.T) {
	withoutIndexStage(t)
	if HasIndexSchema() {
		t.Fatal("the build still has an index schema")
	}
	cfg := Config{Stage: DefaultStage(), Indexes: true}
	var ce *ConfigError
	if err := cfg.Validate("stage", "indexes"); !errors.As(err, &ce) || ce.Name != "INDEXES" {
		t.Fatalf("Validate: %v, want a ConfigError naming INDEXES", err)
	}
	if _, err := SchemaForRun(cfg.Stage, true); !errors.As(err, &ce) {
		t.Fatalf("SchemaForRun: %v, want a ConfigError", err)
	}
	if _, err := resolveRun(cfg); !IsConfigError(err) {
		t.Fatalf("resolveRun: %v, want a ConfigError", err)
	}
	cfg.Indexes = false
	if err := cfg.Validate("stage", "indexes"); err != nil {
		t.Fatalf("without --indexes: %v", err)
	}
}
