package models

import (
	"bufio"
	"errors"
	"image"
	"image/color"
	"io"
	"net/http"
)

// ImageHeader is what an upload's header says, read without decoding it.
type ImageHeader struct {
	Format        string // "jpeg" or "png"
	Width, Height int
	// DecodeBytes estimates the memory DecodeImage takes (the decoded pixels,
	// a progressive JPEG's coefficients, the scaling buffers): the upload
	// handler reserves it from a budget shared by all uploads.
	DecodeBytes int64
}

// ReadImageHeader checks an upload without decoding it: the type is sniffed
// from the bytes, never trusted from the name, and the pixel count and
// memory cost come from the header. r is left at its start.
func ReadImageHeader(r io.ReadSeeker) (ImageHeader, error) {
	var h ImageHeader
	sniff := make([]byte, 512)
	n, err := io.ReadFull(r, sniff)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return h, ErrBadImage
	}
	switch http.DetectContentType(sniff[:n]) {
	case "image/jpeg", "image/png":
	default:
		return h, ErrNotImage
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return h, ErrBadImage
	}
	cfg, format, err := image.DecodeConfig(bufio.NewReader(r))
	if err != nil || cfg.Width <= 0 || cfg.Height <= 0 {
		return h, ErrBadImage
	}
	h.Format, h.Width, h.Height = format, cfg.Width, cfg.Height
	if int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return h, ErrTooManyPixels
	}
	progressive := false
	if format == "jpeg" {
		if _, err := r.Seek(0, io.SeekStart); err != nil {
			return h, ErrBadImage
		}
		progressive = jpegProgressive(bufio.NewReader(r))
	}
	h.DecodeBytes = decodeBytes(cfg, progressive)
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return h, ErrBadImage
	}
	if h.DecodeBytes > MaxDecodeBytes {
		return h, ErrTooCostly
	}
	return h, nil
}

// decodeBytes is what decoding and scaling a w×h image of cfg's colour
// model takes at most: image/jpeg and image/png allocate the whole image
// (a progressive JPEG also 4 bytes per pixel per component of coefficients);
// shrink adds its box-filtered copy (under 4096² RGBA) and the 2048²
// original; encoding adds a few MiB.
func decodeBytes(cfg image.Config, progressive bool) int64 {
	px := int64(cfg.Width) * int64(cfg.Height)
	var bpp, comps int64
	switch cfg.ColorModel {
	case color.GrayModel:
		bpp, comps = 1, 1
	case color.Gray16Model:
		bpp, comps = 2, 1
	case color.YCbCrModel:
		bpp, comps = 3, 3 // 4:4:4, the worst case of the subsamplings
	case color.RGBA64Model, color.NRGBA64Model:
		bpp, comps = 8, 4
	case color.CMYKModel:
		bpp, comps = 4, 4
	default: // RGBA, NRGBA, paletted (decoded as 1 byte a pixel, counted as 4)
		bpp, comps = 4, 4
	}
	n := px * bpp
	if progressive {
		n += px * 4 * comps
	}
	w, h := int64(cfg.Width), int64(cfg.Height)
	if k := max(w, h) / MaxOriginalDim; k >= 2 {
		n += (w / k) * (h / k) * 4 // the box-filtered copy
	}
	n += MaxOriginalDim * MaxOriginalDim * 4 // the scaled original
	return n + 8<<20                         // encoders, the thumbnail, slack
}

// jpegProgressive reports whether a JPEG's frame header is progressive
// (SOF2, SOF6, SOF10, SOF14), which image/jpeg decodes through a buffer of
// all the coefficients. It walks the marker segments up to the first frame.
func jpegProgressive(r *bufio.Reader) bool {
	var b [4]byte
	if _, err := io.ReadFull(r, b[:2]); err != nil || b[0] != 0xFF || b[1] != 0xD8 {
		return false
	}
	for range 1000 {
		if _, err := io.ReadFull(r, b[:2]); err != nil {
			return false
		}
		for b[0] == 0xFF && b[1] == 0xFF { // fill bytes
			b[1], _ = r.ReadByte()
		}
		if b[0] != 0xFF {
			return false
		}
		switch m := b[1]; {
		case m == 0xC2 || m == 0xC6 || m == 0xCA || m == 0xCE:
			return true
		case m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC:
			return false // another frame type
		case m == 0x01 || m >= 0xD0 && m <= 0xD7:
			continue // markers without a length
		}
		if _, err := io.ReadFull(r, b[2:4]); err != nil {
			return false
		}
		n := int(b[2])<<8 | int(b[3])
		if n < 2 {
			return false
		}
		if _, err := r.Discard(n - 2); err != nil {
			return false
		}
	}
	return false
}
