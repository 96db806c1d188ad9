package standby

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Lag is how far a standby is behind its primary.
type Lag struct {
	ReplayLSN string // pg_last_wal_replay_lsn() on the standby, PostgreSQL's "X/Y"
	Bytes     int64  // the primary's pg_current_wal_lsn() minus ReplayLSN (0 when caught up)
	// Seconds since the commit of the last transaction the standby
	// replayed, when it is behind; 0 when it has replayed all the primary
	// wrote (an idle primary makes no transactions, and a caught-up standby
	// is not late however long ago the last one was).
	Seconds float64
}

// ReadLag reads the standby's replay position and compares it with the
// primary's current one. For the operator view: it connects each time.
func ReadLag(ctx context.Context, standbyURL, primaryURL string) (Lag, error) {
	var lag Lag
	var since float64
	err := queryRow(ctx, standbyURL, `SELECT pg_last_wal_replay_lsn()::text,
		COALESCE(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)::float8`, nil, &lag.ReplayLSN, &since)
	if err != nil {
		return lag, err
	}
	// The primary subtracts: the positions are pg_lsn values there.
	err = queryRow(ctx, primaryURL, `SELECT GREATEST(pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn), 0)::bigint`,
		[]any{lag.ReplayLSN}, &lag.Bytes)
	if err != nil {
		return lag, err
	}
	if lag.Bytes > 0 {
		lag.Seconds = since
	}
	return lag, nil
}

// CheckPrimary says whether the server can feed a streaming standby, with
// the fix when it cannot: scripts/pg.sh makes its clusters with
// wal_level=minimal and max_wal_senders=0 (it lets the seed's COPY skip the
// WAL), and a base backup then fails with a less helpful message.
func CheckPrimary(ctx context.Context, primaryURL string) error {
	var level, senders string
	err := queryRow(ctx, primaryURL, `SELECT current_setting('wal_level'), current_setting('max_wal_senders')`, nil, &level, &senders)
	if err != nil {
		return err
	}
	if level == "minimal" || senders == "0" {
		return fmt.Errorf("standby: the primary has wal_level=%s and max_wal_senders=%s; a standby needs replica and > 0: "+
			"ALTER SYSTEM SET wal_level = replica; ALTER SYSTEM SET max_wal_senders = 10; then restart it: %w", level, senders, ErrPrimaryNotReady)
	}
	return nil
}

// ErrPrimaryNotReady is wrapped by CheckPrimary's error.
var ErrPrimaryNotReady = errors.New("primary cannot feed standbys")

// DropSlot drops the replication slot on the primary if it exists. A slot
// still held by a standby that is shutting down cannot be dropped: it
// retries for up to 10 s.
func DropSlot(ctx context.Context, primaryURL, slot string) error {
	conn, err := pgx.Connect(ctx, primaryURL)
	if err != nil {
		return fmt.Errorf("standby: connect to the primary: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("standby: drop slot %s: %w", slot, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitReady waits until the standby accepts queries and is in recovery
// (a hot standby accepts them once it has replayed to a consistent state).
func (s *Standby) WaitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		var rec bool
		err := queryRow(ctx, s.URL("postgres"), `SELECT pg_is_in_recovery()`, nil, &rec)
		if err == nil && rec {
			return nil
		}
		if err == nil {
			err = errors.New("it is not in recovery (promoted?)")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("standby: on port %d not ready after %s: %w", s.Port, limit, err)
		case <-s.exitedOrNever():
			return fmt.Errorf("standby: on port %d exited while starting; %s/standby.log ends: %s", s.Port, s.Dir, s.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Standby) exitedOrNever() <-chan struct{} {
	if s.exited == nil {
		return nil
	}
	return s.exited
}

// queryRow runs q with args on a connection of its own to url (the
// operator view's and the checks' one-off questions) into dest.
func queryRow(ctx context.Context, url, q string, args []any, dest ...any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("standby: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, q, args...).Scan(dest...); err != nil {
		return fmt.Errorf("standby: %s: %w", strings.Fields(q)[1], err)
	}
	return nil
}

// logTail is the last lines of the log Start writes, for its error.
func (s *Standby) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "standby.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-3):], " | ")
}
