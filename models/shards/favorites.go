package shards

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"flickrkillr/models"
)

// SetFavorite is Flickr's favorite across shards, written on both sides:
// the owner's shard keeps the favorite (the photo page counts it) and the
// faver's shard keeps it in user_favorites (the faver's own list). The
// owner's side commits with an outbox row in one transaction; the faver's
// side is then written from it, and the row deleted. A crash between the
// two leaves the outbox row, which the repair (Repair) applies later: the
// favorite is never lost, and never doubled (both sides are keyed by user
// and photo, and the faver's side is made to match the owner's, whatever
// order the writes ran in).
func (f *Federation) SetFavorite(ctx context.Context, userID, photoID int64, on bool) error {
	owner, err := f.ownerOf(ctx, photoID)
	if err != nil {
		return err
	}
	var box int64
	write := func(s *Shard) error {
		return s.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			var err error
			if on {
				err = tx.Exec(`INSERT INTO favorites (user_id, photo_id) VALUES (?, ?) ON CONFLICT DO NOTHING`, userID, photoID).Error
			} else {
				err = tx.Exec(`DELETE FROM favorites WHERE user_id = ? AND photo_id = ?`, userID, photoID).Error
			}
			if err != nil {
				return err
			}
			return tx.Raw(`INSERT INTO favorite_outbox (user_id, photo_id, owner_id, favorite)
				VALUES (?, ?, ?, ?) RETURNING id`, userID, photoID, owner, on).Scan(&box).Error
		})
	}
	var boxShard *Shard
	err = f.withOwner(ctx, owner, func(s *Shard) error {
		boxShard = s.shard()
		err := write(s)
		switch constraintOf(err) {
		case "favorites_user_id_fkey": // the faver's row is not on this shard yet
			if err = f.copyUserTo(ctx, userID, s.shard()); err == nil {
				err = write(s)
			}
		case "favorites_photo_id_fkey":
			err = fmt.Errorf("shards: favorite photo %d: %w", photoID, models.ErrNotFound)
		}
		return err
	})
	if err != nil {
		return err
	}
	if f.o.BetweenFavoriteWrites != nil {
		f.o.BetweenFavoriteWrites()
	}
	// The favorite is made (the owner's side is the one pages show): the
	// faver's side is written even if the client has gone, and a failure
	// there leaves the outbox row to the repair.
	if err := f.faverSide(context.WithoutCancel(ctx), boxShard, boxShard, box, userID, photoID, owner); err != nil {
		f.outboxLeft.Add(1)
		if f.o.Log != nil {
			f.o.Log("shards: a favorite's faver's side is left to the repair", "user", userID, "photo", photoID, "err", err)
		}
	}
	return nil
}

// syncFavorite is the repair's faverSide: the owner's side read where the
// ring says the owner lives now.
func (f *Federation) syncFavorite(ctx context.Context, boxShard *Shard, box, user, photo, owner int64) error {
	os, err := f.shardOf(ctx, owner)
	if err != nil {
		return err
	}
	return f.faverSide(ctx, os, boxShard, box, user, photo, owner)
}

// faverSide writes the faver's side of (user, photo) as the owner's side
// on os (the owner's shard) has it, holding the faver, and deletes the
// pair's outbox rows up to box on boxShard. Holds never nest (a request
// holding two connections of one pool could wait on itself): the owner is
// not held, and needs not be. Each toggle leaves its own outbox row, on
// the shard it was written on, and each row's turn reads the owner's side
// as it is then, so the last one to run sets what the last toggle made,
// whether or not the owner moved between.
func (f *Federation) faverSide(ctx context.Context, os, boxShard *Shard, box, user, photo, owner int64) error {
	var since []time.Time
	if err := os.DB.WithContext(ctx).Raw(`SELECT created_at FROM favorites WHERE user_id = ? AND photo_id = ?`, user, photo).Scan(&since).Error; err != nil {
		return err
	}
	err := f.withOwner(ctx, user, func(fs *Shard) error {
		if fs.shard() != os.shard() {
			f.crossShardFavorites.Add(1)
		}
		if len(since) == 0 {
			return fs.DB.WithContext(ctx).Exec(`DELETE FROM user_favorites WHERE user_id = ? AND photo_id = ?`, user, photo).Error
		}
		return fs.DB.WithContext(ctx).Exec(`INSERT INTO user_favorites (user_id, photo_id, owner_id, created_at)
			VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`, user, photo, owner, since[0]).Error
	})
	if err != nil {
		return err
	}
	f.outboxApplied.Add(1)
	return boxShard.DB.WithContext(ctx).Exec(`DELETE FROM favorite_outbox WHERE user_id = ? AND photo_id = ? AND id <= ?`, user, photo, box).Error
}

// Repair applies the outbox rows older than age on every shard (the
// favorites whose faver's side a crash or an outage left unwritten) and
// says how many it applied.
func (f *Federation) Repair(ctx context.Context, age time.Duration) (int, error) {
	applied := 0
	var errs []error
	for _, s := range f.shards {
		var rows []struct{ ID, UserID, PhotoID, OwnerID int64 }
		err := s.DB.WithContext(ctx).Raw(`SELECT id, user_id, photo_id, owner_id FROM favorite_outbox
			WHERE created_at < now() - make_interval(secs => ?) ORDER BY id LIMIT 1000`, age.Seconds()).Scan(&rows).Error
		if err != nil {
			errs = append(errs, shardErr(s, err))
			continue
		}
		for _, r := range rows {
			if err := f.syncFavorite(ctx, s, r.ID, r.UserID, r.PhotoID, r.OwnerID); err != nil {
				errs = append(errs, err)
				continue
			}
			applied++
		}
	}
	return applied, errors.Join(errs...)
}

// KeepRepairing runs Repair(OutboxAge) every interval until ctx ends,
// telling report what each round did.
func (f *Federation) KeepRepairing(ctx context.Context, every time.Duration, report func(applied int, err error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := f.Repair(ctx, f.o.OutboxAge)
		if (n > 0 || err != nil) && ctx.Err() == nil {
			report(n, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// constraintOf is the constraint a PostgreSQL error names, or "".
func constraintOf(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.ConstraintName
	}
	return ""
}
