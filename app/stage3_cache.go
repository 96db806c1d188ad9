package app

import (
	"bytes"
	"container/list"
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"flickrkillr/models"
)

// Stage 3: caching. The hot reads (home, photo pages, user and tag grids)
// go through a cache-aside wrapper in Redis with the Gallery's interface,
// invalidated by every write; images are kept in memory and sent with an
// ETag and a long Cache-Control, so a browser asks again only with
// If-None-Match (answered 304) and the disk is read once per image.
func init() {
	register(Stage{
		Number:  3,
		Name:    "cache",
		Summary: "cache-aside in Redis for the hot reads; images from memory with ETag/Cache-Control",
		Gallery: func(d *Deps, inner models.Gallery) (models.Gallery, error) {
			rdb, err := redisClient(d)
			if err != nil {
				return nil, err
			}
			return models.NewCachedGallery(inner, rdb, 10*time.Minute, d.Log), nil
		},
		Images: func(d *Deps, inner ImageSource) (ImageSource, error) {
			return newMemoryImages(inner, 256<<20), nil
		},
	})
}

// memoryImages keeps image bytes in memory, least recently used out first,
// up to max bytes. Image files never change (a new image gets a new key),
// so the key is a perfect ETag and entries never need invalidating.
type memoryImages struct {
	inner ImageSource
	max   int64

	mu    sync.Mutex
	size  int64
	order *list.List // of *memoryImage, most recently used at the front
	items map[string]*list.Element
}

type memoryImage struct {
	id   string
	data []byte
}

func newMemoryImages(inner ImageSource, max int64) *memoryImages {
	return &memoryImages{inner: inner, max: max, order: list.New(), items: map[string]*list.Element{}}
}

func (m *memoryImages) Image(ctx context.Context, key string, v models.Variant) (*ImageBlob, error) {
	id := key + "-" + string(v)
	data, ok := m.get(id)
	if !ok {
		blob, err := m.inner.Image(ctx, key, v)
		if err != nil {
			return nil, err
		}
		data, err = io.ReadAll(blob.Content)
		blob.Close()
		if err != nil {
			return nil, fmt.Errorf("app: read image %s: %w", key, err)
		}
		m.put(id, data)
	}
	return &ImageBlob{
		Content:      bytes.NewReader(data),
		Size:         int64(len(data)),
		ETag:         `"` + id + `"`,
		CacheControl: "public, max-age=31536000, immutable",
	}, nil
}

func (m *memoryImages) get(id string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.items[id]
	if !ok {
		return nil, false
	}
	m.order.MoveToFront(e)
	return e.Value.(*memoryImage).data, true
}

func (m *memoryImages) put(id string, data []byte) {
	if int64(len(data)) > m.max {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.items[id]; ok {
		return
	}
	m.items[id] = m.order.PushFront(&memoryImage{id: id, data: data})
	m.size += int64(len(data))
	for m.size > m.max {
		oldest := m.order.Back()
		img := oldest.Value.(*memoryImage)
		m.order.Remove(oldest)
		delete(m.items, img.id)
		m.size -= int64(len(img.data))
	}
}
