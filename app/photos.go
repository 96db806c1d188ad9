package app

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"flickrkillr/models"
)

// photoMore is the owner's other photos, under the photo.
type photoMore struct {
	Owner models.PublicUser
	More  []models.PhotoCard
}

// photoLive is the viewer's own part of a photo page: the favorite star, the
// delete button and the comment form (with errors after a failed post).
type photoLive struct {
	ID         int64
	IsFavorite bool
	IsOwner    bool
	Comment    *commentForm
}

// variant names the viewers who see the same photo page (viewer pages,
// views.go): those whose star is on or off, and the owner or not. A comment
// form holding text or errors is its own viewer's only.
func (l photoLive) variant() (string, bool) {
	if l.Comment != nil && (l.Comment.Body != "" || len(l.Comment.Errors) > 0) {
		return "", false
	}
	return "|fav=" + strconv.FormatBool(l.IsFavorite) + "|owner=" + strconv.FormatBool(l.IsOwner), true
}

// moreFromOwner is how many of the owner's other photos the photo page shows.
const moreFromOwner = 6

func (a *App) photoShow(c echo.Context) error {
	id, err := photoID(c)
	if err != nil {
		return err
	}
	return a.renderPhoto(c, http.StatusOK, id, &commentForm{})
}

// renderPhoto renders the photo page; a failed comment re-renders it with the
// form's errors and status 422. Its shared parts are two views: the photo
// with its comments, and the owner's other photos (which change with the
// owner's uploads, not with the photo).
func (a *App) renderPhoto(c echo.Context, status int, id int64, form *commentForm) error {
	sid := strconv.FormatInt(id, 10)
	photo := viewSpec{key: "photo:" + sid, deps: []string{models.DepPhoto(id)},
		render: func(ctx context.Context) (View, error) {
			page, err := a.gallery.Photo(ctx, id)
			if err != nil {
				return View{}, err
			}
			v := View{Title: page.Photo.Title, OwnerID: page.Photo.UserID, Owner: page.Owner.Name,
				Deps: []string{models.DepPhoto(id), models.DepUser(page.Owner.Name)}}
			for _, part := range []string{"photo-top", "photo-comments"} {
				html, err := a.renderPart(ctx, "photo", part, page)
				if err != nil {
					return View{}, err
				}
				v.HTML = append(v.HTML, html)
			}
			return v, nil
		}}
	more := func(ctx context.Context, pv View) ([]View, error) {
		v, err := a.views.View(ctx, "photo-more:"+sid, []string{models.DepUser(pv.Owner)}, func(ctx context.Context) (View, error) {
			// The owner's first grid page: the same query (and, at stage 3, the
			// same cache entry) as the top of their user page.
			owner, err := a.gallery.UserPhotos(ctx, pv.Owner, 0)
			if err != nil {
				return View{}, err
			}
			m := photoMore{Owner: owner.User}
			for _, p := range owner.Grid.Photos {
				if p.ID != id && len(m.More) < moreFromOwner {
					m.More = append(m.More, p)
				}
			}
			html, err := a.renderPart(ctx, "photo", "photo-more", m)
			return View{HTML: []template.HTML{html}}, err
		})
		return []View{v}, err
	}
	return a.renderView(c, status, "photo", photo, more, func(ctx context.Context, viewer *models.PublicUser) (func(View) any, error) {
		l := photoLive{ID: id, Comment: form}
		if viewer != nil {
			var err error
			if l.IsFavorite, err = a.gallery.IsFavorite(ctx, viewer.ID, id); err != nil {
				return nil, err
			}
		}
		return func(v View) any {
			l.IsOwner = viewer != nil && viewer.ID == v.OwnerID
			return l
		}, nil
	})
}

func (a *App) photoImage(c echo.Context) error { return a.serveImage(c, models.Original) }
func (a *App) photoThumb(c echo.Context) error { return a.serveImage(c, models.Thumbnail) }

// serveImage sends a photo file with a fixed type. Validators and caching
// headers are sent only when the image source provides them (stage 3).
func (a *App) serveImage(c echo.Context, v models.Variant) error {
	id, err := photoID(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	key, err := a.gallery.ImageKey(ctx, id)
	if err != nil {
		return err
	}
	img, err := a.images.Image(ctx, key, v)
	if err != nil {
		return err
	}
	defer img.Close()
	h := c.Response().Header()
	if img.ETag != "" {
		h.Set(echo.HeaderCacheControl, img.CacheControl)
		h.Set("ETag", img.ETag)
		if c.Request().Header.Get("If-None-Match") == img.ETag {
			return c.NoContent(http.StatusNotModified)
		}
	}
	h.Set(echo.HeaderContentType, "image/jpeg")
	h.Set(echo.HeaderContentLength, strconv.FormatInt(img.Size, 10))
	c.Response().WriteHeader(http.StatusOK)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	_, err = io.Copy(c.Response(), img.Content)
	return err
}

func (a *App) favoritePost(c echo.Context) error {
	id, err := photoID(c)
	if err != nil {
		return err
	}
	u, _ := currentUser(c)
	on, msg := true, "Added to your favorites."
	switch c.FormValue("action") {
	case "add", "":
	case "remove":
		on, msg = false, "Removed from your favorites."
	default:
		return echo.NewHTTPError(http.StatusBadRequest, "The favorite button sent an unknown action.")
	}
	if err := a.gallery.SetFavorite(c.Request().Context(), u.ID, id, on); err != nil {
		return err
	}
	return a.redirect(c, photoPath(id), msg)
}

func (a *App) commentPost(c echo.Context) error {
	id, err := photoID(c)
	if err != nil {
		return err
	}
	u, _ := currentUser(c)
	f := &commentForm{Body: c.FormValue("body")}
	if !f.validate() {
		return a.renderPhoto(c, http.StatusUnprocessableEntity, id, f)
	}
	if err := a.gallery.AddComment(c.Request().Context(), id, u.ID, f.Body); err != nil {
		return err
	}
	return a.redirect(c, photoPath(id)+"#comments", "Your comment was added.")
}

func (a *App) photoDeletePost(c echo.Context) error {
	id, err := photoID(c)
	if err != nil {
		return err
	}
	u, _ := currentUser(c)
	d, err := a.gallery.DeletePhoto(c.Request().Context(), id, u.ID)
	if err != nil {
		return err
	}
	// The rows are gone; a file left behind by a failed remove is only disk space.
	if err := a.files.Remove(d.Photo.ImageKey); err != nil {
		a.log.Error("remove image files", "photo", id, "key", d.Photo.ImageKey, "err", err)
	}
	return a.redirect(c, "/users/"+u.Name, fmt.Sprintf("Deleted %q.", d.Photo.Title))
}

// photoID reads :id; anything but a positive number is a 404, like a missing photo.
func photoID(c echo.Context) (int64, error) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("app: photo id %q: %w", c.Param("id"), models.ErrNotFound)
	}
	return id, nil
}

func photoPath(id int64) string { return "/photos/" + strconv.FormatInt(id, 10) }

// photoImagePath is the app's own route for a variant of a photo's image
// (/photos/:id/image, /photos/:id/thumb): what pages link to unless a front
// server serves the files (Front.ImageURL).
func photoImagePath(id int64, _ string, v models.Variant) string {
	if v == models.Thumbnail {
		return photoPath(id) + "/thumb"
	}
	return photoPath(id) + "/image"
}

// isTooLarge reports whether err is a request body over its limit.
func isTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// The home page, a user's page and a tag's page are grids of photos. The
// home page is the newest photos; a user's and a tag's page are one kind of
// page, a listing: a grid with a keyset cursor, kept as one view.

func (a *App) home(c echo.Context) error {
	return a.renderView(c, http.StatusOK, "home", viewSpec{key: "home", deps: []string{models.DepHome},
		render: func(ctx context.Context) (View, error) {
			page, err := a.gallery.Home(ctx)
			if err != nil {
				return View{}, err
			}
			html, err := a.renderPart(ctx, "home", "home-view", page)
			return View{Title: "Recent photos", HTML: []template.HTML{html}}, err
		}}, nil, noLiveParts)
}

func (a *App) userShow(c echo.Context) error {
	name := c.Param("name")
	return listingShow(a, c, "user", name, models.DepUser(name),
		func(ctx context.Context, before int64) (models.UserPage, error) {
			return a.gallery.UserPhotos(ctx, name, before)
		},
		func(p models.UserPage) string { return p.User.DisplayName })
}

func (a *App) tagShow(c echo.Context) error {
	tag := c.Param("tag")
	return listingShow(a, c, "tag", tag, models.DepTag(tag),
		func(ctx context.Context, before int64) (models.TagPage, error) {
			return a.gallery.TagPhotos(ctx, tag, before)
		},
		func(p models.TagPage) string { return "#" + p.Tag.Name })
}

// listingShow renders the listing of kind ("user", "tag": its template and
// its "-view" part) for value, one page of it from ?before=: the view is
// kept under kind:value:before and depends on dep.
func listingShow[P any](a *App, c echo.Context, kind, value, dep string, load func(ctx context.Context, before int64) (P, error), title func(P) string) error {
	before, err := cursorParam(c)
	if err != nil {
		return err
	}
	return a.renderView(c, http.StatusOK, kind, viewSpec{key: kind + ":" + value + ":" + strconv.FormatInt(before, 10), deps: []string{dep},
		render: func(ctx context.Context) (View, error) {
			page, err := load(ctx, before)
			if err != nil {
				return View{}, err
			}
			html, err := a.renderPart(ctx, kind, kind+"-view", page)
			return View{Title: title(page), HTML: []template.HTML{html}}, err
		}}, nil, noLiveParts)
}

// cursorParam reads the keyset cursor ?before=<photo id>; absent means the first page.
func cursorParam(c echo.Context) (int64, error) {
	s := c.QueryParam("before")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, echo.NewHTTPError(http.StatusBadRequest, "The page link is broken (before must be a photo number).")
	}
	return n, nil
}
