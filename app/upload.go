package app

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"flickrkillr/models"
)

func (a *App) uploadNew(c echo.Context) error {
	return a.render(c, http.StatusOK, "upload", "Upload a photo", &uploadForm{})
}

// uploadNewPost checks everything before it stores anything: the size cap,
// the form, then the image (type sniffed, pixels counted before decoding).
// Files are written first and removed again if the database insert fails,
// so a rejected or failed upload leaves nothing behind.
func (a *App) uploadNewPost(c echo.Context) error {
	req := c.Request()
	req.Body = http.MaxBytesReader(c.Response(), req.Body, models.MaxUploadBytes+64<<10)
	if err := req.ParseMultipartForm(1 << 20); err != nil {
		if isTooLarge(err) {
			f := &uploadForm{Errors: FieldErrors{"Image": fmt.Sprintf("The file is larger than %d MB.", models.MaxUploadBytes>>20)}}
			return a.render(c, http.StatusRequestEntityTooLarge, "upload", "Upload a photo", f)
		}
		return echo.NewHTTPError(http.StatusBadRequest, "The upload could not be read; please try again.")
	}
	defer req.MultipartForm.RemoveAll()

	f := &uploadForm{Title: req.FormValue("title"), Description: req.FormValue("description"), TagsText: req.FormValue("tags")}
	f.validate()
	data, err := readUpload(c)
	switch {
	case errors.Is(err, errNoFile):
		f.Errors.add("Image", "Choose a JPEG or PNG file.")
	case isTooLarge(err):
		f.Errors.add("Image", fmt.Sprintf("The file is larger than %d MB.", models.MaxUploadBytes>>20))
		return a.render(c, http.StatusRequestEntityTooLarge, "upload", "Upload a photo", f)
	case err != nil:
		return err
	}
	if len(f.Errors) > 0 {
		return a.render(c, http.StatusUnprocessableEntity, "upload", "Upload a photo", f)
	}
	img, err := models.ProcessImage(data)
	if err != nil {
		f.Errors.add("Image", err.Error()+".") // ProcessImage's errors are written for users
		return a.render(c, http.StatusUnprocessableEntity, "upload", "Upload a photo", f)
	}

	u, _ := currentUser(c)
	key := models.NewImageKey()
	if err := a.files.Put(key, img); err != nil {
		return err
	}
	id, err := a.gallery.CreatePhoto(req.Context(), models.NewPhoto{
		Owner: u, Title: f.Title, Description: f.Description, Tags: f.Tags,
		ImageKey: key, Width: img.Width, Height: img.Height,
	})
	if err != nil {
		if rerr := a.files.Remove(key); rerr != nil {
			a.log.Error("remove files of failed upload", "key", key, "err", rerr)
		}
		return err
	}
	return a.redirect(c, photoPath(id), "Your photo is up.")
}

var errNoFile = errors.New("no file")

// readUpload reads the "image" file, capped at MaxUploadBytes.
func readUpload(c echo.Context) ([]byte, error) {
	file, hdr, err := c.Request().FormFile("image")
	if errors.Is(err, http.ErrMissingFile) {
		return nil, errNoFile
	}
	if err != nil {
		return nil, fmt.Errorf("app: read upload: %w", err)
	}
	defer file.Close()
	if hdr.Size == 0 {
		return nil, errNoFile
	}
	data, err := io.ReadAll(io.LimitReader(file, models.MaxUploadBytes+1))
	if err != nil {
		return nil, fmt.Errorf("app: read upload: %w", err)
	}
	if len(data) > models.MaxUploadBytes {
		return nil, &http.MaxBytesError{Limit: models.MaxUploadBytes}
	}
	return data, nil
}
