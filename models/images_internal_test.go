package models

import (
	"bufio"
	"bytes"
	"compress/zlib"
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
		// image/jpeg's encoder writes 4:2:0: 6 bytes a pixel of coefficients,
		// the planes reserved at 3 (their 4:4:4 size).
		{"a 12 MP progressive 4:2:0 JPEG", jpegHeader(t, 4000, 3000, true), nil, 12_000_000 * (3 + 6)},
		{"a 12 MP progressive 4:4:4 JPEG", craftJPEG(ycc444(0xC2, 4000, 3000)), nil, 12_000_000 * (3 + 12)},
		{"a 20 MP progressive 4:4:4 JPEG", craftJPEG(ycc444(0xC2, 5000, 4000)), ErrTooCostly, 0},
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
			// The frame reader walks the markers as image/jpeg does: a
			// JPEG it cannot cost is one image/jpeg cannot decode either.
			if errors.Is(err, ErrBadImage) {
				cfg, cerr := jpeg.DecodeConfig(bytes.NewReader(data))
				if cerr == nil && cfg.Width > 0 && cfg.Height > 0 && cfg.Width*cfg.Height <= 1_000_000 {
					if _, derr := jpeg.Decode(bytes.NewReader(data)); derr == nil {
						t.Fatalf("refused as unreadable a JPEG that image/jpeg decodes")
					}
				}
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

// jpegSpec describes a JPEG for craftJPEG: the frame marker (0xC0 baseline,
// 0xC2 progressive), the size, each component's id and sampling factors
// (0x22 is 2×2), the bytes between the first segment and the frame header
// (COM segments, junk: after SOI they would fail the content sniffing) and, when adobe ≥ 0, an Adobe APP14 segment with that transform.
type jpegSpec struct {
	sof    byte
	w, h   int
	ids    []byte
	hv     []byte
	prefix []byte
	adobe  int
}

func ycc444(sof byte, w, h int) jpegSpec {
	return jpegSpec{sof: sof, w: w, h: h, ids: []byte{1, 2, 3}, hv: []byte{0x11, 0x11, 0x11}, adobe: -1}
}

// craftJPEG writes a JPEG that image/jpeg decodes to a flat grey: one scan
// in which every block is a zero DC difference (and, baseline, an end of
// block), each a one-bit Huffman code, so the file is a few bits per block
// however large the frame. Progressive files get only the DC scan, which is
// all the decoder needs to allocate every component's coefficients.
func craftJPEG(s jpegSpec) []byte {
	var b bytes.Buffer
	seg := func(marker byte, payload []byte) {
		b.Write([]byte{0xFF, marker, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)})
		b.Write(payload)
	}
	b.Write([]byte{0xFF, 0xD8})
	if s.adobe >= 0 {
		seg(0xEE, []byte{'A', 'd', 'o', 'b', 'e', 0, 100, 0, 0, 0, 0, byte(s.adobe)})
	}
	seg(0xDB, append([]byte{0}, bytes.Repeat([]byte{1}, 64)...))
	b.Write(s.prefix)
	sof := []byte{8, byte(s.h >> 8), byte(s.h), byte(s.w >> 8), byte(s.w), byte(len(s.ids))}
	for i, id := range s.ids {
		sof = append(sof, id, s.hv[i], 0)
	}
	seg(s.sof, sof)
	oneCode := append([]byte{1}, make([]byte, 15)...)         // one code of length 1
	dht := append(append([]byte{0x00}, oneCode...), 0x00)     // DC table 0: category 0
	dht = append(append(append(dht, 0x10), oneCode...), 0x00) // AC table 0: end of block
	seg(0xC4, dht)
	sos := []byte{byte(len(s.ids))}
	for _, id := range s.ids {
		sos = append(sos, id, 0x00)
	}
	bitsPerBlock := 2
	if s.sof == 0xC2 {
		sos, bitsPerBlock = append(sos, 0, 0, 0), 1
	} else {
		sos = append(sos, 0, 63, 0)
	}
	seg(0xDA, sos)
	h0, v0, blocks := 1, 1, 1
	if len(s.ids) > 1 {
		h0, v0, blocks = int(s.hv[0]>>4), int(s.hv[0]&15), 0
		for _, hv := range s.hv {
			blocks += int(hv>>4) * int(hv&15)
		}
	}
	mcus := (s.w + 8*h0 - 1) / (8 * h0) * ((s.h + 8*v0 - 1) / (8 * v0))
	b.Write(make([]byte, (mcus*blocks*bitsPerBlock+7)/8+2))
	b.Write([]byte{0xFF, 0xD9})
	return b.Bytes()
}

// comSegments is n empty COM segments.
func comSegments(n int) []byte {
	return bytes.Repeat([]byte{0xFF, 0xFE, 0x00, 0x02}, n)
}

// The decoder skips any byte that is not a marker's 0xFF and reads any
// number of segments before the frame: the header reader finds the frame
// the same way, so a progressive frame behind 1,001 COM segments or a junk
// byte is costed as progressive (it was costed as baseline: 36 MP reserved
// 146 MB and allocated 0.5 GB).
func TestReadImageHeaderFindsTheFrameTheDecoderFinds(t *testing.T) {
	for _, tt := range []struct {
		name   string
		prefix []byte
	}{
		{"1,001 COM segments", comSegments(1001)},
		{"a junk byte", []byte{0x00}},
		{"junk and a stuffed zero", []byte{'x', 0xFF, 0x00, 'y'}},
		{"fill bytes and a restart marker", []byte{0xFF, 0xFF, 0xFF, 0xD3}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := ycc444(0xC2, 6000, 6000)
			s.prefix = tt.prefix
			data := craftJPEG(s)
			if _, err := jpeg.DecodeConfig(bytes.NewReader(data)); err != nil {
				t.Fatalf("image/jpeg does not read the crafted file: %v", err)
			}
			h, err := ReadImageHeader(bytes.NewReader(data))
			if !errors.Is(err, ErrTooCostly) {
				t.Fatalf("error %v (DecodeBytes %d MB), want %v", err, h.DecodeBytes>>20, ErrTooCostly)
			}
		})
	}
}

// What the header reader reserves covers what decoding, scaling and
// encoding the image then allocate, whatever its markers: progressive
// frames behind junk or many segments, RGB and CMYK frames (which
// image/jpeg converts into a second, 4-byte-a-pixel image).
func TestDecodeImageStaysWithinItsReservation(t *testing.T) {
	prog := ycc444(0xC2, 2048, 2048)
	prog.prefix = comSegments(1001)
	junk := ycc444(0xC2, 2048, 2048)
	junk.prefix = []byte{0x00}
	rgb := ycc444(0xC0, 3000, 3000)
	rgb.adobe = 0
	cmyk := jpegSpec{sof: 0xC0, w: 3000, h: 3000, ids: []byte{1, 2, 3, 4}, hv: []byte{0x11, 0x11, 0x11, 0x11}, adobe: 0}
	for _, tt := range []struct {
		name string
		spec jpegSpec
	}{
		{"progressive 4:4:4 behind 1,001 COM segments", prog},
		{"progressive 4:4:4 behind a junk byte", junk},
		{"RGB by its Adobe transform", rgb},
		{"CMYK", cmyk},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := craftJPEG(tt.spec)
			h, err := ReadImageHeader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			var derr error
			n := allocated(func() { _, derr = DecodeImage(bytes.NewReader(data)) })
			if derr != nil {
				t.Fatal(derr)
			}
			if n > uint64(h.DecodeBytes+h.DecodeBytes/10) {
				t.Fatalf("decoding allocated %d MB, %d MB reserved", n>>20, h.DecodeBytes>>20)
			}
		})
	}
}

// The frame's cost is what image/jpeg allocates, no less and not much more
// (the decoder's own tables and reader are the difference), for every
// layout it decodes: sizes that are not whole MCUs, each subsampling,
// progressive or not, grey, RGB by component ids or by the Adobe transform,
// CMYK and YCbCrK.
func TestJPEGFrameCostIsWhatTheDecoderAllocates(t *testing.T) {
	sub := func(sof byte, hv ...byte) jpegSpec {
		s := ycc444(sof, 601, 409)
		s.hv = hv
		return s
	}
	grey := jpegSpec{sof: 0xC2, w: 601, h: 409, ids: []byte{1}, hv: []byte{0x22}, adobe: -1}
	rgbIDs := ycc444(0xC2, 601, 409)
	rgbIDs.ids = []byte{'R', 'G', 'B'}
	adobe0 := sub(0xC0, 0x22, 0x11, 0x11)
	adobe0.adobe = 0
	adobe1 := adobe0
	adobe1.adobe = 1
	cmyk := jpegSpec{sof: 0xC2, w: 601, h: 409, ids: []byte{1, 2, 3, 4}, hv: []byte{0x11, 0x11, 0x11, 0x11}, adobe: 0}
	ycck := jpegSpec{sof: 0xC2, w: 601, h: 409, ids: []byte{1, 2, 3, 4}, hv: []byte{0x22, 0x11, 0x11, 0x22}, adobe: 2}
	for _, tt := range []struct {
		name string
		spec jpegSpec
	}{
		{"baseline 4:4:4", ycc444(0xC0, 601, 409)},
		{"progressive 4:4:4", ycc444(0xC2, 601, 409)},
		{"baseline 4:2:0", sub(0xC0, 0x22, 0x11, 0x11)},
		{"progressive 4:2:0", sub(0xC2, 0x22, 0x11, 0x11)},
		{"progressive 4:2:2", sub(0xC2, 0x21, 0x11, 0x11)},
		{"progressive 4:4:0", sub(0xC2, 0x12, 0x11, 0x11)},
		{"progressive 4:1:1", sub(0xC2, 0x41, 0x11, 0x11)},
		{"progressive 4:1:0", sub(0xC2, 0x42, 0x11, 0x11)},
		{"progressive grey with 2x2 factors", grey},
		{"progressive RGB by component ids", rgbIDs},
		{"baseline RGB by Adobe transform 0", adobe0},
		{"baseline YCbCr by Adobe transform 1", adobe1},
		{"progressive CMYK", cmyk},
		{"progressive YCbCrK 2x2", ycck},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := craftJPEG(tt.spec)
			f, err := readJPEGFrame(bufio.NewReader(bytes.NewReader(data)))
			if err != nil {
				t.Fatal(err)
			}
			rgb := tt.spec.adobe == 0 || string(tt.spec.ids) == "RGB"
			cost := f.decodeBytes(rgb)
			var derr error
			n := int64(allocated(func() { _, derr = jpeg.Decode(bytes.NewReader(data)) }))
			if derr != nil {
				t.Fatal(derr)
			}
			if n < cost || n > cost+64<<10 { // the decoder's tables and reader: about 25 KB
				t.Fatalf("image/jpeg allocated %d bytes, the frame costs %d", n, cost)
			}
		})
	}
}

// pngImage is a w×h 8-bit grey PNG of zeros, Adam7-interlaced when asked,
// with a tRNS chunk when asked (with which image/png decodes grey as NRGBA).
func pngImage(t *testing.T, w, h int, interlaced, trns bool) []byte {
	t.Helper()
	head := pngHeader(uint32(w), uint32(h), 8, 0)
	chunk := func(b *bytes.Buffer, typ string, data []byte) {
		binary.Write(b, binary.BigEndian, uint32(len(data)))
		c := append([]byte(typ), data...)
		b.Write(c)
		binary.Write(b, binary.BigEndian, crc32.ChecksumIEEE(c))
	}
	if interlaced { // IHDR's last byte, then its CRC again
		head[8+4+4+12] = 1
		binary.BigEndian.PutUint32(head[len(head)-4:], crc32.ChecksumIEEE(head[12:len(head)-4]))
	}
	var out bytes.Buffer
	out.Write(head)
	if trns {
		chunk(&out, "tRNS", []byte{0, 7})
	}
	passes := [][4]int{{0, 0, 1, 1}} // x0, y0, dx, dy
	if interlaced {
		passes = [][4]int{{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}}
	}
	var raw bytes.Buffer
	zw := zlib.NewWriter(&raw)
	for _, p := range passes {
		pw, ph := (w-p[0]+p[2]-1)/p[2], (h-p[1]+p[3]-1)/p[3]
		if pw <= 0 || ph <= 0 {
			continue
		}
		row := make([]byte, 1+pw) // filter type 0, then the pixels
		for range ph {
			zw.Write(row)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	chunk(&out, "IDAT", raw.Bytes())
	chunk(&out, "IEND", nil)
	return out.Bytes()
}

// A grey PNG with a tRNS chunk decodes to NRGBA (4 bytes a pixel, not 1),
// and an interlaced one allocates each pass besides the whole image: the
// reservation covers both whatever the chunks say.
func TestDecodeImageStaysWithinItsReservationForPNG(t *testing.T) {
	for _, tt := range []struct {
		name              string
		interlaced, trans bool
	}{
		{"grey", false, false},
		{"grey with tRNS", false, true},
		{"interlaced grey with tRNS", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := pngImage(t, 3000, 3000, tt.interlaced, tt.trans)
			h, err := ReadImageHeader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			var derr error
			n := allocated(func() { _, derr = DecodeImage(bytes.NewReader(data)) })
			if derr != nil {
				t.Fatal(derr)
			}
			if n > uint64(h.DecodeBytes+h.DecodeBytes/10) {
				t.Fatalf("decoding allocated %d MB, %d MB reserved", n>>20, h.DecodeBytes>>20)
			}
		})
	}
}
