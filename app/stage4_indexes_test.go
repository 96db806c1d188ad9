package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"gorm.io/gorm"

	"flickrkillr/models/modeltest"
)

// The hot queries use stage 4's indexes (and, before stage 4, cannot).
func TestStage4HotQueriesUseTheIndexes(t *testing.T) {
	queries := []struct {
		name  string
		sql   string
		index string
	}{
		{"user page", `SELECT id FROM photos WHERE user_id = 7 AND id < 1000000 ORDER BY id DESC LIMIT 25`, "photos_user_id_id_idx"},
		{"tag page", `SELECT photo_id FROM photo_tags WHERE tag_id = 3 AND photo_id < 1000000 ORDER BY photo_id DESC LIMIT 25`, "photo_tags_tag_id_photo_id_idx"},
		{"favorite count", `SELECT count(*) FROM favorites WHERE photo_id = 5`, "favorites_photo_id_idx"},
		{"comments", `SELECT id FROM comments WHERE photo_id = 5 ORDER BY id DESC LIMIT 100`, "comments_photo_id_id_idx"},
	}
	for _, stage := range []int{3, 4} {
		ta := newTestApp(t, stage)
		// Small tables are scanned whatever the indexes: ask the planner
		// what it would do if scans were expensive.
		for _, q := range queries {
			t.Run(q.name, func(t *testing.T) {
				var plan []string
				err := ta.db.Transaction(func(tx *gorm.DB) error {
					tx.Exec(`SET LOCAL enable_seqscan = off`)
					return tx.Raw(`EXPLAIN ` + q.sql).Scan(&plan).Error
				})
				if err != nil {
					t.Fatal(err)
				}
				uses := strings.Contains(strings.Join(plan, "\n"), q.index)
				if stage == 4 && !uses {
					t.Fatalf("stage 4 plan does not use %s:\n%s", q.index, strings.Join(plan, "\n"))
				}
				if stage < 4 && uses {
					t.Fatalf("stage %d already has %s", stage, q.index)
				}
			})
		}
	}
}

// The schema check accepts exactly the stage's own schema, or with
// --indexes exactly the index schema, and names the fix for anything else.
func TestSchemaCheckWithAndWithoutIndexes(t *testing.T) {
	own, idx := mustSchema(t, 3, false), mustSchema(t, 3, true)
	if own == idx {
		t.Fatalf("stage 3 runs on version %d with and without --indexes", own)
	}
	dbAt := map[int64]*gorm.DB{own: newTestApp(t, 3).db, idx: newTestApp(t, 4).db}
	tests := []struct {
		name    string
		stage   int
		indexes bool
		have    int64
		fix     []string // "" accepts
	}{
		{"stage 3 on its own schema", 3, false, own, nil},
		{"stage 3 with --indexes on the index schema", 3, true, idx, nil},
		{"stage 3 with --indexes on its own schema", 3, true, own, []string{"migrate --stage 3 --indexes`", "make migrate STAGE=3 INDEXES=1"}},
		{"stage 3 without --indexes on the index schema", 3, false, idx, []string{"migrate --stage 3`", "make migrate STAGE=3`", "with --indexes"}},
		{"stage 0 with --indexes on its own schema", 0, true, own, []string{"migrate --stage 0 --indexes`"}},
		{"stage 0 with --indexes on the index schema", 0, true, idx, nil},
		{"stage 4 on its own schema", 4, false, idx, nil},
		{"stage 4 with --indexes (the same schema)", 4, true, idx, nil},
		{"stage 4 on a stage 3 schema", 4, false, own, []string{"migrate --stage 4`"}},
		{"stage 4 with --indexes on a stage 3 schema", 4, true, own, []string{"migrate --stage 4 --indexes`"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSchema(context.Background(), dbAt[tt.have], tt.stage, tt.indexes)
			if tt.fix == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var se *SchemaError
			if !errors.As(err, &se) {
				t.Fatalf("CheckSchema: %v, want a SchemaError", err)
			}
			for _, want := range tt.fix {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%q does not name the fix %q", err, want)
				}
			}
			if !tt.indexes && strings.Contains(err.Error(), "migrate --stage 3 --indexes") {
				t.Errorf("%q names --indexes as the migration to run, but it was not asked for", err)
			}
		})
	}
}

// Stage 3's code on the index schema says so in /healthz and in the footer;
// on its own schema it says the opposite.
func TestIndexesShowInHealthzAndFooter(t *testing.T) {
	for _, indexes := range []bool{false, true} {
		t.Run(fmt.Sprintf("indexes %v", indexes), func(t *testing.T) {
			dsn := modeltest.NewDB(t, mustSchema(t, 3, indexes))
			ta := newTestAppWith(t, Config{DatabaseURL: dsn, RedisURL: testRedisURL(t), DataDir: t.TempDir(), Stage: 3, Indexes: indexes})
			b := ta.browser(t)
			mustContain(t, b.get("/healthz"), fmt.Sprintf(`"indexes":%v`, indexes))
			footer := "without the hot queries' indexes"
			if indexes {
				footer = "with the hot queries' indexes"
			}
			mustContain(t, b.get("/"), "Stage <strong>3 · cache</strong>", "Schema: "+footer)
		})
	}
}

func mustSchema(t *testing.T, stage int, indexes bool) int64 {
	t.Helper()
	v, err := SchemaForRun(stage, indexes)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestServeRefusesAMismatchedSchema(t *testing.T) {
	ta := newTestApp(t, 3) // schema without stage 4's indexes
	err := CheckSchema(context.Background(), ta.db, 4, false)
	var se *SchemaError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "migrate --stage 4") {
		t.Fatalf("CheckSchema at stage 4 on a stage 3 schema: %v, want a SchemaError naming the fix", err)
	}
	if err := CheckSchema(context.Background(), ta.db, 3, false); err != nil {
		t.Fatalf("CheckSchema at its own stage: %v", err)
	}
}
