package models

import (
	"container/list"
	"sync"
	"time"
)

// LRU keeps byte values in memory, least recently used out first, up to a
// number of bytes (keys and values). It is the one in-process cache of the
// app: stage 3's near cache in front of Redis (Cache) and its images in
// memory (app/stage3_cache.go). A nil *LRU keeps nothing.
type LRU struct {
	max      int64         // bytes of keys and values
	maxEntry int64         // a larger value is not kept
	ttl      time.Duration // 0: entries never expire

	mu    sync.Mutex
	size  int64
	order *list.List // of *lruEntry, most recently used at the front
	items map[string]*list.Element
}

type lruEntry struct {
	key     string
	value   []byte
	expires time.Time // zero: never
}

// NewLRU keeps up to max bytes, values of at most maxEntry bytes each, for
// ttl (0: until they are pushed out).
func NewLRU(max, maxEntry int64, ttl time.Duration) *LRU {
	return &LRU{max: max, maxEntry: maxEntry, ttl: ttl, order: list.New(), items: map[string]*list.Element{}}
}

// Get returns key's value and makes it the most recently used.
func (l *LRU) Get(key string) ([]byte, bool) {
	if l == nil {
		return nil, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.items[key]
	if !ok {
		return nil, false
	}
	le := e.Value.(*lruEntry)
	if !le.expires.IsZero() && time.Now().After(le.expires) {
		l.remove(e)
		return nil, false
	}
	l.order.MoveToFront(e)
	return le.value, true
}

// Put keeps value under key (a key already kept keeps its value: values
// under one key never change), pushing out the least recently used.
func (l *LRU) Put(key string, value []byte) {
	if l == nil || int64(len(value)) > l.maxEntry {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.items[key]; ok {
		return
	}
	le := &lruEntry{key: key, value: value}
	if l.ttl > 0 {
		le.expires = time.Now().Add(l.ttl)
	}
	l.items[key] = l.order.PushFront(le)
	l.size += int64(len(key) + len(value))
	for l.size > l.max {
		l.remove(l.order.Back())
	}
}

func (l *LRU) remove(e *list.Element) {
	le := e.Value.(*lruEntry)
	l.order.Remove(e)
	delete(l.items, le.key)
	l.size -= int64(len(le.key) + len(le.value))
}
