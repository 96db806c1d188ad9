package models

import (
	"context"
	"strconv"
)

// CachedGallery is stage 3's gallery: the PostgreSQL one behind a Cache, with
// the same interface, so that handlers cannot tell. It keeps the results
// that several pages share (a user's grid is also "more from" on each of
// their photos), the image keys and the favorite stars. The home, photo and
// tag pages are read only to render their views, which the app keeps as
// HTML in the same Cache: keeping their data too would store each twice.
type CachedGallery struct {
	inner Gallery
	cache *Cache
}

// NewCachedGallery wraps inner with cache.
func NewCachedGallery(inner Gallery, cache *Cache) *CachedGallery {
	return &CachedGallery{inner: inner, cache: cache}
}

var _ Gallery = (*CachedGallery)(nil)

// Home is read through: the home view is what is kept.
func (g *CachedGallery) Home(ctx context.Context) (HomePage, error) { return g.inner.Home(ctx) }

// Photo is read through: the photo's view is what is kept.
func (g *CachedGallery) Photo(ctx context.Context, id int64) (PhotoPage, error) {
	return g.inner.Photo(ctx, id)
}

// ImageKey is cached until the photo is deleted.
func (g *CachedGallery) ImageKey(ctx context.Context, id int64) (string, error) {
	return cachedJSON(ctx, g.cache, "imagekey:"+strconv.FormatInt(id, 10), []string{DepPhoto(id)},
		func(ctx context.Context) (string, error) { return g.inner.ImageKey(ctx, id) })
}

// UserPhotos is cached until the user uploads or deletes a photo.
func (g *CachedGallery) UserPhotos(ctx context.Context, name string, before int64) (UserPage, error) {
	return cachedJSON(ctx, g.cache, "user:"+name+":"+strconv.FormatInt(before, 10), []string{DepUser(name)},
		func(ctx context.Context) (UserPage, error) { return g.inner.UserPhotos(ctx, name, before) })
}

// TagPhotos is read through: the tag's view is what is kept.
func (g *CachedGallery) TagPhotos(ctx context.Context, tag string, before int64) (TagPage, error) {
	return g.inner.TagPhotos(ctx, tag, before)
}

// IsFavorite is cached per user and photo until the photo's next change.
func (g *CachedGallery) IsFavorite(ctx context.Context, userID, photoID int64) (bool, error) {
	return cachedJSON(ctx, g.cache, "fav:"+strconv.FormatInt(photoID, 10)+":"+strconv.FormatInt(userID, 10), []string{DepPhoto(photoID)},
		func(ctx context.Context) (bool, error) { return g.inner.IsFavorite(ctx, userID, photoID) })
}

// CreatePhoto invalidates the home page, the owner's pages and the tags' pages.
func (g *CachedGallery) CreatePhoto(ctx context.Context, p NewPhoto) (int64, error) {
	id, err := g.inner.CreatePhoto(ctx, p)
	if err != nil {
		return id, err
	}
	g.cache.Bump(ctx, ListingDeps(p.Owner.Name, p.Tags)...)
	return id, nil
}

// DeletePhoto invalidates the photo, the home page, the owner's and the tags' pages.
func (g *CachedGallery) DeletePhoto(ctx context.Context, photoID, userID int64) (DeletedPhoto, error) {
	d, err := g.inner.DeletePhoto(ctx, photoID, userID)
	if err != nil {
		return d, err
	}
	g.cache.Bump(ctx, append(ListingDeps(d.Owner, d.Tags), DepPhoto(photoID))...)
	return d, nil
}

// SetFavorite invalidates the photo (its count and the viewer's star).
func (g *CachedGallery) SetFavorite(ctx context.Context, userID, photoID int64, on bool) error {
	if err := g.inner.SetFavorite(ctx, userID, photoID, on); err != nil {
		return err
	}
	g.cache.Bump(ctx, DepPhoto(photoID))
	return nil
}

// AddComment invalidates the photo.
func (g *CachedGallery) AddComment(ctx context.Context, photoID, userID int64, body string) error {
	if err := g.inner.AddComment(ctx, photoID, userID, body); err != nil {
		return err
	}
	g.cache.Bump(ctx, DepPhoto(photoID))
	return nil
}
