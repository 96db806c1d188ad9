package main

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"

	"github.com/jackc/pgx/v5"
)

// databases are the run's throw-away databases on one PostgreSQL: the
// seeded one (prefix_seed), never served, and the copy a server runs on
// (prefix_run), made afresh from it for each server.
type databases struct {
	admin  string // URL of a database to connect to for CREATE/DROP
	prefix string
}

func newDatabases(ctx context.Context, admin, prefix string) (*databases, error) {
	d := &databases{admin: admin, prefix: prefix}
	return d, d.exec(ctx, "DROP DATABASE IF EXISTS "+prefix+"_seed WITH (FORCE)", "CREATE DATABASE "+prefix+"_seed")
}

func (d *databases) exec(ctx context.Context, stmts ...string) error {
	conn, err := pgx.Connect(ctx, d.admin)
	if err != nil {
		return fmt.Errorf("db: connect: %w", err)
	}
	defer conn.Close(ctx)
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("db: %s: %w", s, err)
		}
	}
	return nil
}

// url is the URL of database name on the admin URL's server.
func (d *databases) url(name string) string {
	u, err := url.Parse(d.admin)
	if err != nil {
		return d.admin
	}
	u.Path = "/" + name
	return u.String()
}

// seed fills the seeded database with a small data set (40 users, 3-5
// photos each, a fixed random seed: the same rows every run), as bin's
// migrate and seed make it.
func (d *databases) seed(ctx context.Context, bin, dataDir string) error {
	env := serverEnv("DATABASE_URL="+d.url(d.prefix+"_seed"), "DATA_DIR="+dataDir)
	for _, args := range [][]string{{"migrate"}, {"seed", "--users", "40", "--photos-per-user", "3-5", "--seed", "7"}} {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("db: flickrkillr %v: %v: %s", args, err, out)
		}
	}
	return nil
}

// fresh replaces the run database with a copy of the seeded one and returns
// its URL.
func (d *databases) fresh(ctx context.Context) (string, error) {
	run := d.prefix + "_run"
	err := d.exec(ctx, "DROP DATABASE IF EXISTS "+run+" WITH (FORCE)", "CREATE DATABASE "+run+" TEMPLATE "+d.prefix+"_seed")
	return d.url(run), err
}

func (d *databases) close(ctx context.Context) {
	d.exec(ctx, "DROP DATABASE IF EXISTS "+d.prefix+"_run WITH (FORCE)", "DROP DATABASE IF EXISTS "+d.prefix+"_seed WITH (FORCE)")
}
