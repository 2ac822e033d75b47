package ua

import (
	"hash/maphash"
	"strings"
	"sync"
)

// lru is a bounded, sharded least-recently-used cache from User-Agent string
// to Info, safe for concurrent use. A hit takes one shard lock, moves the
// entry to the front of the shard's list and copies the Info out: it does not
// allocate.
type lru struct {
	seed   maphash.Seed
	mask   uint64
	shards []lruShard
}

type lruShard struct {
	mu   sync.Mutex
	m    map[string]*lruEntry
	root lruEntry // sentinel: root.next is the most recently used entry
	n    int
	max  int
	_    [64]byte // keep neighbouring shard locks off the same cache line
}

type lruEntry struct {
	key        string
	val        Info
	prev, next *lruEntry
}

// minPerShard keeps small caches in one shard so that capacity stays exact.
const (
	maxShards   = 16
	minPerShard = 256
)

func newLRU(size int) *lru {
	shards := 1
	for shards < maxShards && size/(shards*2) >= minPerShard {
		shards *= 2
	}
	c := &lru{seed: maphash.MakeSeed(), mask: uint64(shards - 1), shards: make([]lruShard, shards)}
	per := (size + shards - 1) / shards
	for i := range c.shards {
		s := &c.shards[i]
		s.max = per
		s.m = make(map[string]*lruEntry, min(per, 1024))
		s.root.next, s.root.prev = &s.root, &s.root
	}
	return c
}

func (c *lru) shard(key string) *lruShard {
	if c.mask == 0 {
		return &c.shards[0]
	}
	return &c.shards[maphash.String(c.seed, key)&c.mask]
}

func (c *lru) get(key string) (Info, bool) {
	s := c.shard(key)
	s.mu.Lock()
	e, ok := s.m[key]
	if !ok {
		s.mu.Unlock()
		return Info{}, false
	}
	s.moveToFront(e)
	v := e.val
	s.mu.Unlock()
	return v, true
}

// add stores val under key. The key is copied so that the cache never pins
// a larger buffer the caller's string may point into.
func (c *lru) add(key string, val Info) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; ok {
		e.val = val
		s.moveToFront(e)
		return
	}
	var e *lruEntry
	if s.n >= s.max {
		// Reuse the least recently used entry.
		e = s.root.prev
		s.unlink(e)
		delete(s.m, e.key)
		s.n--
	} else {
		e = new(lruEntry)
	}
	e.key = strings.Clone(key)
	e.val = val
	s.pushFront(e)
	s.m[e.key] = e
	s.n++
}

func (c *lru) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += s.n
		s.mu.Unlock()
	}
	return n
}

func (s *lruShard) unlink(e *lruEntry) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

func (s *lruShard) pushFront(e *lruEntry) {
	e.prev = &s.root
	e.next = s.root.next
	s.root.next.prev = e
	s.root.next = e
}

func (s *lruShard) moveToFront(e *lruEntry) {
	if s.root.next == e {
		return
	}
	s.unlink(e)
	s.pushFront(e)
}
