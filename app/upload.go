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
	"golang.org/x/sync/semaphore"

	"flickrkillr/models"
)

func (a *App) uploadNew(c echo.Context) error {
	return a.render(c, http.StatusOK, "upload", "Upload a photo", &uploadForm{})
}

// uploadNewPost checks everything before it stores anything: the size cap,
// the form, then the image (type sniffed, pixels and decode memory read
// from the header). Decoding waits for its share of the decode budget
// (request_limits.go) and is refused with a quick 503 when the budget stays full.
// Files are written first and removed again if the database insert fails,
// so a rejected or failed upload leaves nothing behind.
func (a *App) uploadNewPost(c echo.Context) error {
	req := c.Request()
	req.Body = http.MaxBytesReader(c.Response(), req.Body, maxUploadBody)
	tooLarge := func() error {
		f := &uploadForm{Errors: FieldErrors{"Image": "The file is larger than " + uploadLimit() + "."}}
		return a.render(c, http.StatusRequestEntityTooLarge, "upload", "Upload a photo", f)
	}
	// Parts over 1 MiB go to a temporary file, which the decoder reads from:
	// an upload waiting for the decode budget holds no memory for its file.
	if err := req.ParseMultipartForm(1 << 20); err != nil {
		if isTooLarge(err) {
			return tooLarge()
		}
		return echo.NewHTTPError(http.StatusBadRequest, "The upload could not be read; please try again.")
	}
	defer req.MultipartForm.RemoveAll() // the temporary files of the parts: nothing stays on disk
	// The body cap leaves room for the form's text, so a file can be up to
	// that much over the photo limit and still be read: the file itself is
	// held to the limit here.
	for _, fh := range req.MultipartForm.File["image"] {
		if fh.Size > models.MaxUploadBytes {
			return tooLarge()
		}
	}

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
	u, _ := currentUser(c)
	id, flash, err := a.uploads.Store(c, checkedUpload{Owner: u, Form: f, Header: hdr, File: file})
	if err != nil {
		if he := (*echo.HTTPError)(nil); errors.As(err, &he) {
			return err // the 503 of a full decode budget or queue
		}
		if !isImageError(err) {
			return err
		}
		f.Errors.add("Image", userMessage(err))
		return a.render(c, http.StatusUnprocessableEntity, "upload", "Upload a photo", f)
	}
	return a.redirect(c, photoPath(id), flash)
}

// maxUploadBody caps an upload's body: the photo limit plus the form's
// text. Stage 7's nginx takes the same figure for client_max_body_size.
const maxUploadBody = models.MaxUploadBytes + maxFormBytes

// uploadLimit is the photo limit as the form and its error say it ("10 MB").
func uploadLimit() string { return fmt.Sprintf("%d MB", models.MaxUploadBytes>>20) }

// checkedUpload is an upload whose form and image header passed the checks.
type checkedUpload struct {
	Owner  models.PublicUser
	Form   *uploadForm
	Header models.ImageHeader
	File   io.ReadSeeker // at its start
}

// Uploads makes a checked upload into a photo, the stage's way: inline
// (stages 0-5) or by a worker after the request (stage 6). Store returns the
// new photo's id and the flash that says what happened; an image error
// (models.ErrBadImage …) re-renders the form, an *echo.HTTPError is sent.
type Uploads interface {
	Store(c echo.Context, up checkedUpload) (id int64, flash string, err error)
}

// inlineUploads makes the images inside the request, then stores the files
// and the photo: the files first, removed again if the insert fails.
type inlineUploads struct{ a *App }

func (u inlineUploads) Store(c echo.Context, up checkedUpload) (int64, string, error) {
	a := u.a
	img, err := a.decodeUpload(c, up.Header, up.File)
	if err != nil {
		return 0, "", err
	}
	key := models.NewImageKey()
	if err := a.files.Put(key, img); err != nil {
		return 0, "", err
	}
	f := up.Form
	id, err := a.gallery.CreatePhoto(c.Request().Context(), models.NewPhoto{
		Owner: up.Owner, Title: f.Title, Description: f.Description, Tags: f.Tags,
		ImageKey: key, Width: img.Width, Height: img.Height,
	})
	if err != nil {
		if rerr := a.files.Remove(key); rerr != nil {
			a.log.Error("remove files of failed upload", "key", key, "err", rerr)
		}
		return 0, "", err
	}
	return id, "Your photo is up.", nil
}

// decodeUpload is processImage for a request: it waits at most decodeWait
// for the decode budget, past which the upload is a 503 with Retry-After.
func (a *App) decodeUpload(c echo.Context, hdr models.ImageHeader, file io.Reader) (models.ProcessedImage, error) {
	ctx, cancel := context.WithTimeout(c.Request().Context(), a.lim.decodeWait)
	defer cancel()
	img, err := processImage(ctx, a.lim.decode, hdr, file)
	if errors.Is(err, errDecodeBusy) {
		return img, unavailable(c, 5, "We are processing many photos right now. Please try the upload again in a few seconds.", nil)
	}
	return img, err
}

// errDecodeBusy is a decode that could not get its share of the budget in time.
var errDecodeBusy = errors.New("app: the decode budget stayed full")

// processImage decodes, re-encodes (dropping EXIF) and scales an upload
// inside the decode budget: it reserves hdr.DecodeBytes of budget, waiting
// as long as ctx allows, so that however many uploads (or workers) decode at
// once the decoded pixels in memory stay under decodeBudget. The upload handler
// (stages 0-5) and the workers (stage 6) both make images with it.
func processImage(ctx context.Context, budget *semaphore.Weighted, hdr models.ImageHeader, file io.Reader) (models.ProcessedImage, error) {
	if err := budget.Acquire(ctx, hdr.DecodeBytes); err != nil {
		return models.ProcessedImage{}, errDecodeBusy
	}
	defer budget.Release(hdr.DecodeBytes)
	return models.DecodeImage(file)
}

// isImageError reports whether err is one of the image errors written for users.
func isImageError(err error) bool {
	for _, e := range []error{models.ErrNotImage, models.ErrTooManyPixels, models.ErrTooCostly, models.ErrBadImage} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
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
