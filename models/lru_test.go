package models

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The LRU holds at most its bytes, pushes out the least recently used
// first, refuses values over the entry cap, and forgets expired entries.
func TestLRUKeepsTheMostRecentlyUsedWithinItsBytes(t *testing.T) {
	l := NewLRU(3*(10+lruEntryBytes), 8, 0) // three entries of a 2-byte key and an 8-byte value
	val := []byte(strings.Repeat("v", 8))
	for _, k := range []string{"k1", "k2", "k3"} {
		l.Put(k, val)
	}
	l.Get("k1") // k2 is now the least recently used
	l.Put("k4", val)
	if _, ok := l.Get("k2"); ok {
		t.Fatal("k2 was kept past the bound; it was the least recently used")
	}
	for _, k := range []string{"k1", "k3", "k4"} {
		if _, ok := l.Get(k); !ok {
			t.Fatalf("%s was pushed out", k)
		}
	}
	l.Put("big", []byte(strings.Repeat("v", 9)))
	if _, ok := l.Get("big"); ok {
		t.Fatal("a value over the entry cap was kept")
	}
	var none *LRU
	none.Put("k", val)
	if _, ok := none.Get("k"); ok {
		t.Fatal("a nil LRU kept something")
	}

	short := NewLRU(100, 100, time.Nanosecond)
	short.Put("k", val)
	time.Sleep(time.Millisecond)
	if _, ok := short.Get("k"); ok {
		t.Fatal("an expired entry was returned")
	}
}

// heapInUse is the bytes the heap holds after a collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// An LRU's bound is on the memory it holds, entries included: 200,000 tiny
// entries (an 8-byte key, a 1-byte value) put into a 1 MB LRU leave it
// holding about 1 MB, not 9 bytes counted per entry that costs 170.
func TestLRUBoundsTheMemoryItHoldsNotOnlyItsKeysAndValues(t *testing.T) {
	const max = 1 << 20
	before := heapInUse()
	l := NewLRU(max, max, 0)
	one := []byte{1}
	for i := range 200_000 {
		l.Put(fmt.Sprintf("k%07d", i), one)
	}
	grown := heapInUse() - before
	runtime.KeepAlive(l)
	if grown > 2*max || l.Bytes() > max {
		t.Fatalf("a %d-byte LRU of tiny entries holds %d bytes of heap (it counts %d)", max, grown, l.Bytes())
	}
}

// A Memo holds at most its bytes, its map included, and starts over when
// full: 100,000 keys of 40 bytes put into a 1 MB memo (4 MB of keys alone)
// leave it holding about 1 MB.
func TestMemoBoundsTheMemoryItHolds(t *testing.T) {
	const max = 1 << 20
	before := heapInUse()
	m := NewMemo(max, func(v string) int { return len(v) })
	for i := range 100_000 {
		m.Put(fmt.Sprintf("%040d", i), "view")
	}
	if v, ok := m.Get(fmt.Sprintf("%040d", 99_999)); !ok || v != "view" {
		t.Fatalf("the last key put is not kept (%q, %v)", v, ok)
	}
	grown := heapInUse() - before
	runtime.KeepAlive(m)
	if grown > 2*max || m.Bytes() > max {
		t.Fatalf("a %d-byte memo holds %d bytes of heap (it counts %d)", max, grown, m.Bytes())
	}
	m.Put(strings.Repeat("k", max/32), "too large") // over 1/64 of the memo
	if _, ok := m.Get(strings.Repeat("k", max/32)); ok {
		t.Fatal("an entry over 1/64 of the memo was kept")
	}
}
