package models

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"gorm.io/gorm"
)

// GridSize is how many photos a grid page shows.
const GridSize = 24

// Gallery is everything the pages read and write about photos. PhotoStore
// answers it from PostgreSQL; stage 3 puts CachedGallery, with the same
// interface, in front of it. Handlers only ever see a Gallery.
type Gallery interface {
	Home(ctx context.Context) (HomePage, error)
	Photo(ctx context.Context, id int64) (PhotoPage, error)
	ImageKey(ctx context.Context, photoID int64) (string, error)
	UserPhotos(ctx context.Context, name string, before int64) (UserPage, error)
	TagPhotos(ctx context.Context, tag string, before int64) (TagPage, error)
	IsFavorite(ctx context.Context, userID, photoID int64) (bool, error)

	CreatePhoto(ctx context.Context, p NewPhoto) (int64, error)
	DeletePhoto(ctx context.Context, photoID, userID int64) (DeletedPhoto, error)
	SetFavorite(ctx context.Context, userID, photoID int64, on bool) error
	AddComment(ctx context.Context, photoID, userID int64, body string) error
}

// PhotoStore is the PostgreSQL Gallery. A page's independent queries are
// run by run (one after another before stage 5, at once at stage 5).
type PhotoStore struct {
	db  *gorm.DB
	run Lookups
	// states: photos have a state (stage 6, schema 3; photo_states.go):
	// grids read it and only a ready photo has an image key.
	states bool
	// ids, when set, gives the ids of new photos and comments (stage 10:
	// the ticket servers, so ids are unique across shards); unset, the
	// database's identity columns do.
	ids func(context.Context) (int64, error)
}

// NewPhotoStore returns a PhotoStore on db whose pages run their independent
// queries with run.
func NewPhotoStore(db *gorm.DB, run Lookups) *PhotoStore { return &PhotoStore{db: db, run: run} }

var _ Gallery = (*PhotoStore)(nil)

// cardColumns selects a PhotoCard from photos p joined with users u.
const cardColumns = "p.id, p.title, p.image_key, p.width, p.height, u.name AS owner"

// Home returns the newest photos and the most used tags: two independent queries.
func (s *PhotoStore) Home(ctx context.Context) (HomePage, error) {
	var page HomePage
	err := s.run.Run(ctx, func(ctx context.Context) (err error) {
		page.Recent, err = s.Recent(ctx)
		return err
	}, func(ctx context.Context) (err error) {
		page.PopularTags, err = s.tagsByUse(ctx, PopularTags)
		return err
	})
	return page, err
}

// PopularTags is how many tags the home page shows.
const PopularTags = 40

// Recent is the home page's newest photos.
func (s *PhotoStore) Recent(ctx context.Context) ([]PhotoCard, error) {
	var cards []PhotoCard
	err := s.db.WithContext(ctx).Raw(`SELECT `+cardColumns+s.stateColumn()+` FROM photos p JOIN users u ON u.id = p.user_id
		ORDER BY p.id DESC LIMIT ?`, GridSize).Scan(&cards).Error
	if err != nil {
		return nil, fmt.Errorf("models: recent photos: %w", err)
	}
	return cards, nil
}

// TagsInUse is every tag with photos, most used first (stage 10 adds up
// each shard's counts to find the popular ones).
func (s *PhotoStore) TagsInUse(ctx context.Context) ([]Tag, error) { return s.tagsByUse(ctx, 0) }

// tagsByUse is the tags with photos, most used first, at most limit (0: all).
func (s *PhotoStore) tagsByUse(ctx context.Context, limit int) ([]Tag, error) {
	var tags []Tag
	q := `SELECT id, name, photo_count FROM tags WHERE photo_count > 0
		ORDER BY photo_count DESC, name`
	args := []any{}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	if err := s.db.WithContext(ctx).Raw(q, args...).Scan(&tags).Error; err != nil {
		return nil, fmt.Errorf("models: popular tags: %w", err)
	}
	return tags, nil
}

// Photo returns a photo with its owner, tags, favorite count and comments:
// five queries that each need only the photo's id (the owner is found
// through the photo, not after it), so that they are independent lookups.
func (s *PhotoStore) Photo(ctx context.Context, id int64) (PhotoPage, error) {
	var page PhotoPage
	err := s.run.Run(ctx, func(ctx context.Context) error {
		err := s.db.WithContext(ctx).Raw(`SELECT * FROM photos WHERE id = ?`, id).Take(&page.Photo).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return fmt.Errorf("models: photo %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("models: photo %d: %w", id, err)
		}
		return nil
	}, func(ctx context.Context) error {
		err := s.db.WithContext(ctx).Raw(`SELECT u.id, u.name, u.display_name, u.created_at
			FROM photos p JOIN users u ON u.id = p.user_id WHERE p.id = ?`, id).Take(&page.Owner).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return fmt.Errorf("models: photo %d owner: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("models: photo %d owner: %w", id, err)
		}
		return nil
	}, func(ctx context.Context) error {
		err := s.db.WithContext(ctx).Raw(`SELECT t.name FROM photo_tags pt JOIN tags t ON t.id = pt.tag_id
			WHERE pt.photo_id = ? ORDER BY t.name`, id).Scan(&page.Tags).Error
		if err != nil {
			return fmt.Errorf("models: photo %d tags: %w", id, err)
		}
		return nil
	}, func(ctx context.Context) error {
		err := s.db.WithContext(ctx).Raw(`SELECT count(*) FROM favorites WHERE photo_id = ?`, id).Scan(&page.Favorites).Error
		if err != nil {
			return fmt.Errorf("models: photo %d favorites: %w", id, err)
		}
		return nil
	}, func(ctx context.Context) error {
		// The newest 100 comments, shown oldest first.
		err := s.db.WithContext(ctx).Raw(`SELECT * FROM (
				SELECT c.id, u.name AS author, c.body, c.created_at
				FROM comments c JOIN users u ON u.id = c.user_id
				WHERE c.photo_id = ? ORDER BY c.id DESC LIMIT 100) newest
			ORDER BY id`, id).Scan(&page.Comments).Error
		if err != nil {
			return fmt.Errorf("models: photo %d comments: %w", id, err)
		}
		return nil
	})
	return page, err
}

// ImageKey returns the key of a photo's image files.
func (s *PhotoStore) ImageKey(ctx context.Context, photoID int64) (string, error) {
	var keys []string
	err := s.db.WithContext(ctx).Raw(`SELECT image_key FROM photos WHERE id = ?`+s.readyOnly(), photoID).Scan(&keys).Error
	if err != nil {
		return "", fmt.Errorf("models: photo %d image key: %w", photoID, err)
	}
	if len(keys) == 0 {
		return "", fmt.Errorf("models: photo %d: %w", photoID, ErrNotFound)
	}
	return keys[0], nil
}

// UserPhotos returns a user and one page of their photos before the cursor
// (0: the newest): three queries that each need only the name (the count
// and the grid find the user's id themselves), so that they are independent.
func (s *PhotoStore) UserPhotos(ctx context.Context, name string, before int64) (UserPage, error) {
	var page UserPage
	err := s.run.Run(ctx, func(ctx context.Context) error {
		err := s.db.WithContext(ctx).Raw(`SELECT id, name, display_name, created_at FROM users WHERE name = ?`, name).Take(&page.User).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return fmt.Errorf("models: user %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("models: user %q: %w", name, err)
		}
		return nil
	}, func(ctx context.Context) error {
		err := s.db.WithContext(ctx).Raw(`SELECT count(*) FROM photos
			WHERE user_id = (SELECT id FROM users WHERE name = ?)`, name).Scan(&page.PhotoCount).Error
		if err != nil {
			return fmt.Errorf("models: user %q photo count: %w", name, err)
		}
		return nil
	}, func(ctx context.Context) error {
		var cards []PhotoCard
		err := s.db.WithContext(ctx).Raw(`SELECT p.id, p.title, p.image_key, p.width, p.height, ? AS owner`+s.stateColumn()+`
			FROM photos p WHERE p.user_id = (SELECT id FROM users WHERE name = ?) AND p.id < ?
			ORDER BY p.id DESC LIMIT ?`,
			name, name, cursor(before), GridSize+1).Scan(&cards).Error
		if err != nil {
			return fmt.Errorf("models: user %q photos: %w", name, err)
		}
		page.Grid = toGrid(cards)
		return nil
	})
	return page, err
}

// TagPhotos returns a tag and one page of its photos before the cursor.
func (s *PhotoStore) TagPhotos(ctx context.Context, tag string, before int64) (TagPage, error) {
	var page TagPage
	db := s.db.WithContext(ctx)
	err := db.Raw(`SELECT id, name, photo_count FROM tags WHERE name = ?`, tag).Take(&page.Tag).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return page, fmt.Errorf("models: tag %q: %w", tag, ErrNotFound)
	}
	if err != nil {
		return page, fmt.Errorf("models: tag %q: %w", tag, err)
	}
	var cards []PhotoCard
	err = db.Raw(`SELECT `+cardColumns+s.stateColumn()+` FROM photo_tags pt
		JOIN photos p ON p.id = pt.photo_id JOIN users u ON u.id = p.user_id
		WHERE pt.tag_id = ? AND pt.photo_id < ? ORDER BY pt.photo_id DESC LIMIT ?`,
		page.Tag.ID, cursor(before), GridSize+1).Scan(&cards).Error
	if err != nil {
		return page, fmt.Errorf("models: tag %q photos: %w", tag, err)
	}
	page.Grid = toGrid(cards)
	return page, nil
}

// IsFavorite reports whether the user has favorited the photo.
func (s *PhotoStore) IsFavorite(ctx context.Context, userID, photoID int64) (bool, error) {
	var n int64
	err := s.db.WithContext(ctx).Raw(`SELECT count(*) FROM favorites WHERE user_id = ? AND photo_id = ?`,
		userID, photoID).Scan(&n).Error
	if err != nil {
		return false, fmt.Errorf("models: favorite %d/%d: %w", userID, photoID, err)
	}
	return n > 0, nil
}

// CreatePhoto inserts a photo and its tags (creating new tags) in one
// transaction and returns the photo's id.
func (s *PhotoStore) CreatePhoto(ctx context.Context, p NewPhoto) (int64, error) {
	idCol, idArgs, err := s.newID(ctx)
	if err != nil {
		return 0, fmt.Errorf("models: create photo for user %d: %w", p.Owner.ID, err)
	}
	var id int64
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		insert := tx.Raw(`INSERT INTO photos (`+idCol+`user_id, title, description, image_key, width, height)
			VALUES (`+placeholders(6+len(idArgs))+`) RETURNING id`,
			append(idArgs, p.Owner.ID, p.Title, p.Description, p.ImageKey, p.Width, p.Height)...)
		if p.State != "" { // Stage 6: a photo whose images a worker makes, and the job that makes them
			insert = tx.Raw(`INSERT INTO photos (`+idCol+`user_id, title, description, image_key, width, height, state, job_id)
				VALUES (`+placeholders(8+len(idArgs))+`) RETURNING id`,
				append(idArgs, p.Owner.ID, p.Title, p.Description, p.ImageKey, p.Width, p.Height, p.State, nullString(p.JobID))...)
		}
		err := insert.Scan(&id).Error
		if err != nil {
			return err
		}
		for _, name := range p.Tags {
			var tagID int64
			err := tx.Raw(`INSERT INTO tags (name, photo_count) VALUES (?, 1)
				ON CONFLICT (name) DO UPDATE SET photo_count = tags.photo_count + 1
				RETURNING id`, name).Scan(&tagID).Error
			if err != nil {
				return err
			}
			if err := tx.Exec(`INSERT INTO photo_tags (photo_id, tag_id) VALUES (?, ?)`, id, tagID).Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("models: create photo for user %d: %w", p.Owner.ID, err)
	}
	return id, nil
}

// DeletePhoto deletes a photo the user owns, with its tags, favorites and
// comments. Someone else's photo gives ErrForbidden, a missing one ErrNotFound.
func (s *PhotoStore) DeletePhoto(ctx context.Context, photoID, userID int64) (DeletedPhoto, error) {
	var d DeletedPhoto
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		err := tx.Raw(`SELECT * FROM photos WHERE id = ? FOR UPDATE`, photoID).Take(&d.Photo).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if d.Photo.UserID != userID {
			return ErrForbidden
		}
		if err := tx.Raw(`SELECT name FROM users WHERE id = ?`, d.Photo.UserID).Scan(&d.Owner).Error; err != nil {
			return err
		}
		err = tx.Raw(`UPDATE tags SET photo_count = photo_count - 1
			WHERE id IN (SELECT tag_id FROM photo_tags WHERE photo_id = ?) RETURNING name`, photoID).Scan(&d.Tags).Error
		if err != nil {
			return err
		}
		// photo_tags, favorites and comments go with it (ON DELETE CASCADE).
		return tx.Exec(`DELETE FROM photos WHERE id = ?`, photoID).Error
	})
	if err != nil {
		return d, fmt.Errorf("models: delete photo %d: %w", photoID, err)
	}
	return d, nil
}

// SetFavorite adds (on) or removes the user's favorite; both are idempotent.
func (s *PhotoStore) SetFavorite(ctx context.Context, userID, photoID int64, on bool) error {
	db := s.db.WithContext(ctx)
	var err error
	if on {
		err = db.Exec(`INSERT INTO favorites (user_id, photo_id) VALUES (?, ?) ON CONFLICT DO NOTHING`,
			userID, photoID).Error
	} else {
		err = db.Exec(`DELETE FROM favorites WHERE user_id = ? AND photo_id = ?`, userID, photoID).Error
	}
	if pgCode(err) == foreignKeyViolation {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("models: favorite photo %d: %w", photoID, err)
	}
	return nil
}

// AddComment adds a comment by the user to the photo.
func (s *PhotoStore) AddComment(ctx context.Context, photoID, userID int64, body string) error {
	idCol, idArgs, err := s.newID(ctx)
	if err == nil {
		err = s.db.WithContext(ctx).Exec(`INSERT INTO comments (`+idCol+`photo_id, user_id, body)
			VALUES (`+placeholders(3+len(idArgs))+`)`,
			append(idArgs, photoID, userID, body)...).Error
	}
	if pgCode(err) == foreignKeyViolation {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("models: comment on photo %d: %w", photoID, err)
	}
	return nil
}

// WithStates is the store on the photo-state schema (stage 6): grids carry
// each photo's state and only a ready photo has an image key.
func (s *PhotoStore) WithStates() *PhotoStore {
	c := *s
	c.states = true
	return &c
}

// On is the store on another handle to the same database (stage 10: the
// connection that holds the owner's lock while it writes).
func (s *PhotoStore) On(db *gorm.DB) *PhotoStore {
	c := *s
	c.db = db
	return &c
}

// WithIDs is the store whose new photos and comments take their ids from
// next (stage 10: the ticket servers).
func (s *PhotoStore) WithIDs(next func(context.Context) (int64, error)) *PhotoStore {
	c := *s
	c.ids = next
	return &c
}

// newID is the id column and value of a new row: none (the database's
// identity column chooses), or "id, " and the id next gives.
func (s *PhotoStore) newID(ctx context.Context) (col string, args []any, err error) {
	if s.ids == nil {
		return "", nil, nil
	}
	id, err := s.ids(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("a new id: %w", err)
	}
	return "id, ", []any{id}, nil
}

// placeholders is n comma-separated "?".
func placeholders(n int) string { return strings.TrimSuffix(strings.Repeat("?, ", n), ", ") }

// stateColumn is the grids' state column when photos have one (stage 6).
func (s *PhotoStore) stateColumn() string {
	if s.states {
		return ", p.state"
	}
	return ""
}

// readyOnly limits an image-key lookup to ready photos when photos have a
// state (stage 6): a photo's image routes answer 404 until its images exist.
func (s *PhotoStore) readyOnly() string {
	if s.states {
		return " AND state = 'ready'"
	}
	return ""
}

// cursor turns "no cursor" (0) into "before everything".
func cursor(before int64) int64 {
	if before <= 0 {
		return math.MaxInt64
	}
	return before
}

// toGrid trims the one extra row a grid query fetches to know whether a next
// page exists.
func toGrid(cards []PhotoCard) Grid {
	if len(cards) > GridSize {
		return Grid{Photos: cards[:GridSize], Next: cards[GridSize-1].ID}
	}
	return Grid{Photos: cards}
}

// nullString is NULL for "", for the columns where no value is NULL.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
