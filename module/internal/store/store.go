// Package store keeps consent records and gateway secrets in an embedded
// Badger database. Decisions are appended durably: concurrent appends are
// grouped into one synced commit, and each caller returns only after the
// commit that holds its record reached the disk.
package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// DefaultRetention is how long records are kept: 7 years.
const DefaultRetention = 7 * 365 * 24 * time.Hour

// maxBatch bounds the records of one group commit.
const maxBatch = 1024

// ErrClosed is returned by operations on a closed store.
var ErrClosed = errors.New("consent store is closed")

// ErrNotFound is returned when a key does not exist.
var ErrNotFound = errors.New("not found")

// Options tune the store.
type Options struct {
	// Retention is the record lifetime (Badger TTL); default 7 years.
	Retention time.Duration
	// EncryptionKey, when set (16, 24 or 32 bytes), encrypts everything
	// the store writes with AES (Badger's encryption at rest).
	EncryptionKey []byte
	// ReadOnly opens the store without writing (offline verify, export).
	ReadOnly bool
	// Logger receives Badger's own messages; nil silences them.
	Logger badger.Logger
}

// Store is the consent store.
type Store struct {
	db        *badger.DB
	retention atomic.Int64 // time.Duration
	encrypted bool

	mu       sync.RWMutex // guards closed against sends on reqs
	createMu sync.Mutex   // serialises GetOrCreate: conflict detection is off
	eraseMu  sync.Mutex   // serialises erasures and purges
	closed   bool
	reqs     chan *pending
	done     chan struct{}
	commits  atomic.Uint64

	// Owned by the commit loop: the head of each site's chain and the
	// current values of counters, so a commit need not read them back.
	heads    map[string]head
	counters map[string]uint64
}

type opKind uint8

const (
	opPut    opKind = iota // set key to val
	opAppend               // append a record to its site's chain
	opAdd                  // add delta to the counter at key
	opReset                // forget cached heads and counters (after a restore)
)

type pending struct {
	kind     opKind
	key, val []byte
	ttl      time.Duration
	delta    uint64
	// opAppend: the record's site, consent ID, JSON and counters to bump.
	site, id string
	counts   []string
	digest   [32]byte
	// set by the commit loop for opAppend
	seq uint64
	err chan error
}

// Open opens (or creates) the store in dir with memory options sized for a
// small edge node.
func Open(dir string, o Options) (*Store, error) {
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(o.Logger).
		WithDetectConflicts(false).
		WithMemTableSize(16 << 20).
		WithNumMemtables(3).
		WithNumLevelZeroTables(3).
		WithNumLevelZeroTablesStall(8).
		WithBaseTableSize(4 << 20).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(8 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		WithCompactL0OnClose(true).
		// Uncompressed tables: records are small, CPU goes to the commit
		// path, and a scan of the files for personal data (after an
		// erasure, or of an encrypted store) proves what it claims.
		WithCompression(options.None).
		WithReadOnly(o.ReadOnly)
	if len(o.EncryptionKey) > 0 {
		switch len(o.EncryptionKey) {
		case 16, 24, 32:
		default:
			return nil, fmt.Errorf("consent store encryption key must be 16, 24 or 32 bytes, not %d", len(o.EncryptionKey))
		}
		opts = opts.WithEncryptionKey(o.EncryptionKey)
	}
	db, err := badger.Open(opts)
	if err != nil {
		msg := err.Error()
		switch {
		case strings.Contains(msg, "Cannot acquire directory lock"):
			return nil, fmt.Errorf("consent store %s is locked by another process (is another instance running with the same storage directory?): %w", dir, err)
		case strings.Contains(msg, "Encryption key mismatch"), strings.Contains(msg, "encryption key"):
			return nil, fmt.Errorf("consent store %s: wrong encryption key, or the store is (not) encrypted while the config says otherwise: %w", dir, err)
		}
		return nil, fmt.Errorf("opening consent store %s: %w", dir, err)
	}
	s := &Store{
		db:        db,
		encrypted: len(o.EncryptionKey) > 0,
		reqs:      make(chan *pending, maxBatch),
		done:      make(chan struct{}),
		heads:     make(map[string]head),
		counters:  make(map[string]uint64),
	}
	s.retention.Store(int64(o.Retention))
	if o.ReadOnly {
		// Nothing can be written: close the queue so writes fail cleanly.
		s.closed = true
		close(s.reqs)
		close(s.done)
		return s, nil
	}
	go s.commitLoop()
	if err := s.resumeErasures(); err != nil {
		s.Close()
		return nil, fmt.Errorf("finishing an interrupted erasure in %s: %w", dir, err)
	}
	return s, nil
}

// Encrypted reports whether the store encrypts what it writes.
func (s *Store) Encrypted() bool { return s.encrypted }

// SetRetention changes the lifetime of records appended from now on (a
// config reload reuses the open store). Zero or less means the default.
func (s *Store) SetRetention(d time.Duration) {
	if d <= 0 {
		d = DefaultRetention
	}
	s.retention.Store(int64(d))
}

// Retention is the lifetime given to new records.
func (s *Store) Retention() time.Duration { return time.Duration(s.retention.Load()) }

// Close flushes pending appends and closes the database.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.reqs)
	s.mu.Unlock()
	<-s.done
	return s.db.Close()
}

// Commits returns how many group commits ran (for tests and metrics).
func (s *Store) Commits() uint64 { return s.commits.Load() }

// commitLoop writes whatever appends are waiting in one synced transaction,
// then acknowledges each. While one commit syncs, the next batch gathers.
func (s *Store) commitLoop() {
	defer close(s.done)
	batch := make([]*pending, 0, maxBatch)
	for p := range s.reqs {
		batch = append(batch[:0], p)
	gather:
		for len(batch) < maxBatch {
			select {
			case p, ok := <-s.reqs:
				if !ok {
					break gather
				}
				batch = append(batch, p)
			default:
				break gather
			}
		}
		err := s.writeBatch(batch)
		s.commits.Add(1)
		for _, p := range batch {
			p.err <- err
		}
	}
}

func (s *Store) writeBatch(batch []*pending) error {
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	// Chain heads and counters change tentatively and are kept only when
	// the commit succeeds; after a failure they are read again.
	heads := make(map[string]head)
	counters := make(map[string]uint64)
	set := func(e *badger.Entry) error {
		err := txn.SetEntry(e)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = s.db.NewTransaction(true)
			err = txn.SetEntry(e)
		}
		return err
	}
	ttl := s.Retention()
	add := func(key string, delta uint64) error {
		v, ok := counters[key]
		if !ok {
			var err error
			if v, err = s.counter(txn, key); err != nil {
				return err
			}
		}
		counters[key] = v + delta
		return nil
	}
	for _, p := range batch {
		var err error
		switch p.kind {
		case opPut:
			e := badger.NewEntry(p.key, p.val)
			if p.ttl > 0 {
				e = e.WithTTL(p.ttl)
			}
			err = set(e)
		case opAdd:
			err = add(string(p.key), p.delta)
		case opReset:
			s.heads, s.counters = make(map[string]head), make(map[string]uint64)
		case opAppend:
			err = s.appendEntry(txn, heads, p, set, ttl)
			for _, c := range p.counts {
				if err == nil {
					err = add(c, 1)
				}
			}
		}
		if err != nil {
			s.heads, s.counters = make(map[string]head), make(map[string]uint64)
			return err
		}
	}
	for site, h := range heads {
		if err := set(badger.NewEntry(headKey(site), h.encode())); err != nil {
			s.heads, s.counters = make(map[string]head), make(map[string]uint64)
			return err
		}
	}
	for key, v := range counters {
		if err := set(badger.NewEntry([]byte(key), binary.BigEndian.AppendUint64(nil, v)).WithTTL(ttl)); err != nil {
			s.heads, s.counters = make(map[string]head), make(map[string]uint64)
			return err
		}
	}
	if err := txn.Commit(); err != nil {
		s.heads, s.counters = make(map[string]head), make(map[string]uint64)
		return err
	}
	for site, h := range heads {
		s.heads[site] = h
	}
	if len(s.counters) > 1<<16 {
		// Bound the cache; counters are read back when next needed.
		s.counters = make(map[string]uint64)
	}
	for key, v := range counters {
		s.counters[key] = v
	}
	return nil
}

// counter reads a counter's current value (cache first).
func (s *Store) counter(txn *badger.Txn, key string) (uint64, error) {
	if v, ok := s.counters[key]; ok {
		return v, nil
	}
	item, err := txn.Get([]byte(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var v uint64
	err = item.Value(func(b []byte) error {
		if len(b) != 8 {
			return fmt.Errorf("counter %q is corrupt", key)
		}
		v = binary.BigEndian.Uint64(b)
		return nil
	})
	return v, err
}

// write queues key/value pairs for the next group commit and waits until
// they are durable.
func (s *Store) write(ps ...*pending) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	for _, p := range ps {
		s.reqs <- p
	}
	s.mu.RUnlock()
	var first error
	for _, p := range ps {
		if err := <-p.err; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func newPending(key, val []byte, ttl time.Duration) *pending {
	return &pending{kind: opPut, key: key, val: val, ttl: ttl, err: make(chan error, 1)}
}

// Add adds delta to the counter under key, durably.
func (s *Store) Add(key string, delta uint64) error {
	return s.write(&pending{kind: opAdd, key: []byte(key), delta: delta, err: make(chan error, 1)})
}

// Counter returns the value of the counter under key (0 when absent).
func (s *Store) Counter(key string) (uint64, error) {
	v, err := s.Get(key)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("counter %q is corrupt", key)
	}
	return binary.BigEndian.Uint64(v), nil
}

func (s *Store) scan(prefix []byte, fn func(k, v []byte) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if !bytes.HasPrefix(item.Key(), prefix) {
				break
			}
			if err := item.Value(func(v []byte) error { return fn(item.Key(), v) }); err != nil {
				return err
			}
		}
		return nil
	})
}

// Get returns the value stored under key.
func (s *Store) Get(key string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	return out, err
}

// Put stores value under key durably, without expiry.
func (s *Store) Put(key string, value []byte) error {
	return s.write(newPending([]byte(key), value, 0))
}

// PutWithRetention stores value under key durably, expiring with the
// records.
func (s *Store) PutWithRetention(key string, value []byte) error {
	return s.write(newPending([]byte(key), value, s.Retention()))
}

// PutIfAbsent stores value under key unless the key exists, and returns the
// value that is stored afterwards. It is how concurrent first starts agree
// on one generated secret.
func (s *Store) PutIfAbsent(key string, value []byte) ([]byte, error) {
	return s.GetOrCreate(key, value, 0)
}

// Scan calls fn for every key and value under prefix.
func (s *Store) Scan(prefix string, fn func(key string, value []byte) error) error {
	return s.scan([]byte(prefix), func(k, v []byte) error { return fn(string(k), v) })
}

// GetOrCreate returns the value under key, storing val with the given time
// to live (synced) when the key is absent. Daily salts use it: the first
// caller of the day creates the salt, everyone after reads it.
func (s *Store) GetOrCreate(key string, val []byte, ttl time.Duration) ([]byte, error) {
	// The store runs without conflict detection (for the group commit), so
	// two creators in this process (an old and a new config during a
	// reload) must not both miss the key and both write.
	s.createMu.Lock()
	defer s.createMu.Unlock()
	var out []byte
	err := s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(key))
		if err == nil {
			out, err = item.ValueCopy(nil)
			return err
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		out = val
		e := badger.NewEntry([]byte(key), val)
		if ttl > 0 {
			e = e.WithTTL(ttl)
		}
		return txn.SetEntry(e)
	})
	return out, err
}
