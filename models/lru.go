package models

import (
	"container/list"
	"sync"
	"time"
)

// LRU keeps byte values in memory, least recently used out first, up to a
// number of bytes: keys, values and what each entry costs besides
// (lruEntryBytes), so that a flood of small entries is bounded as tightly
// as a few large ones. It is the one in-process cache of the app: stage 3's
// near cache in front of Redis (Cache) and its images in memory
// (app/stage3_cache.go). A nil *LRU keeps nothing.
type LRU struct {
	max      int64         // bytes of keys, values and entries (lruEntryBytes)
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
	l.size += entryBytes(key, value)
	for l.size > l.max && l.order.Len() > 0 {
		l.remove(l.order.Back())
	}
}

func (l *LRU) remove(e *list.Element) {
	le := e.Value.(*lruEntry)
	l.order.Remove(e)
	delete(l.items, le.key)
	l.size -= entryBytes(le.key, le.value)
}

// lruEntryBytes is what an entry costs besides its key's and value's bytes:
// the list element (48 bytes), the lruEntry (64), the map's slot (key
// header, pointer, control byte and load-factor slack: about 32), rounded up.
const lruEntryBytes = 160

func entryBytes(key string, value []byte) int64 {
	return int64(len(key) + len(value) + lruEntryBytes)
}

// Bytes is what the LRU holds, as it counts it (entries included).
func (l *LRU) Bytes() int64 {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// Memo is a map that clients' requests add to, bounded in bytes: its keys,
// its values (sizeOf) and the map's own cost per entry (memoEntryBytes),
// not only in entries. Full, it starts over with a new map (clear would
// keep the old one's buckets, sized for the flood). Stage 3 remembers which
// view each page starts with and what each view depends on in two
// (app/stage3_cache.go). Not safe for concurrent use: its owner locks.
type Memo[V any] struct {
	m      map[string]V
	size   int64
	max    int64
	sizeOf func(V) int
}

// memoEntryBytes is what the map costs per entry beyond its key's and
// value's own bytes: the key's string header (16), the value's header (up
// to 24), the control byte and the slack of the load factor, rounded up.
const memoEntryBytes = 64

// NewMemo keeps up to max bytes; sizeOf gives a value's bytes.
func NewMemo[V any](max int64, sizeOf func(V) int) *Memo[V] {
	return &Memo[V]{m: map[string]V{}, max: max, sizeOf: sizeOf}
}

// Get returns k's value.
func (m *Memo[V]) Get(k string) (V, bool) {
	v, ok := m.m[k]
	return v, ok
}

func (m *Memo[V]) cost(k string, v V) int64 {
	return int64(len(k) + m.sizeOf(v) + memoEntryBytes)
}

// Put keeps v under k; an entry over 1/64 of the memo is not kept, and one
// that does not fit starts the memo over.
func (m *Memo[V]) Put(k string, v V) {
	n := m.cost(k, v)
	if n > m.max/64 {
		return
	}
	if old, ok := m.m[k]; ok {
		m.size -= m.cost(k, old)
	}
	if m.size+n > m.max {
		m.m, m.size = map[string]V{}, 0
	}
	m.m[k] = v
	m.size += n
}

// Bytes is what the memo holds, as it counts it.
func (m *Memo[V]) Bytes() int64 { return m.size }
