package models

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
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

// Binder is a Progress (a watchdog) that can end the statements it counts
// when it finds the database hung: Bind joins a statement's (or a dial's)
// context to its verdict, and the returned func releases it at the end.
// The pool's tracer binds every statement and every dial, including those
// inside a transaction and those database/sql retries on a new connection.
type Binder interface {
	Bind(ctx context.Context) (context.Context, func())
}

type releaseKey struct{}

// bind joins ctx to the watchdog's verdict when progress can (Binder).
func (tt timingTracer) bind(ctx context.Context) context.Context {
	b, ok := tt.progress.(Binder)
	if !ok {
		return ctx
	}
	ctx, release := b.Bind(ctx)
	return context.WithValue(ctx, releaseKey{}, release)
}

// unbind releases what bind joined.
func unbind(ctx context.Context) {
	if release, ok := ctx.Value(releaseKey{}).(func()); ok {
		release()
	}
}

// TraceConnectStart counts the pool's dial as a call in flight (pgx calls
// it for every connection database/sql opens): with the pool empty, a
// request on a server that accepts nothing (a blackholed host, a paused
// postmaster) waits in the dial, with no statement sent, and the watchdog
// must see it wait. The dial's context is bound, like a statement's.
func (tt timingTracer) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	if tt.progress == nil {
		return ctx
	}
	tt.progress.Begin()
	return tt.bind(ctx)
}

// TraceConnectEnd counts the dial's end: answered when the server said
// anything, even a refusal of its own (too many clients): it is there.
func (tt timingTracer) TraceConnectEnd(ctx context.Context, data pgx.TraceConnectEndData) {
	if tt.progress == nil {
		return
	}
	unbind(ctx)
	tt.progress.End(data.Err == nil || pgCode(data.Err) != "")
}

// shouldPing is database/sql's liveness ping before it reuses a connection
// idle over a second (pgx's stdlib default), sent here instead of by stdlib
// so that the watchdog counts it and its trip ends it: a request that takes
// an idle connection to a hung server waits in this ping, before any
// statement. A failed ping lets stdlib ping again, which on the connection
// now closed fails at once and discards it, as its own ping would have.
func (tt timingTracer) shouldPing(ctx context.Context, p stdlib.ShouldPingParams) bool {
	if p.IdleDuration <= time.Second {
		return false
	}
	if tt.progress == nil {
		return true
	}
	tt.progress.Begin()
	pctx := tt.bind(ctx)
	err := p.Conn.PgConn().Ping(pctx)
	unbind(pctx)
	tt.progress.End(err == nil || pgCode(err) != "")
	return err != nil
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
