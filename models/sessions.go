package models

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// SessionStore keeps scs sessions in the sessions table: stages 0 and 1,
// where every request that carries a session reads and rewrites its row.
// It implements scs.Store and scs.CtxStore.
type SessionStore struct {
	db *gorm.DB
}

// NewSessionStore returns a SessionStore on db.
func NewSessionStore(db *gorm.DB) *SessionStore { return &SessionStore{db: db} }

// FindCtx returns the data of an unexpired session.
func (s *SessionStore) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	var rows [][]byte
	err := s.db.WithContext(ctx).Raw(`SELECT data FROM sessions WHERE token = ? AND expiry > now()`, token).
		Scan(&rows).Error
	if err != nil {
		return nil, false, fmt.Errorf("models: find session: %w", err)
	}
	if len(rows) == 0 {
		return nil, false, nil
	}
	return rows[0], true, nil
}

// CommitCtx inserts or replaces a session.
func (s *SessionStore) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	err := s.db.WithContext(ctx).Exec(`INSERT INTO sessions (token, data, expiry) VALUES (?, ?, ?)
		ON CONFLICT (token) DO UPDATE SET data = EXCLUDED.data, expiry = EXCLUDED.expiry`,
		token, b, expiry).Error
	if err != nil {
		return fmt.Errorf("models: commit session: %w", err)
	}
	return nil
}

// DeleteCtx removes a session.
func (s *SessionStore) DeleteCtx(ctx context.Context, token string) error {
	if err := s.db.WithContext(ctx).Exec(`DELETE FROM sessions WHERE token = ?`, token).Error; err != nil {
		return fmt.Errorf("models: delete session: %w", err)
	}
	return nil
}

// DeleteExpired removes expired sessions and returns how many.
func (s *SessionStore) DeleteExpired(ctx context.Context) (int64, error) {
	res := s.db.WithContext(ctx).Exec(`DELETE FROM sessions WHERE expiry <= now()`)
	if res.Error != nil {
		return 0, fmt.Errorf("models: delete expired sessions: %w", res.Error)
	}
	return res.RowsAffected, nil
}

// Find implements scs.Store.
func (s *SessionStore) Find(token string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), token)
}

// Commit implements scs.Store.
func (s *SessionStore) Commit(token string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), token, b, expiry)
}

// Delete implements scs.Store.
func (s *SessionStore) Delete(token string) error {
	return s.DeleteCtx(context.Background(), token)
}
