package seed

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"sync"

	"flickrkillr/models"
)

// poolPrefix starts every pool key, and no uploaded photo's (NewImageKey is hex).
const poolPrefix = "seed"

// poolKey names pool image i of a seed; keys are valid ImageStore keys.
func poolKey(seed uint64, i int) string { return fmt.Sprintf("%s%d-%04d", poolPrefix, seed, i) }

// poolSize is how many distinct images a data set shares: several hundred at
// full scale, fewer for the small demo so that `make run` starts quickly.
func poolSize(users int) int { return min(max(users/100, 40), 300) }

// imageDims are the pool image sizes: mostly landscape, every fourth portrait.
func imageDims(i int) (w, h int) {
	if i%4 == 3 {
		return 600, 800
	}
	return 800, 600
}

// writePool makes the pool's images (original and thumbnail, real JPEGs)
// under the store, skipping those already there: the pool is written once
// and reused by later seeds with the same --seed.
func writePool(store *models.ImageStore, seed uint64, n int, prog *progress) error {
	counter := prog.start("", "images", int64(n))
	defer prog.finish(counter)
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := writePoolImage(store, seed, i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
				counter.Add(1)
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	return firstErr
}

func writePoolImage(store *models.ImageStore, seed uint64, i int) error {
	key := poolKey(seed, i)
	if exists(store, key, models.Original) && exists(store, key, models.Thumbnail) {
		return nil
	}
	w, h := imageDims(i)
	img, err := models.EncodeImage(scene(rand.New(rand.NewPCG(seed, 0x1a6e0000+uint64(i))), w, h))
	if err != nil {
		return err
	}
	return store.Put(key, img)
}

func exists(store *models.ImageStore, key string, v models.Variant) bool {
	path, err := store.Path(key, v)
	if err != nil {
		return false
	}
	_, err = os.Stat(path)
	return err == nil
}

// scene paints a procedural landscape: a sky gradient, a sun, layered hills
// or a skyline, and a little noise so that JPEG sizes are realistic.
func scene(r *rand.Rand, w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	top, bottom := randColor(r), randColor(r)
	sunX, sunY, sunR := r.Float64()*float64(w), r.Float64()*float64(h)*0.5, 30+r.Float64()*60
	sun := color.RGBA{255, uint8(180 + r.IntN(75)), uint8(r.IntN(120)), 255}
	city := r.IntN(3) == 0
	type layer struct {
		base, amp, freq, phase float64
		c                      color.RGBA
	}
	var layers []layer
	for l := range 3 {
		layers = append(layers, layer{
			base:  float64(h) * (0.55 + 0.12*float64(l)),
			amp:   float64(h) * (0.04 + r.Float64()*0.08),
			freq:  (1 + r.Float64()*3) * 2 * math.Pi / float64(w),
			phase: r.Float64() * 2 * math.Pi,
			c:     darken(randColor(r), 0.35+0.2*float64(l)),
		})
	}
	var buildings []image.Rectangle
	if city {
		for x := 0; x < w; {
			bw := 20 + r.IntN(60)
			buildings = append(buildings, image.Rect(x, int(float64(h)*(0.3+r.Float64()*0.4)), x+bw, h))
			x += bw + r.IntN(8)
		}
	}
	noise := rand.New(rand.NewPCG(r.Uint64(), 7))
	for y := range h {
		t := float64(y) / float64(h)
		sky := lerp(top, bottom, t)
		for x := range w {
			c := sky
			if dx, dy := float64(x)-sunX, float64(y)-sunY; dx*dx+dy*dy < sunR*sunR {
				c = sun
			}
			if city {
				for _, b := range buildings {
					if image.Pt(x, y).In(b) {
						c = darken(top, 0.25)
						if (x/6+y/9)%5 == 0 && (y/9)%2 == 0 {
							c = color.RGBA{250, 220, 120, 255} // a lit window
						}
						break
					}
				}
			} else {
				for _, l := range layers {
					if float64(y) > l.base+l.amp*math.Sin(l.freq*float64(x)+l.phase) {
						c = l.c
					}
				}
			}
			n := int(noise.Uint32()&15) - 8
			o := img.PixOffset(x, y)
			img.Pix[o+0] = clamp(int(c.R) + n)
			img.Pix[o+1] = clamp(int(c.G) + n)
			img.Pix[o+2] = clamp(int(c.B) + n)
			img.Pix[o+3] = 255
		}
	}
	return img
}

func randColor(r *rand.Rand) color.RGBA {
	return color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
}

func lerp(a, b color.RGBA, t float64) color.RGBA {
	f := func(x, y uint8) uint8 { return uint8(float64(x) + (float64(y)-float64(x))*t) }
	return color.RGBA{f(a.R, b.R), f(a.G, b.G), f(a.B, b.B), 255}
}

func darken(c color.RGBA, k float64) color.RGBA {
	return color.RGBA{uint8(float64(c.R) * k), uint8(float64(c.G) * k), uint8(float64(c.B) * k), 255}
}

func clamp(v int) uint8 {
	return uint8(min(max(v, 0), 255))
}
