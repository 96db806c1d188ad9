// Command uploadmem measures the server's memory under concurrent
// maximum-size uploads (docs/reliability.md): it signs up one user, sends
// --concurrency uploads at once for --rounds rounds, and samples the
// server's resident set size (/proc/<pid>/status, the pid from /healthz)
// every 20 ms. Traffic goes only to the --url given, which must be local.
//
//	go run ./scripts/uploadmem --url http://127.0.0.1:18080 --kind jpeg
//	go run ./scripts/uploadmem --url http://127.0.0.1:18080 --kind png-bomb
//	go run ./scripts/uploadmem --url http://127.0.0.1:18080 --kind jpeg-progressive-com
//
// The jpeg-progressive-* kinds are crafted to dodge the decode budget (issue
// 31): a 40 MP progressive 4:4:4 frame behind 1,001 COM segments, or behind
// one junk byte, which an earlier header reader costed as baseline;
// jpeg-progressive-12mp is one the budget admits. It prints what
// models.ReadImageHeader reserves for the file, so the server's growth can be
// held against the reservations.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"flickrkillr/models"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8080", "the server (local only)")
	kind := flag.String("kind", "jpeg", "jpeg: a ~10 MB JPEG of ~40 MP; png-bomb: a ~150 KB PNG that decodes to ~40 MP; "+
		"jpeg-progressive-com, jpeg-progressive-junk: a 40 MP progressive 4:4:4 JPEG behind 1,001 COM segments or a junk byte; "+
		"jpeg-progressive-12mp: a 12 MP progressive 4:4:4 JPEG")
	conc := flag.Int("concurrency", 20, "uploads at once")
	rounds := flag.Int("rounds", 3, "rounds of uploads")
	flag.Parse()
	u, err := url.Parse(*base)
	if err != nil || (u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost") {
		fail("--url must be http://127.0.0.1:PORT")
	}

	var hz struct{ PID int }
	res, err := http.Get(*base + "/healthz")
	if err != nil {
		fail(err.Error())
	}
	json.NewDecoder(res.Body).Decode(&hz)
	res.Body.Close()

	file, name := makeFile(*kind)
	fmt.Printf("file: %s, %d bytes\n", name, len(file))
	if h, err := models.ReadImageHeader(bytes.NewReader(file)); err != nil {
		fmt.Printf("header: refused before decoding (%v)\n", err)
	} else {
		fmt.Printf("header: %dx%d, reserves %d MiB of the decode budget\n", h.Width, h.Height, h.DecodeBytes>>20)
	}

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 120 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	user := fmt.Sprintf("mem%d", time.Now().UnixNano()%1e9)
	res, err = client.PostForm(*base+"/signup", url.Values{"name": {user}, "password": {"correct horse battery"}})
	if err != nil || res.StatusCode != http.StatusSeeOther {
		fail(fmt.Sprintf("sign up: %v %v", err, res))
	}
	res.Body.Close()

	startRSS := rss(hz.PID)
	var peak atomic.Int64
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if r := rss(hz.PID); r > peak.Load() {
					peak.Store(r)
				}
			}
		}
	}()

	var mu sync.Mutex
	codes := map[int]int{}
	lat := map[int][]time.Duration{}
	begin := time.Now()
	for range *rounds {
		var wg sync.WaitGroup
		for i := range *conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var body bytes.Buffer
				mw := multipart.NewWriter(&body)
				mw.WriteField("title", "memory test "+strconv.Itoa(i))
				fw, _ := mw.CreateFormFile("image", name)
				fw.Write(file)
				mw.Close()
				req, _ := http.NewRequest(http.MethodPost, *base+"/upload", &body)
				req.Header.Set("Content-Type", mw.FormDataContentType())
				t0 := time.Now()
				res, err := client.Do(req)
				d := time.Since(t0)
				code := -1
				if err == nil {
					code = res.StatusCode
					res.Body.Close()
					if code == http.StatusServiceUnavailable && res.Header.Get("Retry-After") == "" {
						code = -503 // a 503 without Retry-After
					}
				}
				mu.Lock()
				codes[code]++
				lat[code] = append(lat[code], d)
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	fmt.Printf("uploads: %d rounds × %d at once in %v\n", *rounds, *conc, time.Since(begin).Round(time.Millisecond))
	var keys []int
	for k := range codes {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	for _, k := range keys {
		ds := lat[k]
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		fmt.Printf("  status %d: %d (latency p50 %v, max %v)\n", k, codes[k], ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
	fmt.Printf("server RSS: %d MiB before, peak %d MiB sampled (growth %d MiB), VmHWM %d MiB (peak since the server started)\n",
		startRSS>>20, peak.Load()>>20, (peak.Load()-startRSS)>>20, hwm(hz.PID)>>20)
}

func makeFile(kind string) ([]byte, string) {
	switch kind {
	case "png-bomb":
		// 6320×6320 = 39.9 MP of one colour: ~150 KB that decodes to 160 MB of NRGBA.
		img := image.NewNRGBA(image.Rect(0, 0, 6320, 6320))
		for i := 3; i < len(img.Pix); i += 4 {
			img.Pix[i] = 255
		}
		var buf bytes.Buffer
		png.Encode(&buf, img)
		return buf.Bytes(), "bomb.png"
	case "jpeg":
		// 7300×5470 = 39.9 MP: gradients with a little noise, quality chosen so the
		// file is just under the 10 MB upload limit.
		w, h := 7300, 5470
		img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
		r := rand.New(rand.NewPCG(1, 2))
		for y := range h {
			for x := range w {
				img.Y[y*img.YStride+x] = uint8((x/29+y/31)%200) + uint8(r.IntN(24))
			}
		}
		for i := range img.Cb {
			img.Cb[i], img.Cr[i] = uint8(100+i%50), uint8(140-i%40)
		}
		for q := 90; q > 10; q -= 5 {
			var buf bytes.Buffer
			jpeg.Encode(&buf, img, &jpeg.Options{Quality: q})
			if buf.Len() <= 10<<20-64<<10 {
				return buf.Bytes(), "max.jpg"
			}
		}
		fail("could not fit the JPEG under 10 MB")
	case "jpeg-progressive-com":
		return progressiveJPEG(7300, 5470, bytes.Repeat([]byte{0xFF, 0xFE, 0x00, 0x02}, 1001)), "com.jpg"
	case "jpeg-progressive-junk":
		return progressiveJPEG(7300, 5470, []byte{0x00}), "junk.jpg"
	case "jpeg-progressive-12mp":
		return progressiveJPEG(4000, 3000, nil), "prog.jpg"
	}
	fail("--kind is jpeg, png-bomb, jpeg-progressive-com, jpeg-progressive-junk or jpeg-progressive-12mp")
	return nil, ""
}

// progressiveJPEG is a w×h progressive 4:4:4 JPEG of flat grey that
// image/jpeg decodes: prefix goes between the quantisation table and the
// frame header (after SOI it would fail the content sniffing), then one DC
// scan in which every block is a one-bit zero difference, which is all the
// decoder needs to allocate the three components' coefficients (a 40 MP file
// is about 0.6 MB). models' craftJPEG test helper writes the same files.
func progressiveJPEG(w, h int, prefix []byte) []byte {
	var b bytes.Buffer
	seg := func(marker byte, payload []byte) {
		b.Write([]byte{0xFF, marker, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)})
		b.Write(payload)
	}
	b.Write([]byte{0xFF, 0xD8})
	seg(0xDB, append([]byte{0}, bytes.Repeat([]byte{1}, 64)...))
	b.Write(prefix)
	seg(0xC2, []byte{8, byte(h >> 8), byte(h), byte(w >> 8), byte(w), 3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0})
	oneCode := append([]byte{1}, make([]byte, 15)...) // one code of length 1: DC category 0
	seg(0xC4, append(append([]byte{0x00}, oneCode...), 0x00))
	seg(0xDA, []byte{3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 0, 0})
	mcus := (w + 7) / 8 * ((h + 7) / 8)
	b.Write(make([]byte, (mcus*3+7)/8+2))
	b.Write([]byte{0xFF, 0xD9})
	return b.Bytes()
}

// rss and hwm read VmRSS and VmHWM (bytes) from /proc/<pid>/status.
func rss(pid int) int64 { return procStatus(pid, "VmRSS:") }
func hwm(pid int) int64 { return procStatus(pid, "VmHWM:") }

func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field) {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "uploadmem:", msg)
	os.Exit(1)
}
