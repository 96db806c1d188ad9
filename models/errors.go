package models

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsUnavailable reports whether err means the database did not answer (in
// time, or at all) rather than refused the query: a timeout, a cancelled
// statement (statement_timeout), a connection that failed or was lost, or a
// server shutting down. The app answers these with 503, not 500.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return true
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	switch code := pgCode(err); {
	case code == "57014": // query_canceled: statement_timeout
		return true
	case strings.HasPrefix(code, "08"), // connection exception
		strings.HasPrefix(code, "53"),                     // insufficient resources (too many connections)
		code == "57P01", code == "57P02", code == "57P03": // admin shutdown, crash shutdown, cannot connect now
		return true
	}
	// A connection cut in the middle of a reply (the server or the network
	// between went away): pgx reports the short read.
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) || errors.Is(err, io.ErrUnexpectedEOF)
}

// IsDataError reports whether PostgreSQL refused a value itself (SQLSTATE
// class 22: invalid byte sequence, a string too long, a number out of
// range). The forms refuse such input first; this is the backstop that
// makes a value they missed a 400, not a 500.
func IsDataError(err error) bool {
	return strings.HasPrefix(pgCode(err), "22")
}
