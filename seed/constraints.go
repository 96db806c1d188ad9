package seed

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// savedSchema is what dropConstraints removed, to put back after the load.
type savedSchema struct {
	keys    []ddl // primary keys and unique constraints
	indexes []ddl // plain indexes (stage 4's, when the schema has them)
	foreign []ddl // foreign keys, validated when they are added back
}

type ddl struct {
	table, name, def string
}

// dropConstraints removes every constraint and index of the loaded tables:
// building an index once over sorted data is far cheaper than updating it
// row by row, and checking foreign keys in one join is cheaper than per row.
// Whatever the schema has (stage 4's indexes or not) is put back as it was.
// A foreign key that points into a loaded table goes too, even from a table
// the seed does not load (stage 10's user_favorites -> users): the key it
// needs is dropped.
func dropConstraints(ctx context.Context, tx pgx.Tx, loaded []string) (savedSchema, error) {
	var s savedSchema
	rows, err := tx.Query(ctx, `SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), contype::text
		FROM pg_constraint
		WHERE connamespace = 'public'::regnamespace AND contype IN ('p', 'u', 'f')
		  AND (conrelid::regclass::text = ANY($1) OR (contype = 'f' AND confrelid::regclass::text = ANY($1)))
		ORDER BY conname`, loaded)
	if err != nil {
		return s, fmt.Errorf("seed: read constraints: %w", err)
	}
	for rows.Next() {
		var d ddl
		var kind string
		if err := rows.Scan(&d.table, &d.name, &d.def, &kind); err != nil {
			return s, err
		}
		if kind == "f" {
			s.foreign = append(s.foreign, d)
		} else {
			s.keys = append(s.keys, d)
		}
	}
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("seed: read constraints: %w", err)
	}
	rows, err = tx.Query(ctx, `SELECT tablename, indexname, indexdef FROM pg_indexes
		WHERE schemaname = 'public' AND tablename = ANY($1)
		  AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE connamespace = 'public'::regnamespace)
		ORDER BY indexname`, loaded)
	if err != nil {
		return s, fmt.Errorf("seed: read indexes: %w", err)
	}
	for rows.Next() {
		var d ddl
		if err := rows.Scan(&d.table, &d.name, &d.def); err != nil {
			return s, err
		}
		s.indexes = append(s.indexes, d)
	}
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("seed: read indexes: %w", err)
	}
	var stmts []string
	for _, d := range s.foreign {
		stmts = append(stmts, fmt.Sprintf(`ALTER TABLE %s DROP CONSTRAINT %s`, d.table, pgx.Identifier{d.name}.Sanitize()))
	}
	for _, d := range s.indexes {
		stmts = append(stmts, fmt.Sprintf(`DROP INDEX %s`, pgx.Identifier{d.name}.Sanitize()))
	}
	for _, d := range s.keys {
		stmts = append(stmts, fmt.Sprintf(`ALTER TABLE %s DROP CONSTRAINT %s`, d.table, pgx.Identifier{d.name}.Sanitize()))
	}
	for _, stmt := range stmts {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return s, fmt.Errorf("seed: %s: %w", stmt, err)
		}
	}
	return s, nil
}

// restoreConstraints puts back keys, then indexes, then foreign keys (which
// need the keys), timing each group.
func restoreConstraints(ctx context.Context, tx pgx.Tx, s savedSchema, prog *progress, label string) ([]TableReport, error) {
	var steps []TableReport
	groups := []struct {
		name string
		list []ddl
		stmt func(d ddl) string
	}{
		{"keys", s.keys, func(d ddl) string {
			return fmt.Sprintf(`ALTER TABLE %s ADD CONSTRAINT %s %s`, d.table, pgx.Identifier{d.name}.Sanitize(), d.def)
		}},
		{"indexes", s.indexes, func(d ddl) string { return d.def }},
		{"foreign keys", s.foreign, func(d ddl) string {
			return fmt.Sprintf(`ALTER TABLE %s ADD CONSTRAINT %s %s`, d.table, pgx.Identifier{d.name}.Sanitize(), d.def)
		}},
	}
	for _, g := range groups {
		if len(g.list) == 0 {
			continue
		}
		t := time.Now()
		prog.printf("  %s%-*s rebuilding %d …\n", label, prog.names, g.name, len(g.list))
		for _, d := range g.list {
			if _, err := tx.Exec(ctx, g.stmt(d)); err != nil {
				return steps, fmt.Errorf("seed: rebuild %s: %w", d.name, err)
			}
		}
		steps = append(steps, TableReport{Table: g.name, Rows: int64(len(g.list)), Duration: time.Since(t)})
	}
	return steps, nil
}
