package models_test

import (
	"context"
	"testing"
	"time"

	"flickrkillr/migrations"
	"flickrkillr/models"
	"flickrkillr/models/modeltest"
)

// Behind a pooler the statement timeout is the role's default in the
// database (PgBouncer 1.18 refuses it as a startup parameter): a Pooler
// connection sends none and gets the role's; a direct one sends its own,
// which wins, so migrate and seed (0) keep running without one.
func TestStatementTimeoutIsTheRolesBehindAPooler(t *testing.T) {
	dsn := modeltest.NewDB(t, migrations.Latest())
	ctx := context.Background()
	if err := models.SetRoleStatementTimeout(ctx, dsn, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	show := func(opt models.Options) string {
		db, err := models.Open(ctx, dsn, opt)
		if err != nil {
			t.Fatal(err)
		}
		defer models.Close(db)
		var v string
		if err := db.Raw("SHOW statement_timeout").Scan(&v).Error; err != nil {
			t.Fatal(err)
		}
		return v
	}
	if got := show(models.Options{Pooler: true}); got != "1500ms" {
		t.Errorf("behind a pooler: statement_timeout %q, want the role's 1500ms", got)
	}
	if got := show(models.Options{}); got != "0" {
		t.Errorf("direct, no timeout (migrate, seed): statement_timeout %q, want 0", got)
	}
	if got := show(models.Options{StatementTimeout: 5 * time.Second}); got != "5s" {
		t.Errorf("direct with 5s: statement_timeout %q, want 5s", got)
	}
}
