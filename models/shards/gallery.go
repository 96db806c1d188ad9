package shards

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"flickrkillr/models"
)

var (
	_ models.Gallery     = (*Federation)(nil)
	_ models.PhotoStates = (*Federation)(nil)
)

// onOwnersShard runs read on the shard of a photo's owner. A photo not
// found where the ring said is looked for again after re-reading the ring
// (a move switched the owner since this process last asked).
func (f *Federation) onOwnersShard(ctx context.Context, photo int64, read func(s *Shard) error) error {
	owner, err := f.ownerOf(ctx, photo)
	if err != nil {
		return err
	}
	for try := 0; ; try++ {
		s, err := f.shardOf(ctx, owner)
		if err != nil {
			return err
		}
		s.reads.Add(1)
		err = shardErr(s, read(s))
		if try == 0 && errors.Is(err, models.ErrNotFound) {
			f.forget(owner, "")
			continue
		}
		return err
	}
}

// Home is the newest photos of every shard, merged, and the tags most used
// over all shards: each shard's counts added up, so the page is the one a
// single database shows.
func (f *Federation) Home(ctx context.Context) (models.HomePage, error) {
	recent := make([][]models.PhotoCard, len(f.shards))
	tags := make([][]models.Tag, len(f.shards))
	f.fanouts.Add(1)
	err := f.everyShard(ctx, func(ctx context.Context, i int, s *Shard) error {
		return f.o.Lookups.Run(ctx, func(ctx context.Context) (err error) {
			recent[i], err = s.Store.Recent(ctx)
			return err
		}, func(ctx context.Context) (err error) {
			tags[i], err = s.Store.TagsInUse(ctx)
			return err
		})
	})
	if err != nil {
		return models.HomePage{}, err
	}
	page := models.HomePage{Recent: newestFirst(slices.Concat(recent...), models.GridSize)}
	page.PopularTags = addUp(tags, models.PopularTags)
	return page, nil
}

// newestFirst merges cards by id, newest first, one card per photo (a move
// in progress has a user's photos on two shards), at most n.
func newestFirst(cards []models.PhotoCard, n int) []models.PhotoCard {
	slices.SortFunc(cards, func(a, b models.PhotoCard) int { return cmp.Compare(b.ID, a.ID) })
	cards = slices.CompactFunc(cards, func(a, b models.PhotoCard) bool { return a.ID == b.ID })
	return cards[:min(len(cards), n)]
}

// addUp adds each tag's counts over the shards and keeps the n most used
// (most first, then by name: the single database's order).
func addUp(perShard [][]models.Tag, n int) []models.Tag {
	byName := map[string]*models.Tag{}
	var all []*models.Tag
	for _, tags := range perShard {
		for _, t := range tags {
			if sum, ok := byName[t.Name]; ok {
				sum.PhotoCount += t.PhotoCount
				continue
			}
			c := t
			byName[t.Name] = &c
			all = append(all, &c)
		}
	}
	slices.SortFunc(all, func(a, b *models.Tag) int {
		return cmp.Or(cmp.Compare(b.PhotoCount, a.PhotoCount), cmp.Compare(a.Name, b.Name))
	})
	var top []models.Tag
	for _, t := range all[:min(len(all), n)] {
		top = append(top, *t)
	}
	return top
}

// Photo is answered by the owner's shard alone.
func (f *Federation) Photo(ctx context.Context, id int64) (page models.PhotoPage, err error) {
	err = f.onOwnersShard(ctx, id, func(s *Shard) (err error) {
		page, err = s.Store.Photo(ctx, id)
		return err
	})
	f.countPage(err)
	return page, err
}

func (f *Federation) countPage(err error) {
	if err == nil {
		f.pagesOne.Add(1)
	}
}

// ImageKey is the owner's shard's.
func (f *Federation) ImageKey(ctx context.Context, id int64) (key string, err error) {
	err = f.onOwnersShard(ctx, id, func(s *Shard) (err error) {
		key, err = s.Store.ImageKey(ctx, id)
		return err
	})
	return key, err
}

// UserPhotos is answered by the user's shard alone.
func (f *Federation) UserPhotos(ctx context.Context, name string, before int64) (page models.UserPage, err error) {
	for try := 0; ; try++ {
		user, s, err := f.byName(ctx, name)
		if err != nil {
			return page, err
		}
		s.reads.Add(1)
		page, err = s.Store.UserPhotos(ctx, name, before)
		err = shardErr(s, err)
		if try == 0 && errors.Is(err, models.ErrNotFound) { // moved since the process asked
			f.forget(user, name)
			continue
		}
		f.countPage(err)
		return page, err
	}
}

// TagPhotos asks every shard for the tag's page and merges them: the
// counts added up, the photos newest first.
func (f *Federation) TagPhotos(ctx context.Context, tag string, before int64) (models.TagPage, error) {
	pages := make([]*models.TagPage, len(f.shards))
	f.fanouts.Add(1)
	err := f.everyShard(ctx, func(ctx context.Context, i int, s *Shard) error {
		p, err := s.Store.TagPhotos(ctx, tag, before)
		if errors.Is(err, models.ErrNotFound) {
			return nil // no photo of this shard's users ever had it
		}
		if err == nil {
			pages[i] = &p
		}
		return err
	})
	var page models.TagPage
	if err != nil {
		return page, err
	}
	var cards []models.PhotoCard
	found := false
	for _, p := range pages {
		if p == nil {
			continue
		}
		if !found {
			page.Tag = p.Tag
		} else {
			page.Tag.PhotoCount += p.Tag.PhotoCount
		}
		found = true
		cards = append(cards, p.Grid.Photos...)
	}
	if !found {
		return page, models.ErrNotFound
	}
	// Each shard's grid is its newest GridSize before the cursor: the
	// merged page is the newest GridSize of them all, and there is a next
	// page when any shard had more.
	more := false
	for _, p := range pages {
		more = more || (p != nil && p.Grid.Next != 0)
	}
	merged := newestFirst(cards, models.GridSize+1)
	page.Grid.Photos = merged[:min(len(merged), models.GridSize)]
	if (len(merged) > models.GridSize || more) && len(page.Grid.Photos) > 0 {
		page.Grid.Next = page.Grid.Photos[len(page.Grid.Photos)-1].ID
	}
	return page, nil
}

// IsFavorite is the owner's shard's: the favorite is kept there.
func (f *Federation) IsFavorite(ctx context.Context, userID, photoID int64) (fav bool, err error) {
	err = f.onOwnersShard(ctx, photoID, func(s *Shard) (err error) {
		fav, err = s.Store.IsFavorite(ctx, userID, photoID)
		return err
	})
	return fav, err
}

// CreatePhoto writes the photo on its owner's shard and its ring row, the
// owner held for the both.
func (f *Federation) CreatePhoto(ctx context.Context, p models.NewPhoto) (id int64, err error) {
	err = f.withOwner(ctx, p.Owner.ID, func(s *Shard) (err error) {
		id, err = s.Store.CreatePhoto(ctx, p)
		return err
	})
	if err != nil {
		return id, err
	}
	// The ring learns whose the photo is. Should this fail, the photo is
	// looked for on every shard at its first view and put back (ownerOf).
	if err := f.ring.WithContext(context.WithoutCancel(ctx)).Exec(`INSERT INTO ring_photos (photo_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING`, id, p.Owner.ID).Error; err != nil && f.o.Log != nil {
		f.o.Log("shards: the ring did not learn a new photo's owner; its first view asks every shard", "photo", id, "err", err)
	}
	return id, nil
}

// DeletePhoto deletes on the owner's shard, then the ring row.
func (f *Federation) DeletePhoto(ctx context.Context, photoID, userID int64) (d models.DeletedPhoto, err error) {
	owner, err := f.ownerOf(ctx, photoID)
	if err != nil {
		return d, err
	}
	if owner != userID {
		return d, models.ErrForbidden
	}
	err = f.withOwner(ctx, owner, func(s *Shard) (err error) {
		d, err = s.Store.DeletePhoto(ctx, photoID, userID)
		return err
	})
	if err != nil {
		return d, err
	}
	// A ring row left behind points at a photo no shard has: its page is
	// a 404 either way.
	_ = f.ring.WithContext(context.WithoutCancel(ctx)).Exec(`DELETE FROM ring_photos WHERE photo_id = ?`, photoID).Error
	return d, nil
}

// AddComment is written on the photo owner's shard, whoever comments (a
// commenter whose row that shard lacks is copied there first).
func (f *Federation) AddComment(ctx context.Context, photoID, userID int64, body string) error {
	owner, err := f.ownerOf(ctx, photoID)
	if err != nil {
		return err
	}
	return f.withOwner(ctx, owner, func(s *Shard) error {
		err := s.Store.AddComment(ctx, photoID, userID, body)
		if errors.Is(err, models.ErrNotFound) && f.copyUserTo(ctx, userID, s.shard()) == nil {
			err = s.Store.AddComment(ctx, photoID, userID, body)
		}
		return err
	})
}

// PhotoState is the owner's shard's.
func (f *Federation) PhotoState(ctx context.Context, id int64) (state string, err error) {
	err = f.onOwnersShard(ctx, id, func(s *Shard) (err error) {
		state, err = s.Store.PhotoState(ctx, id)
		return err
	})
	return state, err
}

// FinishPhoto is written on the owner's shard, the owner held.
func (f *Federation) FinishPhoto(ctx context.Context, id int64, state string, width, height int) (fp models.FinishedPhoto, err error) {
	owner, err := f.ownerOf(ctx, id)
	if err != nil {
		return fp, err
	}
	err = f.withOwner(ctx, owner, func(s *Shard) (err error) {
		fp, err = s.Store.FinishPhoto(ctx, id, state, width, height)
		return err
	})
	return fp, err
}

// ClaimPhotoJob is written on the owner's shard, the owner held.
func (f *Federation) ClaimPhotoJob(ctx context.Context, id int64, old, new string) (claimed bool, err error) {
	owner, err := f.ownerOf(ctx, id)
	if err != nil {
		return false, err
	}
	err = f.withOwner(ctx, owner, func(s *Shard) (err error) {
		claimed, err = s.Store.ClaimPhotoJob(ctx, id, old, new)
		return err
	})
	return claimed, err
}

// UnfinishedPhotos merges every shard's, in id order.
func (f *Federation) UnfinishedPhotos(ctx context.Context, before time.Time, after int64, limit int) ([]models.UnfinishedPhoto, error) {
	lists := make([][]models.UnfinishedPhoto, len(f.shards))
	err := f.everyShard(ctx, func(ctx context.Context, i int, s *Shard) (err error) {
		lists[i], err = s.Store.UnfinishedPhotos(ctx, before, after, limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	all := slices.Concat(lists...)
	slices.SortFunc(all, func(a, b models.UnfinishedPhoto) int { return cmp.Compare(a.ID, b.ID) })
	all = slices.CompactFunc(all, func(a, b models.UnfinishedPhoto) bool { return a.ID == b.ID })
	return all[:min(len(all), limit)], nil
}
