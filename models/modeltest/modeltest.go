// Package modeltest gives tests a fresh, real PostgreSQL database migrated to
// a chosen schema version, cloned from a template so that each one takes
// milliseconds. `make test` starts a project-local cluster and sets
// TEST_DATABASE_URL; without it the tests skip (and fail under CI).
package modeltest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"flickrkillr/migrations"
)

// AdminURL is the URL of the test cluster's maintenance database, or skips
// the test when there is none (and fails it under CI, where it must exist).
func AdminURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("TEST_DATABASE_URL")
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("TEST_DATABASE_URL is not set: run the tests with `make test`")
		}
		t.Skip("TEST_DATABASE_URL is not set: run `make test` for the database tests")
	}
	return u
}

// NewDB creates a database migrated to version and returns its URL; it is
// dropped when the test ends.
func NewDB(t testing.TB, version int64) string {
	t.Helper()
	admin := AdminURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("modeltest: connect to the test cluster: %v", err)
	}
	defer conn.Close(context.Background())

	// One lock serialises template creation and cloning across the test
	// binaries that go test runs in parallel.
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(7316)`); err != nil {
		t.Fatalf("modeltest: lock: %v", err)
	}
	defer conn.Exec(context.Background(), `SELECT pg_advisory_unlock(7316)`)

	tmpl := fmt.Sprintf("flickrkillr_tmpl_%s_v%d", migrationsHash(t), version)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, tmpl).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if !exists {
		if err := createTemplate(ctx, conn, admin, tmpl, version); err != nil {
			t.Fatalf("modeltest: template: %v", err)
		}
	}
	name := "flickrkillr_test_" + randomSuffix()
	if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`, name, tmpl)); err != nil {
		t.Fatalf("modeltest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Logf("modeltest: drop %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name)); err != nil {
			t.Logf("modeltest: drop %s: %v", name, err)
		}
	})
	u, err := databaseURL(admin, name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func createTemplate(ctx context.Context, conn *pgx.Conn, admin, tmpl string, version int64) error {
	building := tmpl + "_building"
	if _, err := conn.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, building)); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s`, building)); err != nil {
		return err
	}
	buildingURL, err := databaseURL(admin, building)
	if err != nil {
		return err
	}
	db, err := sql.Open("pgx", buildingURL)
	if err != nil {
		return err
	}
	err = migrations.To(ctx, db, version, func(string, ...any) {})
	db.Close()
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %s RENAME TO %s`, building, tmpl))
	return err
}

// migrationsHash names templates after the migration files, so that a
// changed migration gets a new template instead of a stale one.
func migrationsHash(t testing.TB) string {
	t.Helper()
	h := sha256.New()
	err := fs.WalkDir(migrations.Files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.Files, path)
		h.Write([]byte(path))
		h.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// databaseURL is the admin URL pointed at another database of the cluster.
func databaseURL(admin, name string) (string, error) {
	u, err := url.Parse(admin)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
