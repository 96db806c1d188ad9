package shards

import (
	"context"
	"database/sql/driver"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"flickrkillr/models"
)

// MoveReport is what a move did.
type MoveReport struct {
	User     int64
	From, To int
	NoOp     bool   // the user was on To already
	Resumed  string // the phase an interrupted move was resumed from ("": a new move)
	// Rows copied to To (both passes) and deleted from From.
	Photos, PhotoTags, Comments, Favorites, UserFavorites int64
	Deleted                                               int64
	// Copy is the first pass, writes going on; Hold the switch, the user's
	// writes held (waiting for the writes in flight, the second pass, the
	// ring's flip); Grace the wait for the processes' ring caches before
	// the old copies go; Cleanup their deletion.
	Copy, Hold, Grace, Cleanup time.Duration
}

// Rows is the number of the user's rows copied to the new shard.
func (r MoveReport) Rows() int64 {
	return r.Photos + r.PhotoTags + r.Comments + r.Favorites + r.UserFavorites
}

// Move moves a user's rows to shard to: Flickr moved users between shards
// to keep them balanced. The phases are kept in the ring (shard_moves), so
// a move interrupted at any point is resumed by running it again:
//
//  1. copying: every row of the user (their photos, the tags on them, the
//     comments and favorites on them, their own favorites) is copied to the
//     new shard while their writes go on. The copy is idempotent: rows
//     already there are kept (a resumed copy writes only what is missing).
//  2. the switch: the user's lock on the old shard is taken exclusively,
//     which waits for the writes in flight (each holds it shared) and
//     holds the next ones (a short wait, not an error). A second pass
//     copies what was written during the first and deletes from the new
//     shard what was deleted, and the old shard marks the user as moved
//     (moved_users), in that shard's transaction; then the ring points at
//     the new shard and the phase is "switched". A write held meanwhile
//     finds the mark and asks the ring again. The hold is as long as the
//     second pass, not the first: a large user's copy does not hold their
//     writes. Interrupted between the mark and the ring's flip, the user's
//     writes wait (then fail, after HoldWait) until the move is resumed.
//  3. after RingTTL (the processes' cached answers about the user expire;
//     pages read from the old shard until then still find their rows), the
//     old copies are deleted and the move's row with them.
//
// Moving a user to the shard that holds them is a no-op that succeeds.
func (f *Federation) Move(ctx context.Context, user int64, to int, progress func(format string, args ...any)) (MoveReport, error) {
	r := MoveReport{User: user, To: to}
	if progress == nil {
		progress = func(string, ...any) {}
	}
	if to < 0 || to >= len(f.shards) {
		return r, fmt.Errorf("shards: there is no shard %d (shards 0 to %d)", to, len(f.shards)-1)
	}
	var at []int
	if err := f.ring.WithContext(ctx).Raw(`SELECT shard FROM ring_users WHERE user_id = ?`, user).Scan(&at).Error; err != nil {
		return r, fmt.Errorf("shards: the ring: %w", err)
	}
	if len(at) == 0 {
		return r, fmt.Errorf("shards: user %d: %w", user, models.ErrNotFound)
	}
	var moves []struct {
		FromShard, ToShard int
		Phase              string
	}
	if err := f.ring.WithContext(ctx).Raw(`SELECT from_shard, to_shard, phase FROM shard_moves WHERE user_id = ?`, user).Scan(&moves).Error; err != nil {
		return r, fmt.Errorf("shards: the ring: %w", err)
	}
	r.From = at[0]
	switch {
	case len(moves) > 0 && moves[0].ToShard != to:
		return r, fmt.Errorf("shards: user %d is being moved to shard %d: finish that move first (shard move %d --to %d)", user, moves[0].ToShard, user, moves[0].ToShard)
	case len(moves) > 0:
		r.From, r.Resumed = moves[0].FromShard, moves[0].Phase
		progress("resuming the move of user %d from shard %d to %d at phase %q", user, r.From, to, r.Resumed)
	case r.From == to:
		r.NoOp = true
		return r, nil
	default:
		err := f.ring.WithContext(ctx).Exec(`INSERT INTO shard_moves (user_id, from_shard, to_shard, phase) VALUES (?, ?, ?, 'copying')`, user, r.From, to).Error
		if err != nil {
			return r, fmt.Errorf("shards: start the move: %w", err)
		}
	}
	src, dst := f.shards[r.From], f.shards[to]
	if r.Resumed != "switched" {
		start := time.Now()
		if err := f.copyUser(ctx, user, src, dst, &r); err != nil {
			return r, fmt.Errorf("shards: copy user %d to %s: %w", user, dst.Name, err)
		}
		r.Copy = time.Since(start)
		progress("copied %d rows of user %d from %s to %s in %s, writes going on", r.Rows(), user, src.Name, dst.Name, r.Copy.Round(time.Millisecond))
		if err := f.switchUser(ctx, user, src, dst, &r); err != nil {
			return r, fmt.Errorf("shards: switch user %d to %s: %w", user, dst.Name, err)
		}
		progress("switched user %d to %s: their writes held %s", user, dst.Name, r.Hold.Round(time.Millisecond))
	}
	f.forget(user, "")
	start := time.Now()
	select { // the other processes' cached answers expire
	case <-ctx.Done():
		return r, ctx.Err()
	case <-time.After(f.o.RingTTL + 500*time.Millisecond):
	}
	r.Grace = time.Since(start)
	start = time.Now()
	n, err := f.deleteUser(ctx, user, src)
	if err != nil {
		return r, fmt.Errorf("shards: delete user %d's old copies on %s: %w", user, src.Name, err)
	}
	r.Deleted, r.Cleanup = n, time.Since(start)
	if err := f.ring.WithContext(ctx).Exec(`DELETE FROM shard_moves WHERE user_id = ?`, user).Error; err != nil {
		return r, fmt.Errorf("shards: finish the move: %w", err)
	}
	progress("deleted %d rows of user %d from %s in %s", n, user, src.Name, r.Cleanup.Round(time.Millisecond))
	return r, nil
}

// The user's rows, as each table's query on a shard (?: the user).
const (
	photosOf        = `SELECT * FROM photos WHERE user_id = ?`
	commentsOf      = `SELECT c.* FROM comments c JOIN photos p ON p.id = c.photo_id WHERE p.user_id = ?`
	favoritesOf     = `SELECT f.* FROM favorites f JOIN photos p ON p.id = f.photo_id WHERE p.user_id = ?`
	userFavoritesOf = `SELECT * FROM user_favorites WHERE user_id = ?`
	photoTagsOf     = `SELECT pt.photo_id, t.name FROM photo_tags pt JOIN tags t ON t.id = pt.tag_id JOIN photos p ON p.id = pt.photo_id WHERE p.user_id = ?`
)

// copyUser copies the user's rows from src to dst, keeping what dst has.
func (f *Federation) copyUser(ctx context.Context, user int64, src, dst *Shard, r *MoveReport) error {
	return dst.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		n, err := copyRows(ctx, src.DB, tx, "photos", photosOf, user)
		r.Photos += n
		if err != nil {
			return err
		}
		if n, err = f.copyPhotoTags(ctx, src.DB, tx, user); err != nil {
			return err
		}
		r.PhotoTags += n
		// Commenters and favers live anywhere: their rows must be on dst.
		if err := f.usersOn(ctx, src.DB, tx, user); err != nil {
			return err
		}
		for _, t := range []struct {
			table, query string
			count        *int64
		}{{"comments", commentsOf, &r.Comments}, {"favorites", favoritesOf, &r.Favorites}, {"user_favorites", userFavoritesOf, &r.UserFavorites}} {
			n, err := copyRows(ctx, src.DB, tx, t.table, t.query, user)
			*t.count += n
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// switchUser is the move's switch (Move's doc): on the shard the user
// leaves, their lock taken exclusively (the writes in flight finish, the
// next ones wait), the second pass, the mark that sends a write that still
// finds this shard back to the ring; then the ring's flip.
func (f *Federation) switchUser(ctx context.Context, user int64, src, dst *Shard, r *MoveReport) error {
	start := time.Now()
	defer func() { r.Hold = time.Since(start) }()
	// A user coming back to a shard they once left: its mark goes first.
	if err := dst.DB.WithContext(ctx).Exec(`DELETE FROM moved_users WHERE user_id = ?`, user).Error; err != nil {
		return err
	}
	err := src.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// Held until the transaction ends; the writers' shared lock is
		// their session's, taken and given back around each write.
		if err := tx.Exec(`SELECT pg_advisory_xact_lock(?)`, user).Error; err != nil {
			return err
		}
		if err := f.copyUser(ctx, user, src, dst, r); err != nil {
			return err
		}
		if err := dropGone(ctx, src.DB, dst.DB, user); err != nil {
			return err
		}
		return tx.Exec(`INSERT INTO moved_users (user_id, to_shard) VALUES (?, ?)
			ON CONFLICT (user_id) DO UPDATE SET to_shard = EXCLUDED.to_shard`, user, r.To).Error
	})
	if err != nil {
		return err
	}
	// From here the user's writes on src go back to the ring, and wait
	// (HoldWait) until it points at dst.
	return f.ring.WithContext(ctx).Transaction(func(ring *gorm.DB) error {
		if err := ring.Exec(`UPDATE ring_users SET shard = ? WHERE user_id = ?`, r.To, user).Error; err != nil {
			return err
		}
		return ring.Exec(`UPDATE shard_moves SET phase = 'switched' WHERE user_id = ?`, user).Error
	})
}

// dropGone deletes from dst what the user's writes deleted on src after the
// first pass copied it: photos (their tags counted down) and favorites.
func dropGone(ctx context.Context, src, dst *gorm.DB, user int64) error {
	for _, t := range []struct{ keys, table, where string }{
		{`SELECT id FROM photos WHERE user_id = ?`, "photos", "id"},
		{`SELECT f.user_id || ':' || f.photo_id FROM favorites f JOIN photos p ON p.id = f.photo_id WHERE p.user_id = ?`, "favorites", "user_id || ':' || photo_id"},
		{`SELECT user_id || ':' || photo_id FROM user_favorites WHERE user_id = ?`, "user_favorites", "user_id || ':' || photo_id"},
	} {
		var have, want []string
		if err := src.WithContext(ctx).Raw(t.keys, user).Scan(&want).Error; err != nil {
			return err
		}
		if err := dst.WithContext(ctx).Raw(t.keys, user).Scan(&have).Error; err != nil {
			return err
		}
		keep := map[string]bool{}
		for _, k := range want {
			keep[k] = true
		}
		var gone []string
		for _, k := range have {
			if !keep[k] {
				gone = append(gone, k)
			}
		}
		if len(gone) == 0 {
			continue
		}
		if t.table == "photos" {
			if err := countTagsDown(ctx, dst, `SELECT pt.tag_id FROM photo_tags pt WHERE pt.photo_id::text = ANY(?::text[])`, texts(gone)); err != nil {
				return err
			}
		}
		if err := dst.WithContext(ctx).Exec(`DELETE FROM `+t.table+` WHERE (`+t.where+`)::text = ANY(?::text[])`, texts(gone)).Error; err != nil {
			return err
		}
	}
	return nil
}

// countTagsDown takes the photos that the query's tag ids come from off
// their tags' counts.
func countTagsDown(ctx context.Context, db *gorm.DB, tagIDs string, args ...any) error {
	return db.WithContext(ctx).Exec(`UPDATE tags SET photo_count = tags.photo_count - c.n
		FROM (SELECT tag_id, count(*) AS n FROM (`+tagIDs+`) ids GROUP BY tag_id) c WHERE tags.id = c.tag_id`, args...).Error
}

// deleteUser deletes the user's rows from a shard they moved off.
func (f *Federation) deleteUser(ctx context.Context, user int64, s *Shard) (int64, error) {
	var n int64
	err := s.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := countTagsDown(ctx, tx, `SELECT pt.tag_id FROM photo_tags pt JOIN photos p ON p.id = pt.photo_id WHERE p.user_id = ?`, user); err != nil {
			return err
		}
		res := tx.Exec(`DELETE FROM photos WHERE user_id = ?`, user) // their tags, comments and favorites go with them
		if res.Error != nil {
			return res.Error
		}
		n = res.RowsAffected
		res = tx.Exec(`DELETE FROM user_favorites WHERE user_id = ?`, user)
		n += res.RowsAffected
		return res.Error
	})
	return n, err
}

// copyPhotoTags copies the tags of the user's photos by name (a tag's id may
// differ between shards), creating the tags dst lacks and counting up the
// tags of the rows it added.
func (f *Federation) copyPhotoTags(ctx context.Context, src, dst *gorm.DB, user int64) (int64, error) {
	var rows []struct {
		PhotoID int64
		Name    string
	}
	if err := src.WithContext(ctx).Raw(photoTagsOf, user).Scan(&rows).Error; err != nil {
		return 0, err
	}
	if len(rows) == 0 {
		return 0, nil
	}
	photos, names := make([]int64, len(rows)), make([]string, len(rows))
	for i, r := range rows {
		photos[i], names[i] = r.PhotoID, r.Name
	}
	if err := dst.WithContext(ctx).Exec(`INSERT INTO tags (name, photo_count) SELECT DISTINCT unnest(?::text[]), 0 ON CONFLICT (name) DO NOTHING`, texts(names)).Error; err != nil {
		return 0, err
	}
	var added int64
	err := dst.WithContext(ctx).Raw(`WITH v AS (SELECT unnest(?::bigint[]) AS photo_id, unnest(?::text[]) AS name),
		ins AS (INSERT INTO photo_tags (photo_id, tag_id) SELECT v.photo_id, t.id FROM v JOIN tags t ON t.name = v.name
			ON CONFLICT DO NOTHING RETURNING tag_id),
		up AS (UPDATE tags SET photo_count = tags.photo_count + c.n
			FROM (SELECT tag_id, count(*) AS n FROM ins GROUP BY tag_id) c WHERE tags.id = c.tag_id)
		SELECT count(*) FROM ins`, int64s(photos), texts(names)).Scan(&added).Error
	return added, err
}

// usersOn copies to dst the rows of the users who commented on or favorited
// the user's photos, and of the user, where dst lacks them.
func (f *Federation) usersOn(ctx context.Context, src, dst *gorm.DB, user int64) error {
	var ids []int64
	err := src.WithContext(ctx).Raw(`SELECT ?::bigint UNION SELECT c.user_id FROM comments c JOIN photos p ON p.id = c.photo_id WHERE p.user_id = ?
		UNION SELECT fv.user_id FROM favorites fv JOIN photos p ON p.id = fv.photo_id WHERE p.user_id = ?`, user, user, user).Scan(&ids).Error
	if err != nil {
		return err
	}
	var have []int64
	if err := dst.WithContext(ctx).Raw(`SELECT id FROM users WHERE id = ANY(?::bigint[])`, int64s(ids)).Scan(&have).Error; err != nil {
		return err
	}
	if len(have) == len(ids) {
		return nil
	}
	_, err = copyRows(ctx, f.ring, dst, "users", `SELECT * FROM users WHERE id = ANY(?::bigint[]) AND NOT (id = ANY(?::bigint[]))`, int64s(ids), int64s(have))
	return err
}

// copyRows copies what query returns on src into table on dst, 500 rows a
// statement, keeping the rows dst has (ON CONFLICT DO NOTHING), and says
// how many it added.
func copyRows(ctx context.Context, src, dst *gorm.DB, table, query string, args ...any) (int64, error) {
	rows, err := src.WithContext(ctx).Raw(query, args...).Rows()
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	var added int64
	var batch []any
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n := len(batch) / len(cols)
		row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
		res := dst.WithContext(ctx).Exec(`INSERT INTO `+table+` (`+strings.Join(cols, ", ")+`) VALUES `+
			strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")+` ON CONFLICT DO NOTHING`, batch...)
		batch = batch[:0]
		added += res.RowsAffected
		return res.Error
	}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return added, err
		}
		batch = append(batch, vals...)
		if len(batch) >= 500*len(cols) {
			if err := flush(); err != nil {
				return added, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return added, err
	}
	return added, flush()
}

// MoveByName is Move for a user named by their name or id.
func (f *Federation) MoveByName(ctx context.Context, who string, to int, progress func(format string, args ...any)) (MoveReport, error) {
	id, err := strconv.ParseInt(who, 10, 64)
	if err != nil {
		var ids []int64
		if err := f.ring.WithContext(ctx).Raw(`SELECT user_id FROM ring_users WHERE name = ?`, who).Scan(&ids).Error; err != nil {
			return MoveReport{}, err
		}
		if len(ids) == 0 {
			return MoveReport{}, fmt.Errorf("shards: no user named %q: %w", who, models.ErrNotFound)
		}
		id = ids[0]
	}
	return f.Move(ctx, id, to, progress)
}

// int64s and texts are PostgreSQL arrays as arguments (?::bigint[],
// ?::text[]): gorm would spell a Go slice as a list of values.
type (
	int64s []int64
	texts  []string
)

func (a int64s) Value() (driver.Value, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, v := range a {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(v, 10))
	}
	b.WriteByte('}')
	return b.String(), nil
}

func (a texts) Value() (driver.Value, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, v := range a {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String(), nil
}
