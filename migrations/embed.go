// Package migrations holds the schema as numbered goose SQL files, embedded in
// the binary and applied on purpose by `flickrkillr migrate` (never at boot).
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"

	"github.com/pressly/goose/v3"
)

//go:embed *.sql
var files embed.FS

// Files are the embedded migration files (tests hash them to name templates).
var Files = files

func provider(db *sql.DB) (*goose.Provider, error) {
	p, err := goose.NewProvider(goose.DialectPostgres, db, files)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}

// Latest is the highest migration version embedded in this binary.
func Latest() int64 {
	entries, err := files.ReadDir(".")
	if err != nil || len(entries) == 0 {
		return 0
	}
	var v int64
	for _, e := range entries {
		var n int64
		if _, err := fmt.Sscanf(e.Name(), "%d_", &n); err == nil && n > v {
			v = n
		}
	}
	return v
}

// To moves the schema up or down to exactly version and reports each step
// through logf. Down-migrating is how `migrate --stage 3` removes stage 4's indexes.
func To(ctx context.Context, db *sql.DB, version int64, logf func(format string, args ...any)) error {
	p, err := provider(db)
	if err != nil {
		return err
	}
	current, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("migrations: read version: %w", err)
	}
	var results []*goose.MigrationResult
	switch {
	case current < version:
		results, err = p.UpTo(ctx, version)
	case current > version:
		results, err = p.DownTo(ctx, version)
	}
	for _, r := range results {
		logf("migrate: %s %s (%s)", r.Direction, r.Source.Path, r.Duration.Round(1e6))
	}
	if err != nil {
		return fmt.Errorf("migrations: to version %d: %w", version, err)
	}
	if len(results) == 0 {
		logf("migrate: schema already at version %d", version)
	}
	return nil
}

// Version reports the schema version the database is at (0: nothing applied).
func Version(ctx context.Context, db *sql.DB) (int64, error) {
	p, err := provider(db)
	if err != nil {
		return 0, err
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrations: read version: %w", err)
	}
	return v, nil
}
