package models

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Probe is one connection of its own to PostgreSQL, outside the pool, for a
// watchdog's cheap round trip: a pool whose connections are all busy (a
// slow database under load) must not look like a hung one. It connects on
// first use and again after its connection failed. Not safe for concurrent
// use: one watchdog probes at a time.
type Probe struct {
	cfg  *pgx.ConnConfig
	conn *pgx.Conn
}

// NewProbe prepares a probe of the database at dsn; it connects on first Ping.
func NewProbe(dsn string) (*Probe, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("models: parse database URL: %w", err)
	}
	// The simple protocol: no prepared statement, which PgBouncer's
	// transaction pooling (stage 7) would not keep.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cfg.RuntimeParams["application_name"] = "flickrkillr watchdog"
	return &Probe{cfg: cfg}, nil
}

// Ping sends SELECT 1 on the probe's connection (connecting first if it has
// none) and waits for the answer as long as ctx allows. A failed connection
// is closed, and the next Ping connects anew.
func (p *Probe) Ping(ctx context.Context) error {
	if p.conn == nil || p.conn.IsClosed() {
		c, err := pgx.ConnectConfig(ctx, p.cfg)
		if err != nil {
			return fmt.Errorf("models: probe connect: %w", err)
		}
		p.conn = c
	}
	if _, err := p.conn.Exec(ctx, "SELECT 1"); err != nil {
		p.Close()
		return fmt.Errorf("models: probe: %w", err)
	}
	return nil
}

// Close closes the probe's connection, waiting at most a second for a
// goodbye the server may not read (it may be the one that hangs).
func (p *Probe) Close() {
	if p.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	p.conn.Close(ctx)
	p.conn = nil
}

// IsRefused reports whether err means nobody serves the database: the
// connection was refused, or the server is starting or shutting down.
func IsRefused(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	switch pgCode(err) {
	case "57P01", "57P02", "57P03": // admin shutdown, crash shutdown, cannot connect now
		return true
	}
	return false
}
