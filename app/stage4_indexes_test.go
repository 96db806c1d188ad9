package app

import (
	"context"
	"errors"
	"gorm.io/gorm"
	"strings"
	"testing"
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

func TestServeRefusesAMismatchedSchema(t *testing.T) {
	ta := newTestApp(t, 3) // schema without stage 4's indexes
	err := CheckSchema(context.Background(), ta.db, 4)
	var se *SchemaError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "migrate --stage 4") {
		t.Fatalf("CheckSchema at stage 4 on a stage 3 schema: %v, want a SchemaError naming the fix", err)
	}
	if err := CheckSchema(context.Background(), ta.db, 3); err != nil {
		t.Fatalf("CheckSchema at its own stage: %v", err)
	}
}
