package sweep

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"flickrkillr/loadtest"
	"flickrkillr/migrations"
	"flickrkillr/models"
)

// probeDatabase reads the schema version the database is at (the sweep
// measures the runs on it first and comes back to it) and finds the
// postmaster whose CPU the report counts: the parent of our own backend,
// when PostgreSQL runs on this machine.
func probeDatabase(ctx context.Context, dsn string) (version int64, pgPID int, pgNote string, err error) {
	db, err := models.Open(ctx, dsn, models.Options{MaxOpenConns: 1})
	if err != nil {
		return 0, 0, "", err
	}
	defer models.Close(db)
	sqlDB, err := db.DB()
	if err != nil {
		return 0, 0, "", err
	}
	if version, err = migrations.Version(ctx, sqlDB); err != nil {
		return 0, 0, "", err
	}
	var backend int
	if err := sqlDB.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return version, 0, fmt.Sprintf("pg_backend_pid(): %v", err), nil
	}
	pid, perr := loadtest.PostgresParent(backend)
	if perr != nil {
		return version, 0, perr.Error(), nil
	}
	return version, pid, "", nil
}

// privateRedis starts a redis-server of our own on a free loopback port
// (no persistence): a separate process, so that on a busy machine the
// server's goroutines do not starve an in-process miniredis into timeouts.
// flush empties it; stop ends it. The command has checked that
// redis-server is installed.
func privateRedis(ctx context.Context) (url string, flush func(context.Context) error, stop func(), err error) {
	exe, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, nil, fmt.Errorf("sweep: --redis-server: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(exe, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--logfile", "")
	if err := cmd.Start(); err != nil {
		return "", nil, nil, err
	}
	stopServer := func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }
	url = fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	for i := 0; ; i++ {
		if err := rdb.Ping(ctx).Err(); err == nil {
			break
		} else if i == 50 {
			rdb.Close()
			stopServer()
			return "", nil, nil, fmt.Errorf("the private redis-server on port %d did not answer: %w", port, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	flush = func(ctx context.Context) error { return rdb.FlushAll(ctx).Err() }
	return url, flush, func() { rdb.Close(); stopServer() }, nil
}
