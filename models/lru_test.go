package models

import (
	"strings"
	"testing"
	"time"
)

// The LRU holds at most its bytes, pushes out the least recently used
// first, refuses values over the entry cap, and forgets expired entries.
func TestLRUKeepsTheMostRecentlyUsedWithinItsBytes(t *testing.T) {
	l := NewLRU(30, 8, 0) // three entries of a 2-byte key and an 8-byte value
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
