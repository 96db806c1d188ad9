package shards

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"

	"flickrkillr/models"
)

// Create signs a user up: an id from the ticket servers, the account and
// its ring row on the ring (where a taken name is refused), then the
// public row on the user's shard (models.HomeShard), then on every other shard. A
// home shard that cannot take it undoes the sign-up (the page says try
// again); another shard that cannot is copied to later, on the first
// write there that needs the row (copyUserTo).
func (f *Federation) Create(ctx context.Context, name, displayName string, passwordHash []byte) (models.User, error) {
	id, err := f.ids.Next(ctx)
	if err != nil {
		return models.User{}, fmt.Errorf("shards: create user %q: %w", name, err)
	}
	u := models.User{ID: id, Name: name, DisplayName: displayName, PasswordHash: passwordHash}
	home := models.HomeShard(id, len(f.shards))
	err = f.ring.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		err := tx.Raw(`INSERT INTO users (id, name, display_name, password_hash) VALUES (?, ?, ?, ?) RETURNING created_at`,
			id, name, displayName, passwordHash).Row().Scan(&u.CreatedAt)
		if constraintOf(err) == "users_name_key" {
			return fmt.Errorf("shards: user %q: %w", name, models.ErrDuplicate)
		}
		if err != nil {
			return err
		}
		return tx.Exec(`INSERT INTO ring_users (user_id, name, shard) VALUES (?, ?, ?)`, id, name, home).Error
	})
	if err != nil {
		return models.User{}, fmt.Errorf("shards: create user %q: %w", name, shardErr(&Shard{Name: "the ring"}, err))
	}
	if err := f.putUser(ctx, u, f.shards[home]); err != nil {
		undo := f.ring.WithContext(context.WithoutCancel(ctx)).Transaction(func(tx *gorm.DB) error {
			if err := tx.Exec(`DELETE FROM ring_users WHERE user_id = ?`, id).Error; err != nil {
				return err
			}
			return tx.Exec(`DELETE FROM users WHERE id = ?`, id).Error
		})
		return models.User{}, fmt.Errorf("shards: create user %q on %s: %w", name, f.shards[home].Name, errors.Join(err, undo))
	}
	f.remember(id, name, home)
	for i, s := range f.shards {
		if i != home {
			_ = f.putUser(ctx, u, s) // copied on demand where this fails
		}
	}
	return u, nil
}

// ByName is the ring's account (sign-in).
func (f *Federation) ByName(ctx context.Context, name string) (models.User, error) {
	return f.users.ByName(ctx, name)
}

// putUser writes a user's public row on a shard (kept if there).
func (f *Federation) putUser(ctx context.Context, u models.User, s *Shard) error {
	s.writes.Add(1)
	err := s.DB.WithContext(ctx).Exec(`INSERT INTO users (id, name, display_name, password_hash, created_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`, u.ID, u.Name, u.DisplayName, u.PasswordHash, u.CreatedAt).Error
	return shardErr(s, err)
}

// copyUserTo copies a user's row from the ring to a shard that lacks it.
func (f *Federation) copyUserTo(ctx context.Context, user int64, s *Shard) error {
	var u models.User
	err := f.ring.WithContext(ctx).Raw(`SELECT * FROM users WHERE id = ?`, user).Take(&u).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return fmt.Errorf("shards: user %d: %w", user, models.ErrNotFound)
	}
	if err != nil {
		return err
	}
	f.usersCopied.Add(1)
	return f.putUser(ctx, u, s)
}
