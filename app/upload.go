package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"flickrkillr/models"
)

func (a *App) uploadNew(c echo.Context) error {
	return a.render(c, http.StatusOK, "upload", "Upload a photo", &uploadForm{})
}

// uploadNewPost checks everything before it stores anything: the size cap,
// the form, then the image (type sniffed, pixels and decode memory read
// from the header). Decoding waits for its share of the decode budget
// (limits.go) and is refused with a quick 503 when the budget stays full.
// Files are written first and removed again if the database insert fails,
// so a rejected or failed upload leaves nothing behind.
func (a *App) uploadNewPost(c echo.Context) error {
	req := c.Request()
	req.Body = http.MaxBytesReader(c.Response(), req.Body, models.MaxUploadBytes+64<<10)
	// Parts over 1 MiB go to a temporary file, which the decoder reads from:
	// an upload waiting for the decode budget holds no memory for its file.
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
	file, err := openUpload(c)
	switch {
	case errors.Is(err, errNoFile):
		f.Errors.add("Image", "Choose a JPEG or PNG file.")
	case err != nil:
		return err
	default:
		defer file.Close()
	}
	if len(f.Errors) > 0 {
		return a.render(c, http.StatusUnprocessableEntity, "upload", "Upload a photo", f)
	}
	hdr, err := models.ReadImageHeader(file)
	if err != nil {
		f.Errors.add("Image", userMessage(err))
		return a.render(c, http.StatusUnprocessableEntity, "upload", "Upload a photo", f)
	}
	img, err := a.decodeUpload(c, hdr, file)
	if err != nil {
		if he := (*echo.HTTPError)(nil); errors.As(err, &he) {
			return err // the 503 of a full decode budget
		}
		f.Errors.add("Image", userMessage(err))
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

// decodeUpload decodes and scales an upload inside the decode budget: it
// reserves hdr.DecodeBytes, waiting at most decodeWait, so that however many
// uploads arrive at once the decoded pixels in memory stay under
// decodeBudget. Past the wait the upload is a 503 with Retry-After.
func (a *App) decodeUpload(c echo.Context, hdr models.ImageHeader, file io.Reader) (models.ProcessedImage, error) {
	ctx, cancel := context.WithTimeout(c.Request().Context(), a.lim.decodeWait)
	err := a.lim.decode.Acquire(ctx, hdr.DecodeBytes)
	cancel()
	if err != nil {
		return models.ProcessedImage{}, unavailable(c, 5, "We are processing many photos right now. Please try the upload again in a few seconds.", nil)
	}
	defer a.lim.decode.Release(hdr.DecodeBytes)
	return models.DecodeImage(file)
}

// userMessage is a models image error as a sentence (they are written for users).
func userMessage(err error) string {
	msg := err.Error()
	return strings.ToUpper(msg[:1]) + msg[1:] + "."
}

var errNoFile = errors.New("no file")

// openUpload opens the "image" file (in memory or a temporary file).
func openUpload(c echo.Context) (multipart.File, error) {
	file, hdr, err := c.Request().FormFile("image")
	if errors.Is(err, http.ErrMissingFile) {
		return nil, errNoFile
	}
	if err != nil {
		return nil, fmt.Errorf("app: read upload: %w", err)
	}
	if hdr.Size == 0 {
		file.Close()
		return nil, errNoFile
	}
	return file, nil
}
