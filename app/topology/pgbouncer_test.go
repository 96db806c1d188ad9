package topology

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"flickrkillr/models/modeltest"
)

// PgBouncer authenticates its clients: the instances' URL (with the
// password generated for this start) is served, while a client without a
// password, or with a wrong one, is refused; the instances' user is no
// admin of the console, and the supervisor's console user reads the
// stats. With auth_type = trust any local user or process could use the
// database and the admin console (issue 31).
func TestPgBouncerRefusesAClientWithoutThePassword(t *testing.T) {
	if _, err := exec.LookPath("pgbouncer"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("pgbouncer is not installed (scripts/test.sh installs it)")
		}
		t.Skip("pgbouncer is not installed (apt-get install pgbouncer)")
	}
	dsn := modeltest.NewDB(t, 0)
	top := &topology{dir: t.TempDir(), log: slog.New(slog.NewTextHandler(io.Discard, nil)), ports: newPorts(),
		o: Options{Instances: 1, PgBouncer: &PgBouncer{DatabaseURL: dsn, PoolSize: 2}}}
	if os.Geteuid() == 0 { // PgBouncer runs as postgres then: its folder must be reachable
		os.Chmod(top.dir, 0o755)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := top.startPgBouncer(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-top.pgbouncer.done })
	b := top.pgbouncer

	connect := func(u, query string) error {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		c, err := pgconn.Connect(cctx, u)
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		_, err = c.Exec(cctx, query).ReadAll()
		return err
	}
	if err := connect(b.URL, "SELECT 1"); err != nil {
		t.Fatalf("the instances' URL was refused: %v", err)
	}
	app, err := url.Parse(b.URL)
	if err != nil {
		t.Fatal(err)
	}
	for what, user := range map[string]*url.Userinfo{
		"no password":    url.User(app.User.Username()),
		"wrong password": url.UserPassword(app.User.Username(), "flickrkillr"),
	} {
		u := *app
		u.User = user
		err := connect(u.String(), "SELECT 1")
		var pgErr *pgconn.PgError
		if err == nil {
			t.Errorf("a client with %s was served", what)
		} else if !errors.As(err, &pgErr) || pgErr.Code != "28P01" && pgErr.Code != "08P01" {
			t.Errorf("a client with %s: %v, want PgBouncer's refusal (28P01)", what, err)
		}
	}
	console := *app
	console.Path = "/pgbouncer"
	if err := connect(console.String(), "SHOW POOLS"); err == nil {
		t.Error("the instances' user got into the admin console")
	}
	if _, err := b.stats(context.Background()); err != nil {
		t.Errorf("the supervisor's console user cannot read the stats: %v", err)
	}
}
