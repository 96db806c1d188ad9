package models

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"
)

// UserStore reads and writes users.
type UserStore struct {
	db *gorm.DB
}

// NewUserStore returns a UserStore on db.
func NewUserStore(db *gorm.DB) *UserStore { return &UserStore{db: db} }

// Create inserts a user and returns it with its id. A taken name gives ErrDuplicate.
func (s *UserStore) Create(ctx context.Context, name, displayName string, passwordHash []byte) (User, error) {
	u := User{Name: name, DisplayName: displayName, PasswordHash: passwordHash}
	err := s.db.WithContext(ctx).Raw(`INSERT INTO users (name, display_name, password_hash)
		VALUES (?, ?, ?) RETURNING id, created_at`, name, displayName, passwordHash).
		Row().Scan(&u.ID, &u.CreatedAt)
	if pgCode(err) == uniqueViolation {
		return User{}, fmt.Errorf("models: user %q: %w", name, ErrDuplicate)
	}
	if err != nil {
		return User{}, fmt.Errorf("models: create user %q: %w", name, err)
	}
	return u, nil
}

// ByName returns the user with that name, password hash included.
func (s *UserStore) ByName(ctx context.Context, name string) (User, error) {
	var u User
	err := s.db.WithContext(ctx).Raw(`SELECT * FROM users WHERE name = ?`, name).Take(&u).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return u, fmt.Errorf("models: user %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return u, fmt.Errorf("models: user %q: %w", name, err)
	}
	return u, nil
}
