package models

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Stage 6: a photo's images are made by a worker after its upload, so a
// photo has a state (migrations/00003_photo_states.sql): processing, ready,
// failed. PhotoStates are the reads and writes the worker needs; the
// PostgreSQL store and stage 3's cache both have them.
type PhotoStates interface {
	// PhotoState is a photo's state; a deleted photo is ErrNotFound.
	PhotoState(ctx context.Context, id int64) (string, error)
	// FinishPhoto moves a photo that is not ready to state: ready, with the
	// stored original's size, or failed (width and height 0 keep the
	// upload's). A ready photo stays as it is (Changed is false): a job
	// delivered twice changes nothing. A deleted photo is ErrNotFound.
	FinishPhoto(ctx context.Context, id int64, state string, width, height int) (FinishedPhoto, error)
	// UnfinishedPhotos lists up to limit photos in state processing, created
	// before before, with ids above after, in id order (schema 4).
	UnfinishedPhotos(ctx context.Context, before time.Time, after int64, limit int) ([]UnfinishedPhoto, error)
	// ClaimPhotoJob moves a processing photo from job old to job new, and
	// says whether it did: of several processes that found the same photo
	// without a live job, exactly one claims it and enqueues the new job
	// (a row claim in one statement, which PgBouncer's transaction pooling
	// keeps, unlike a session-level advisory lock). A photo that finished or
	// went, or that another process claimed first, is not claimed.
	ClaimPhotoJob(ctx context.Context, id int64, old, new string) (bool, error)
}

// UnfinishedPhoto is a photo still in state processing and the job named to
// make its images (empty for one uploaded before schema 4).
type UnfinishedPhoto struct {
	ID       int64
	ImageKey string
	JobID    string
}

// FinishedPhoto tells the caller what FinishPhoto changed: whether it did,
// and (for the cache) whose pages show the photo.
type FinishedPhoto struct {
	Changed bool
	Owner   string
	Tags    []string
}

var (
	_ PhotoStates = (*PhotoStore)(nil)
	_ PhotoStates = (*CachedGallery)(nil)
)

// PhotoState reads the photo's state.
func (s *PhotoStore) PhotoState(ctx context.Context, id int64) (string, error) {
	var states []string
	err := s.db.WithContext(ctx).Raw(`SELECT state FROM photos WHERE id = ?`, id).Scan(&states).Error
	if err != nil {
		return "", fmt.Errorf("models: photo %d state: %w", id, err)
	}
	if len(states) == 0 {
		return "", fmt.Errorf("models: photo %d: %w", id, ErrNotFound)
	}
	return states[0], nil
}

// FinishPhoto updates the state (and the size) in one statement that skips
// a ready photo.
func (s *PhotoStore) FinishPhoto(ctx context.Context, id int64, state string, width, height int) (FinishedPhoto, error) {
	var f FinishedPhoto
	db := s.db.WithContext(ctx)
	var owners []string
	err := db.Raw(`UPDATE photos p SET state = ?,
			width = CASE WHEN ? > 0 THEN ? ELSE p.width END,
			height = CASE WHEN ? > 0 THEN ? ELSE p.height END
		FROM users u WHERE p.id = ? AND p.state <> 'ready' AND u.id = p.user_id
		RETURNING u.name`, state, width, width, height, height, id).Scan(&owners).Error
	if err != nil {
		return f, fmt.Errorf("models: finish photo %d: %w", id, err)
	}
	if len(owners) == 0 {
		if _, err := s.PhotoState(ctx, id); err != nil {
			return f, err // deleted
		}
		return f, nil // ready already
	}
	f.Changed, f.Owner = true, owners[0]
	err = db.Raw(`SELECT t.name FROM photo_tags pt JOIN tags t ON t.id = pt.tag_id WHERE pt.photo_id = ?`, id).Scan(&f.Tags).Error
	if err != nil {
		return f, fmt.Errorf("models: photo %d tags: %w", id, err)
	}
	return f, nil
}

// UnfinishedPhotos scans the partial index photos_unfinished_idx
// (migrations/00004_photo_jobs.sql): only unfinished photos, never the table.
func (s *PhotoStore) UnfinishedPhotos(ctx context.Context, before time.Time, after int64, limit int) ([]UnfinishedPhoto, error) {
	var rows []struct {
		ID       int64
		ImageKey string
		JobID    *string
	}
	err := s.db.WithContext(ctx).Raw(`SELECT id, image_key, job_id FROM photos
		WHERE state = 'processing' AND created_at < ? AND id > ? ORDER BY id LIMIT ?`, before, after, limit).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("models: unfinished photos after %d: %w", after, err)
	}
	list := make([]UnfinishedPhoto, len(rows))
	for i, r := range rows {
		list[i] = UnfinishedPhoto{ID: r.ID, ImageKey: r.ImageKey}
		if r.JobID != nil {
			list[i].JobID = *r.JobID
		}
	}
	return list, nil
}

// ClaimPhotoJob is a compare-and-set of job_id on a processing photo.
func (s *PhotoStore) ClaimPhotoJob(ctx context.Context, id int64, old, new string) (bool, error) {
	res := s.db.WithContext(ctx).Exec(`UPDATE photos SET job_id = ?
		WHERE id = ? AND state = 'processing' AND job_id IS NOT DISTINCT FROM ?`, new, id, nullString(old))
	if res.Error != nil {
		return false, fmt.Errorf("models: claim photo %d for job %s: %w", id, new, res.Error)
	}
	return res.RowsAffected == 1, nil
}

// UnfinishedPhotos reads through: recovery needs the truth.
func (g *CachedGallery) UnfinishedPhotos(ctx context.Context, before time.Time, after int64, limit int) ([]UnfinishedPhoto, error) {
	ps, ok := g.inner.(PhotoStates)
	if !ok {
		return nil, errNoStates
	}
	return ps.UnfinishedPhotos(ctx, before, after, limit)
}

// ClaimPhotoJob writes through; no page shows a photo's job.
func (g *CachedGallery) ClaimPhotoJob(ctx context.Context, id int64, old, new string) (bool, error) {
	ps, ok := g.inner.(PhotoStates)
	if !ok {
		return false, errNoStates
	}
	return ps.ClaimPhotoJob(ctx, id, old, new)
}

// errNoStates is a cache in front of a store without photo states.
var errNoStates = errors.New("models: the gallery behind the cache has no photo states")

// PhotoState is read through: the worker needs the truth.
func (g *CachedGallery) PhotoState(ctx context.Context, id int64) (string, error) {
	ps, ok := g.inner.(PhotoStates)
	if !ok {
		return "", errNoStates
	}
	return ps.PhotoState(ctx, id)
}

// FinishPhoto invalidates everything that shows the photo: its page (and
// image key), the home page, the owner's and the tags' pages.
func (g *CachedGallery) FinishPhoto(ctx context.Context, id int64, state string, width, height int) (FinishedPhoto, error) {
	ps, ok := g.inner.(PhotoStates)
	if !ok {
		return FinishedPhoto{}, errNoStates
	}
	f, err := ps.FinishPhoto(ctx, id, state, width, height)
	if err != nil || !f.Changed {
		return f, err
	}
	g.cache.Bump(ctx, append(ListingDeps(f.Owner, f.Tags), DepPhoto(id))...)
	return f, nil
}
