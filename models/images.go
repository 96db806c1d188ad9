package models

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	_ "image/png" // uploads may be PNG; they are stored re-encoded as JPEG
	"io"
	"net/http"
	"os"
	"path/filepath"

	"golang.org/x/image/draw"
)

// Variant is one stored size of a photo.
type Variant string

const (
	Original  Variant = "original"
	Thumbnail Variant = "thumb"
)

// Limits on uploads, checked before an image is decoded.
const (
	MaxUploadBytes = 10 << 20   // what the upload form accepts
	MaxPixels      = 40_000_000 // width*height read from the header, before decoding
	MaxOriginalDim = 2048       // longer side of the stored original
	ThumbnailDim   = 320        // longer side of the thumbnail
)

// Errors an upload can be rejected with; each is safe to show to the user.
var (
	ErrNotImage      = errors.New("the file is not a JPEG or PNG image")
	ErrTooManyPixels = fmt.Errorf("the image has more than %d megapixels", MaxPixels/1_000_000)
	ErrBadImage      = errors.New("the image could not be read (damaged or truncated?)")
)

// ProcessedImage is an upload decoded, re-encoded (which drops EXIF and any
// other metadata) and scaled, ready to store.
type ProcessedImage struct {
	Original  []byte
	Thumbnail []byte
	Width     int
	Height    int
}

// ProcessImage checks and re-encodes an uploaded file. The type is sniffed
// from the bytes, never trusted from the name, and the pixel count is read
// from the header before the image is decoded.
func ProcessImage(data []byte) (ProcessedImage, error) {
	switch http.DetectContentType(data) {
	case "image/jpeg", "image/png":
	default:
		return ProcessedImage{}, ErrNotImage
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil || cfg.Width <= 0 || cfg.Height <= 0 {
		return ProcessedImage{}, ErrBadImage
	}
	if int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return ProcessedImage{}, ErrTooManyPixels
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return ProcessedImage{}, ErrBadImage
	}
	return EncodeImage(img)
}

// EncodeImage scales img to the original and thumbnail sizes and encodes both
// as JPEG. The seed generator uses it for its procedural images too.
func EncodeImage(img image.Image) (ProcessedImage, error) {
	orig := scaleDown(img, MaxOriginalDim, draw.CatmullRom)
	thumb := scaleDown(orig, ThumbnailDim, draw.ApproxBiLinear)
	var p ProcessedImage
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, orig, &jpeg.Options{Quality: 85}); err != nil {
		return p, fmt.Errorf("models: encode image: %w", err)
	}
	p.Original = bytes.Clone(buf.Bytes())
	buf.Reset()
	if err := jpeg.Encode(&buf, thumb, &jpeg.Options{Quality: 80}); err != nil {
		return p, fmt.Errorf("models: encode thumbnail: %w", err)
	}
	p.Thumbnail = bytes.Clone(buf.Bytes())
	b := orig.Bounds()
	p.Width, p.Height = b.Dx(), b.Dy()
	return p, nil
}

// scaleDown returns img scaled so that its longer side is at most max.
func scaleDown(img image.Image, max int, scaler draw.Scaler) image.Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= max && h <= max {
		return img
	}
	if w >= h {
		w, h = max, h*max/w
	} else {
		w, h = w*max/h, max
	}
	dst := image.NewRGBA(image.Rect(0, 0, max1(w), max1(h)))
	scaler.Scale(dst, dst.Bounds(), img, b, draw.Src, nil)
	return dst
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

// ImageStore keeps photo files under a directory, two levels of fan-out by
// key ("ab/abcdef…_thumb.jpg"). Files are immutable: a new image gets a new key.
type ImageStore struct {
	dir string
}

// NewImageStore returns an ImageStore rooted at dir, creating it.
func NewImageStore(dir string) (*ImageStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("models: image directory: %w", err)
	}
	return &ImageStore{dir: dir}, nil
}

// NewImageKey returns a fresh random key.
func NewImageKey() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

// validKey accepts only the keys NewImageKey and the seed make, so that a key
// can never name a path outside the store.
func validKey(key string) bool {
	if len(key) < 4 || len(key) > 64 {
		return false
	}
	for _, c := range key {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-') {
			return false
		}
	}
	return true
}

// Path is where a variant of a key lives.
func (s *ImageStore) Path(key string, v Variant) (string, error) {
	if !validKey(key) {
		return "", fmt.Errorf("models: image key %q: %w", key, ErrNotFound)
	}
	name := key + ".jpg"
	if v == Thumbnail {
		name = key + "_thumb.jpg"
	}
	return filepath.Join(s.dir, key[:2], name), nil
}

// Put stores both variants atomically (temp file, fsync, rename): a reader
// never sees a half-written image.
func (s *ImageStore) Put(key string, img ProcessedImage) error {
	for _, f := range []struct {
		v    Variant
		data []byte
	}{{Original, img.Original}, {Thumbnail, img.Thumbnail}} {
		path, err := s.Path(key, f.v)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(path, f.data); err != nil {
			s.Remove(key)
			return fmt.Errorf("models: store image %s: %w", key, err)
		}
	}
	return nil
}

// Open opens a variant for reading; a missing file is ErrNotFound.
func (s *ImageStore) Open(key string, v Variant) (*os.File, error) {
	path, err := s.Path(key, v)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("models: image %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("models: image %s: %w", key, err)
	}
	return f, nil
}

// Remove deletes both variants; missing files are not an error.
func (s *ImageStore) Remove(key string) error {
	var errs []error
	for _, v := range []Variant{Original, Thumbnail} {
		path, err := s.Path(key, v)
		if err != nil {
			return err
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".upload-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if _, err := io.Copy(tmp, bytes.NewReader(data)); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
