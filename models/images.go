package models

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	_ "image/png" // uploads may be PNG; they are stored re-encoded as JPEG
	"io"
	"os"
	"path/filepath"

	"golang.org/x/image/draw"
)

// Variant is one stored size of a photo.
type Variant string

const (
	Original  Variant = "original"
	Thumbnail Variant = "thumb"
	// Upload is the file as it was uploaded, kept privately (outside the
	// served fan-out directories) until a worker has made the two variants
	// from it (stage 6). It is never served.
	Upload Variant = "upload"
)

// Limits on uploads, checked before an image is decoded.
const (
	MaxUploadBytes = 10 << 20   // what the upload form accepts
	MaxPixels      = 40_000_000 // width*height read from the header, before decoding
	MaxOriginalDim = 2048       // longer side of the stored original
	ThumbnailDim   = 320        // longer side of the thumbnail
	// MaxDecodeBytes caps the memory one image may take to decode and scale
	// (ImageHeader.DecodeBytes): a progressive, RGB or CMYK JPEG or a 16-bit
	// or interlaced PNG needs several times the bytes per pixel of a baseline
	// YCbCr JPEG, so its pixel limit is lower.
	MaxDecodeBytes = 240 << 20
)

// Errors an upload can be rejected with; each is safe to show to the user.
var (
	ErrNotImage      = errors.New("the file is not a JPEG or PNG image")
	ErrTooManyPixels = fmt.Errorf("the image has more than %d megapixels", MaxPixels/1_000_000)
	ErrTooCostly     = errors.New("the image needs too much memory to process (a progressive or RGB/CMYK JPEG, or a 16-bit or interlaced PNG, of this size); save it as a baseline YCbCr JPEG or with fewer pixels")
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

// DecodeImage decodes an upload that ReadImageHeader accepted and re-encodes it.
func DecodeImage(r io.Reader) (ProcessedImage, error) {
	img, _, err := image.Decode(bufio.NewReader(r))
	if err != nil {
		return ProcessedImage{}, ErrBadImage
	}
	return EncodeImage(img)
}

// ProcessImage checks and re-encodes an uploaded file held in memory
// (ReadImageHeader, then DecodeImage).
func ProcessImage(data []byte) (ProcessedImage, error) {
	if _, err := ReadImageHeader(bytes.NewReader(data)); err != nil {
		return ProcessedImage{}, err
	}
	return DecodeImage(bytes.NewReader(data))
}

// EncodeImage scales img to the original and thumbnail sizes and encodes both
// as JPEG. The seed generator uses it for its procedural images too.
func EncodeImage(img image.Image) (ProcessedImage, error) {
	orig := shrink(img, MaxOriginalDim)
	thumb := shrink(orig, ThumbnailDim)
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

// shrink returns img scaled so that its longer side is at most limit, in two
// steps that allocate only their outputs: a box filter by the whole factor
// k = long side / limit (each output pixel the mean of a k×k block, which
// keeps every source pixel's share and so does not alias), then bilinear
// interpolation for the remaining factor, which is below 2. x/image/draw's
// kernel scalers (CatmullRom, BiLinear) would allocate 32 bytes × output
// width × source height for their intermediate: 0.5 GiB for one 40-megapixel
// upload, which is how ten uploads once took 2.6 GiB.
func shrink(img image.Image, limit int) image.Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= limit && h <= limit {
		return img
	}
	if k := max(w, h) / limit; k >= 2 {
		img = boxReduce(img, k)
		b = img.Bounds()
		w, h = b.Dx(), b.Dy()
		if w <= limit && h <= limit {
			return img
		}
	}
	if w >= h {
		w, h = limit, h*limit/w
	} else {
		w, h = w*limit/h, limit
	}
	dst := image.NewRGBA(image.Rect(0, 0, max1(w), max1(h)))
	draw.ApproxBiLinear.Scale(dst, dst.Bounds(), img, b, draw.Src, nil)
	return dst
}

// boxReduce averages k×k blocks of src into one pixel (a partial block at
// the right or bottom edge is dropped). It converts k source rows at a time
// into a small RGBA strip (draw.Draw has fast paths for the decoders' image
// types), so it allocates the output and that strip only. Averaging
// premultiplied RGBA is the correct mean for transparent pixels too.
func boxReduce(src image.Image, k int) *image.RGBA {
	b := src.Bounds()
	dw, dh := b.Dx()/k, b.Dy()/k
	dst := image.NewRGBA(image.Rect(0, 0, max1(dw), max1(dh)))
	if dw == 0 || dh == 0 {
		return dst
	}
	strip := image.NewRGBA(image.Rect(0, 0, dw*k, k))
	sums := make([]uint32, dw*4)
	area := uint32(k * k)
	for dy := 0; dy < dh; dy++ {
		sy := b.Min.Y + dy*k
		draw.Draw(strip, strip.Bounds(), src, image.Pt(b.Min.X, sy), draw.Src)
		clear(sums)
		for y := 0; y < k; y++ {
			row := strip.Pix[y*strip.Stride : y*strip.Stride+dw*k*4]
			for dx := 0; dx < dw; dx++ {
				s := sums[dx*4 : dx*4+4 : dx*4+4]
				p := row[dx*k*4 : (dx+1)*k*4]
				for i := 0; i < len(p); i += 4 {
					s[0] += uint32(p[i])
					s[1] += uint32(p[i+1])
					s[2] += uint32(p[i+2])
					s[3] += uint32(p[i+3])
				}
			}
		}
		out := dst.Pix[dy*dst.Stride : dy*dst.Stride+dw*4]
		for i, v := range sums {
			out[i] = uint8((v + area/2) / area)
		}
	}
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
	name, err := ImageFile(key, v)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.dir, filepath.FromSlash(name)), nil
}

// ImageFile is a variant's file under the store's directory, slash-separated
// ("ab/abcdef…_thumb.jpg"): stage 7's nginx serves it at that path.
func ImageFile(key string, v Variant) (string, error) {
	if !validKey(key) {
		return "", fmt.Errorf("models: image key %q: %w", key, ErrNotFound)
	}
	switch v {
	case Thumbnail:
		return key[:2] + "/" + key + "_thumb.jpg", nil
	case Upload: // stage 6's kept upload: private, never under a served path
		return ".uploads/" + key, nil
	}
	return key[:2] + "/" + key + ".jpg", nil
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
		if err := writeFileAtomic(path, bytes.NewReader(f.data)); err != nil {
			s.remove(key, Original, Thumbnail) // a kept upload stays for the next try
			return fmt.Errorf("models: store image %s: %w", key, err)
		}
	}
	return nil
}

// PutUpload keeps an upload as it came (stage 6), atomically like Put, until
// a worker makes its variants: Open(key, Upload) reads it, Remove deletes it.
func (s *ImageStore) PutUpload(key string, r io.Reader) error {
	path, err := s.Path(key, Upload)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, r); err != nil {
		return fmt.Errorf("models: keep upload %s: %w", key, err)
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

// Remove deletes both variants and a kept upload; missing files are not an error.
func (s *ImageStore) Remove(key string) error {
	return s.remove(key, Original, Thumbnail, Upload)
}

// RemoveUpload deletes a kept upload once its variants are stored.
func (s *ImageStore) RemoveUpload(key string) error { return s.remove(key, Upload) }

func (s *ImageStore) remove(key string, variants ...Variant) error {
	var errs []error
	for _, v := range variants {
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

func writeFileAtomic(path string, data io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".upload-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if _, err := io.Copy(tmp, data); err != nil {
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
