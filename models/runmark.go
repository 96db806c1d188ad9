package models

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// RunMark is where the data set ended before a load run: the last comment
// and the time. The browse mix posts comments and adds favorites, and they
// stayed: by 7 Dec the dev cluster held 27,462 comments and 1,478
// favorites from load runs (5.5% more comments than the seed's), each run
// measuring a slightly larger data set than the one before. Restore takes
// the data set back to the mark, so that every run of a sweep reads the
// same data.
type RunMark struct {
	LastComment int64
	At          time.Time
}

// MarkRun reads the mark now, before the run.
func MarkRun(ctx context.Context, db *gorm.DB) (RunMark, error) {
	var m RunMark
	err := db.WithContext(ctx).Raw(`SELECT COALESCE(max(id), 0), now() FROM comments`).Row().Scan(&m.LastComment, &m.At)
	if err != nil {
		return m, fmt.Errorf("models: mark the data set before a run: %w", err)
	}
	return m, nil
}

// Restore deletes what a run added after m: the comments past its last one
// and the favorites made since it. Favorites the run removed are not put
// back: half the browse mix's favorite actions are removals, but a user
// rarely holds a favorite of the photo drawn (days of runs on the dev
// cluster removed about a hundred of its 1.36 M seed favorites).
func (m RunMark) Restore(ctx context.Context, db *gorm.DB) (comments, favorites int64, err error) {
	err = db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Exec(`DELETE FROM comments WHERE id > ?`, m.LastComment)
		if res.Error != nil {
			return res.Error
		}
		comments = res.RowsAffected
		res = tx.Exec(`DELETE FROM favorites WHERE created_at >= ?`, m.At)
		favorites = res.RowsAffected
		return res.Error
	})
	if err != nil {
		return 0, 0, fmt.Errorf("models: restore the data set after a run: %w", err)
	}
	return comments, favorites, nil
}
