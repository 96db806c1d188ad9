package models

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"runtime"
	"testing"
)

// allocated is how many bytes fn allocates on the heap.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Scaling a large upload allocates its outputs and a strip, not a buffer per
// source row: x/image/draw's CatmullRom allocated 32 B × output width ×
// source height (here 32 × 2048 × 6000 = 393 MB) on top of the image.
func TestShrinkAllocatesOnlyItsOutputs(t *testing.T) {
	src := image.NewYCbCr(image.Rect(0, 0, 8000, 6000), image.YCbCrSubsampleRatio420)
	var out image.Image
	n := allocated(func() { out = shrink(src, MaxOriginalDim) })
	if b := out.Bounds(); b.Dx() != 2048 || b.Dy() != 1536 {
		t.Fatalf("scaled to %v, want 2048x1536", b)
	}
	// The box-filtered copy (2666×2000 RGBA, 21 MB), the original (2048×1536
	// RGBA, 12.6 MB) and a three-row strip.
	const want = 2666*2000*4 + 2048*1536*4 + 8000*3*4
	if n > want+want/10 {
		t.Fatalf("shrink allocated %d MB, want about %d MB", n>>20, want>>20)
	}
}

// The box filter keeps the mean: a flat colour stays that colour, a
// one-pixel checkerboard becomes its grey instead of aliasing to black or white.
func TestShrinkKeepsTheMean(t *testing.T) {
	flat := image.NewRGBA(image.Rect(0, 0, 5000, 3000))
	checker := image.NewGray(image.Rect(0, 0, 5000, 3000))
	for y := range 3000 {
		for x := range 5000 {
			flat.SetRGBA(x, y, color.RGBA{200, 100, 50, 255})
			if (x+y)%2 == 0 {
				checker.SetGray(x, y, color.Gray{255})
			}
		}
	}
	for _, tt := range []struct {
		name string
		img  image.Image
		want color.RGBA
	}{
		{"flat", flat, color.RGBA{200, 100, 50, 255}},
		{"checkerboard", checker, color.RGBA{128, 128, 128, 255}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := shrink(tt.img, MaxOriginalDim)
			b := out.Bounds()
			for _, p := range []image.Point{{b.Dx() / 2, b.Dy() / 2}, {0, 0}, {b.Dx() - 1, b.Dy() - 1}} {
				r, g, bl, a := out.At(p.X, p.Y).RGBA()
				got := color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8), uint8(a >> 8)}
				if diff(got.R, tt.want.R) > 2 || diff(got.G, tt.want.G) > 2 || diff(got.B, tt.want.B) > 2 || got.A != 255 {
					t.Fatalf("pixel %v is %v, want %v", p, got, tt.want)
				}
			}
		})
	}
}

func diff(a, b uint8) uint8 {
	if a > b {
		return a - b
	}
	return b - a
}

// pngHeader is a PNG whose header claims w×h pixels of the given bit depth
// and colour type, with no pixel data.
func pngHeader(w, h uint32, depth, colorType byte) []byte {
	var buf bytes.Buffer
	buf.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = depth, colorType
	binary.Write(&buf, binary.BigEndian, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	buf.Write(chunk)
	binary.Write(&buf, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return buf.Bytes()
}

// jpegHeader is a real small JPEG with the frame size patched to w×h, and
// made progressive (SOF2) when asked: enough for the header reader.
func jpegHeader(t *testing.T, w, h uint16, progressive bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, image.NewYCbCr(image.Rect(0, 0, 16, 16), image.YCbCrSubsampleRatio444), nil); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	i := bytes.Index(b, []byte{0xFF, 0xC0})
	if i < 0 {
		t.Fatal("no SOF0 in the encoded JPEG")
	}
	if progressive {
		b[i+1] = 0xC2
	}
	binary.BigEndian.PutUint16(b[i+5:], h)
	binary.BigEndian.PutUint16(b[i+7:], w)
	return b
}

// The header says what decoding will cost, and images that would take more
// than MaxDecodeBytes are refused before any pixel is decoded.
func TestReadImageHeaderEstimatesTheDecodeMemory(t *testing.T) {
	for _, tt := range []struct {
		name    string
		data    []byte
		err     error
		atLeast int64
	}{
		{"a 36 MP baseline JPEG", jpegHeader(t, 6000, 6000, false), nil, 36_000_000 * 3},
		{"a 36 MP progressive JPEG", jpegHeader(t, 6000, 6000, true), ErrTooCostly, 0},
		{"a 12 MP progressive JPEG", jpegHeader(t, 4000, 3000, true), nil, 12_000_000 * (3 + 12)},
		{"a 39 MP 8-bit RGB PNG", pngHeader(6200, 6200, 8, 2), nil, 6200 * 6200 * 4},
		{"a 36 MP 16-bit RGB PNG", pngHeader(6000, 6000, 16, 2), ErrTooCostly, 0},
		{"a 100 MP PNG", pngHeader(10000, 10000, 8, 2), ErrTooManyPixels, 0},
		{"a 1 GP grey PNG", pngHeader(40000, 25000, 8, 0), ErrTooManyPixels, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ReadImageHeader(bytes.NewReader(tt.data))
			if !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if err == nil && (h.DecodeBytes < tt.atLeast || h.DecodeBytes > MaxDecodeBytes) {
				t.Fatalf("DecodeBytes %d MB, want at least %d MB and at most %d MB", h.DecodeBytes>>20, tt.atLeast>>20, MaxDecodeBytes>>20)
			}
		})
	}
}

// Whatever the bytes, the upload validator does not panic, refuses with one
// of its errors or accepts; and what it accepts (within a small pixel count,
// to keep each run cheap) decodes into JPEGs no larger than the limits.
func FuzzReadImageHeader(f *testing.F) {
	var small, smallPNG bytes.Buffer
	jpeg.Encode(&small, image.NewRGBA(image.Rect(0, 0, 40, 30)), nil)
	png.Encode(&smallPNG, image.NewNRGBA(image.Rect(0, 0, 30, 40)))
	f.Add(small.Bytes())
	f.Add(smallPNG.Bytes())
	f.Add(small.Bytes()[:100])
	f.Add(pngHeader(100000, 100000, 8, 2))
	f.Add([]byte("GIF89a\x01\x00\x01\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ReadImageHeader(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrNotImage) && !errors.Is(err, ErrBadImage) && !errors.Is(err, ErrTooManyPixels) && !errors.Is(err, ErrTooCostly) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if h.Width*h.Height > 1_000_000 {
			return // real uploads of this size are measured in docs/reliability.md
		}
		p, err := DecodeImage(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrBadImage) {
				t.Fatalf("decode: unexpected error %v", err)
			}
			return
		}
		if p.Width > MaxOriginalDim || p.Height > MaxOriginalDim {
			t.Fatalf("original %dx%d", p.Width, p.Height)
		}
		if _, err := jpeg.DecodeConfig(bytes.NewReader(p.Thumbnail)); err != nil {
			t.Fatalf("thumbnail is not a JPEG: %v", err)
		}
	})
}
