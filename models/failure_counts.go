package models

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"gorm.io/gorm"
)

// FailureCounts counts failures per key (log-ins, sign-ups) in a fixed
// window, in PostgreSQL: the throttle of stage 0, whose CGI children each
// answer one request and forget everything when they exit, so the database
// they all open is the one place that sees every attempt.
//
// The counts are rows of the sessions table, which every schema has (stages
// 0 and 1 keep scs sessions there): it is a key-value table with an expiry,
// which is what a fixed-window counter needs, and using it needs no
// migration, whereas a table of its own would have to be in the schema of
// stage 0 (version 1) and so in every later one. The key is prefixed with a
// backslash, a byte that no cookie value may hold (net/http drops such a
// cookie), so that a session cookie can never name a count; data holds the
// count as decimal text, expiry the end of its window. The clock is the
// database's: every child agrees on it.
type FailureCounts struct {
	db     *gorm.DB
	prefix string
	max    int
	window time.Duration
}

// failurePrefix marks a count's row among the sessions; see FailureCounts.
const failurePrefix = `\failures:`

// NewFailureCounts refuses a key after max failures within window; prefix
// keeps one throttle's keys apart from another's (names, addresses).
func NewFailureCounts(db *gorm.DB, prefix string, max int, window time.Duration) *FailureCounts {
	return &FailureCounts{db: db, prefix: failurePrefix + prefix, max: max, window: window}
}

// Blocked reports whether key has used up its failures, and for how long it
// stays refused.
func (f *FailureCounts) Blocked(ctx context.Context, key string) (time.Duration, bool, error) {
	var rows []struct {
		Failures int
		Left     float64
	}
	err := f.db.WithContext(ctx).Raw(`SELECT convert_from(data, 'UTF8')::int AS failures,
			extract(epoch FROM expiry - now())::float8 AS left
		FROM sessions WHERE token = ? AND expiry > now()`, f.prefix+key).Scan(&rows).Error
	if err != nil {
		return 0, false, fmt.Errorf("models: read failures: %w", err)
	}
	if len(rows) == 0 || rows[0].Failures < f.max {
		return 0, false, nil
	}
	return time.Duration(rows[0].Left * float64(time.Second)), true, nil
}

// Fail counts one failure for key: one statement, atomic however many
// children count the same key at once. A window that has ended starts
// again at one.
func (f *FailureCounts) Fail(ctx context.Context, key string) error {
	err := f.db.WithContext(ctx).Exec(`INSERT INTO sessions (token, data, expiry)
		VALUES (?, convert_to('1', 'UTF8'), now() + make_interval(secs => ?))
		ON CONFLICT (token) DO UPDATE SET
			data = CASE WHEN sessions.expiry <= now() THEN EXCLUDED.data
				ELSE convert_to((convert_from(sessions.data, 'UTF8')::int + 1)::text, 'UTF8') END,
			expiry = CASE WHEN sessions.expiry <= now() THEN EXCLUDED.expiry ELSE sessions.expiry END`,
		f.prefix+key, f.window.Seconds()).Error
	if err != nil {
		return fmt.Errorf("models: count failure: %w", err)
	}
	// Nothing sweeps the table at stage 0 (a child lives too briefly for
	// a ticker), so about one failure in sweepEvery removes the counts
	// whose window has ended: the rows stay about as many as the keys
	// that failed within a window.
	if rand.IntN(sweepEvery) == 0 {
		err := f.db.WithContext(ctx).Exec(`DELETE FROM sessions WHERE starts_with(token, ?) AND expiry <= now()`,
			failurePrefix).Error
		if err != nil {
			return fmt.Errorf("models: sweep failures: %w", err)
		}
	}
	return nil
}

const sweepEvery = 100

// Reset forgets key's failures (a successful log-in).
func (f *FailureCounts) Reset(ctx context.Context, key string) error {
	if err := f.db.WithContext(ctx).Exec(`DELETE FROM sessions WHERE token = ?`, f.prefix+key).Error; err != nil {
		return fmt.Errorf("models: reset failures: %w", err)
	}
	return nil
}
