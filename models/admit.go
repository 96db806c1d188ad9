package models

import (
	"context"
	"database/sql"
	"errors"
)

// Progress is told of every statement the pool sends: Begin when it goes
// out, End when it ends, with answered false when the database said
// nothing (the caller gave up, the connection was lost). A watchdog tells a
// hung database (statements waiting, none answered) from a slow one with it.
type Progress interface {
	Begin()
	End(answered bool)
}

// Answered reports whether a statement's outcome came from the database:
// a result, or an error it sent (a constraint, a syntax error), but not a
// statement it cancelled (statement_timeout), a deadline or a lost connection.
func Answered(err error) bool {
	return err == nil || (pgCode(err) != "" && !IsUnavailable(err)) || errors.Is(err, sql.ErrNoRows)
}

// admitPool is the pool as gorm sees it, asking admit before every
// statement and transaction: while the database is known not to answer (an
// open circuit breaker, app/guard) a call fails at once instead of taking a
// connection and waiting out its deadline. Statements inside a transaction
// go through the *sql.Tx, which its BeginTx admitted.
type admitPool struct {
	*sql.DB
	admit func(ctx context.Context) error
}

func (p admitPool) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	if err := p.admit(ctx); err != nil {
		return nil, err
	}
	return p.DB.PrepareContext(ctx, query)
}

func (p admitPool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := p.admit(ctx); err != nil {
		return nil, err
	}
	return p.DB.ExecContext(ctx, query, args...)
}

func (p admitPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := p.admit(ctx); err != nil {
		return nil, err
	}
	return p.DB.QueryContext(ctx, query, args...)
}

// QueryRowContext is not admitted: a *sql.Row cannot carry an error made
// outside database/sql. gorm uses it only for Row(), which the stores do
// not call.

func (p admitPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	if err := p.admit(ctx); err != nil {
		return nil, err
	}
	return p.DB.BeginTx(ctx, opts)
}

// GetDBConn is the *sql.DB under the pool (gorm's DB()).
func (p admitPool) GetDBConn() (*sql.DB, error) { return p.DB, nil }
