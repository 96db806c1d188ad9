package models

import (
	"bufio"
	"bytes"
	"errors"
	"image"
	"io"
	"net/http"
)

// ImageHeader is what an upload's header says, read without decoding it.
type ImageHeader struct {
	Format        string // "jpeg" or "png"
	Width, Height int
	// DecodeBytes is the memory DecodeImage takes at most (what the decoder
	// allocates, then the scaling buffers and the encoders): the upload
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
	sniff = sniff[:n]
	switch http.DetectContentType(sniff) {
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
	var dec int64
	switch format {
	case "jpeg":
		dec, err = jpegDecodeBytes(r, cfg)
	case "png":
		dec, err = pngDecodeBytes(sniff, cfg)
	default:
		err = ErrNotImage
	}
	if err != nil {
		return h, err
	}
	h.DecodeBytes = dec + scaleBytes(int64(cfg.Width), int64(cfg.Height))
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return h, ErrBadImage
	}
	if h.DecodeBytes > MaxDecodeBytes {
		return h, ErrTooCostly
	}
	return h, nil
}

// scaleBytes is what EncodeImage allocates besides the decoded image:
// shrink's box-filtered copy (under 4096² RGBA) and the 2048² original, and
// a few MiB for the encoders and the thumbnail.
func scaleBytes(w, h int64) int64 {
	var n int64
	if k := max(w, h) / MaxOriginalDim; k >= 2 {
		n += (w / k) * (h / k) * 4
	}
	n += MaxOriginalDim * MaxOriginalDim * 4
	return n + 8<<20
}

// pngDecodeBytes is what image/png allocates for a PNG, whatever its later
// chunks say: 4 bytes a pixel at 8 bits or less (a grey or paletted image
// becomes NRGBA when a tRNS chunk follows), 8 at 16 bits, and twice that
// when interlaced (each Adam7 pass is an image of its own before it is
// merged into the whole).
func pngDecodeBytes(ihdr []byte, cfg image.Config) (int64, error) {
	if len(ihdr) < 29 { // signature, IHDR's length and type, then 13 bytes
		return 0, ErrBadImage
	}
	depth, interlace := ihdr[24], ihdr[28]
	n := int64(cfg.Width) * int64(cfg.Height) * 4
	if depth == 16 {
		n *= 2
	}
	if interlace != 0 {
		n *= 2
	}
	return n, nil
}

// jpegDecodeBytes is what image/jpeg allocates for a JPEG: the frame header
// found as the decoder finds it, then whether the decoder may convert the
// image to RGB.
func jpegDecodeBytes(r io.ReadSeeker, cfg image.Config) (int64, error) {
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return 0, ErrBadImage
	}
	f, err := readJPEGFrame(bufio.NewReader(r))
	if err != nil || f.width != cfg.Width || f.height != cfg.Height {
		return 0, ErrBadImage
	}
	rgb := false
	if len(f.comps) == 3 {
		rgb = f.comps[0].id == 'R' && f.comps[1].id == 'G' && f.comps[2].id == 'B'
		if !rgb {
			if _, err := r.Seek(0, io.SeekStart); err != nil {
				return 0, ErrBadImage
			}
			if rgb, err = adobeRGB(r); err != nil {
				return 0, ErrBadImage
			}
		}
	}
	// Three components' planes are reserved at their 4:4:4 size whatever
	// the subsampling (as before this reader was exact): a 40 MP 4:2:0 photo
	// then reserves about 160 MB, not 100, so two decode at once, which is
	// also what this 2-core machine can finish. Costed exactly, three at a
	// time missed their request deadline under load (docs/reliability.md).
	cost := f.decodeBytes(rgb)
	if len(f.comps) == 3 {
		cost += max(0, int64(f.width)*int64(f.height)*3-f.planeBytes())
	}
	return cost, nil
}

// jpegFrame is a JPEG's frame header (SOF), what sizes image/jpeg's buffers.
type jpegFrame struct {
	progressive   bool
	width, height int
	comps         []jpegComp
}

type jpegComp struct {
	id   byte
	h, v int // sampling factors, as the decoder normalises them
}

var errNoFrame = errors.New("models: no JPEG frame header the decoder would read")

// readJPEGFrame finds the frame header exactly as image/jpeg's decoder does
// (decoder.decode in Go's image/jpeg/reader.go): any byte that is not a
// marker's 0xFF is skipped, "\xFF\x00" is skipped, fill bytes and restart
// markers are skipped, and every other segment before the frame is skipped
// by its length, however many there are. The first SOF0, SOF1 or SOF2 is the
// frame: the decoder refuses a second one, and a scan before it. Anything
// at which the decoder fails before the frame is an error here too, so the
// frame read here is the one the decoder allocates for. (An earlier reader
// stopped at the first junk byte or after 1,000 segments, and costed the
// frame as baseline: a progressive 4:4:4 frame so hidden allocated 4 times
// its reservation.)
func readJPEGFrame(r *bufio.Reader) (jpegFrame, error) {
	var b [2]byte
	if _, err := io.ReadFull(r, b[:]); err != nil || b[0] != 0xFF || b[1] != 0xD8 {
		return jpegFrame{}, errNoFrame
	}
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return jpegFrame{}, err
		}
		for b[0] != 0xFF {
			c, err := r.ReadByte()
			if err != nil {
				return jpegFrame{}, err
			}
			b[0], b[1] = b[1], c
		}
		marker := b[1]
		if marker == 0 {
			continue
		}
		for marker == 0xFF {
			c, err := r.ReadByte()
			if err != nil {
				return jpegFrame{}, err
			}
			marker = c
		}
		if marker == 0xD9 { // EOI
			return jpegFrame{}, errNoFrame
		}
		if marker >= 0xD0 && marker <= 0xD7 { // RSTn: no length
			continue
		}
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return jpegFrame{}, err
		}
		n := (int(b[0])<<8 | int(b[1])) - 2
		if n < 0 {
			return jpegFrame{}, errNoFrame
		}
		switch {
		case marker == 0xC0 || marker == 0xC1 || marker == 0xC2:
			return readSOF(r, n, marker == 0xC2)
		case marker == 0xC4 || marker == 0xDB || marker == 0xDD || marker >= 0xE0 && marker <= 0xEF || marker == 0xFE:
			// DHT, DQT, DRI, APPn, COM: the decoder reads exactly n bytes
			// of each, or fails.
			if _, err := r.Discard(n); err != nil {
				return jpegFrame{}, err
			}
		default: // SOS, other frame types, unknown markers: the decoder fails
			return jpegFrame{}, errNoFrame
		}
	}
}

// readSOF reads a frame header's n bytes with the checks of image/jpeg's
// processSOF that bound the sampling factors (1, 2 or 4; the supported
// subsamplings), normalising a grey frame's factors to 1×1 as it does.
func readSOF(r io.Reader, n int, progressive bool) (jpegFrame, error) {
	f := jpegFrame{progressive: progressive}
	nComp := map[int]int{6 + 3*1: 1, 6 + 3*3: 3, 6 + 3*4: 4}[n]
	if nComp == 0 {
		return f, errNoFrame
	}
	t := make([]byte, n)
	if _, err := io.ReadFull(r, t); err != nil {
		return f, err
	}
	if t[0] != 8 || int(t[5]) != nComp {
		return f, errNoFrame
	}
	f.height, f.width = int(t[1])<<8|int(t[2]), int(t[3])<<8|int(t[4])
	for i := range nComp {
		hv := t[7+3*i]
		h, v := int(hv>>4), int(hv&0x0F)
		if h < 1 || h > 4 || v < 1 || v > 4 || h == 3 || v == 3 {
			return f, errNoFrame
		}
		ok := true
		switch {
		case nComp == 1:
			h, v = 1, 1
		case nComp == 3 && i == 0:
			ok = v != 4
		case nComp == 3 && i == 1:
			ok = f.comps[0].h%h == 0 && f.comps[0].v%v == 0
		case nComp == 3 && i == 2:
			ok = f.comps[1].h == h && f.comps[1].v == v
		case nComp == 4 && i == 0:
			ok = hv == 0x11 || hv == 0x22
		case nComp == 4 && i < 3:
			ok = hv == 0x11
		case nComp == 4:
			ok = f.comps[0].h == h && f.comps[0].v == v
		}
		if !ok {
			return f, errNoFrame
		}
		f.comps = append(f.comps, jpegComp{id: t[6+3*i], h: h, v: v})
	}
	return f, nil
}

// decodeBytes is what image/jpeg allocates to decode the frame (makeImg and
// processSOS in scan.go, convertToRGB and applyBlack in reader.go): the
// planes, rounded up to whole MCUs (a Y plane, two chroma planes at the
// frame's subsampling, a K plane for four components); a progressive
// frame's coefficients, a 256-byte block per 8×8 of each component at its
// sampling; and a 4-byte-a-pixel image, which four components are always
// converted into and three are when rgb.
func (f jpegFrame) decodeBytes(rgb bool) int64 {
	n := f.planeBytes()
	mxx, myy, pw, ph := f.mcus()
	converted := int64(f.width) * int64(f.height) * 4
	switch {
	case len(f.comps) == 4:
		n += pw*ph + converted
	case len(f.comps) == 3 && rgb:
		n += converted
	}
	if f.progressive {
		for _, c := range f.comps {
			n += mxx * myy * int64(c.h*c.v) * 256
		}
	}
	return n
}

// mcus is the frame's size in MCUs and in pixels rounded up to whole MCUs.
func (f jpegFrame) mcus() (mxx, myy, pw, ph int64) {
	c0 := f.comps[0]
	mxx = int64((f.width + 8*c0.h - 1) / (8 * c0.h))
	myy = int64((f.height + 8*c0.v - 1) / (8 * c0.v))
	return mxx, myy, 8 * int64(c0.h) * mxx, 8 * int64(c0.v) * myy
}

// planeBytes is the decoded image's Y (or grey) and chroma planes.
func (f jpegFrame) planeBytes() int64 {
	_, _, pw, ph := f.mcus()
	n := pw * ph
	if len(f.comps) > 1 {
		c0, c1 := f.comps[0], f.comps[1]
		n += 2 * (pw / int64(c0.h/c1.h)) * (ph / int64(c0.v/c1.v))
	}
	return n
}

// adobeRGB reports whether r holds, anywhere, the bytes of an Adobe APP14
// segment whose transform is 0 ("unknown"), with which image/jpeg decodes
// three components as RGB and converts them into a second, RGBA image. The
// decoder reads such a segment wherever it meets one, after the frame and
// between scans too, so every byte is looked at: a match the decoder never
// parses (inside entropy-coded data, say) only over-reserves.
func adobeRGB(r io.Reader) (bool, error) {
	const span = 16 // FF EE, the length, the 12 bytes processApp14Marker reads
	buf := make([]byte, 64<<10)
	have := 0
	for {
		n, err := io.ReadFull(r, buf[have:])
		have += n
		data := buf[:have]
		for i := 0; ; i++ {
			j := bytes.Index(data[i:], []byte{0xFF, 0xEE})
			if j < 0 {
				break
			}
			i += j
			if i+span > len(data) {
				break // looked at again with the next bytes
			}
			if string(data[i+4:i+9]) == "Adobe" && data[i+15] == 0 {
				return true, nil
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		keep := min(span-1, have)
		copy(buf, data[have-keep:])
		have = keep
	}
}
