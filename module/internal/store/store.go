// Package store keeps consent records and gateway secrets in an embedded
// Badger database. Decisions are appended durably: concurrent appends are
// grouped into one synced commit, and each caller returns only after the
// commit that holds its record reached the disk.
package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// DefaultRetention is how long records are kept: 7 years.
const DefaultRetention = 7 * 365 * 24 * time.Hour

// maxBatch bounds the records of one group commit.
const maxBatch = 1024

// ErrClosed is returned by operations on a closed store.
var ErrClosed = errors.New("consent store is closed")

// ErrNotFound is returned when a key does not exist.
var ErrNotFound = errors.New("not found")

// Record is one consent decision.
type Record struct {
	// Site is the site identifier the decision belongs to.
	Site string `json:"site"`
	// ID is the visitor's consent ID (32 hex digits).
	ID string `json:"id"`
	// Time is when the decision was made.
	Time time.Time `json:"time"`
	// PolicyVersion is the policy version the visitor decided on.
	PolicyVersion string `json:"policy_version"`
	// Granted and Denied list the categories by name.
	Granted []string `json:"granted"`
	Denied  []string `json:"denied"`
	// Method is how the decision was made: api, form, gpc or withdrawal.
	Method string `json:"method"`
	// Regime is the regime that applied: opt-in, opt-out or notice.
	Regime string `json:"regime"`
	// GPC and DNT note the privacy signals the browser sent.
	GPC bool `json:"gpc,omitempty"`
	DNT bool `json:"dnt,omitempty"`
	// Country is the visitor's country (ISO 3166-1 alpha-2), if known.
	Country string `json:"country,omitempty"`
	// IP is the visitor's truncated IP address; never the full address.
	IP string `json:"ip,omitempty"`
}

// Options tune the store.
type Options struct {
	// Retention is the record lifetime (Badger TTL); default 7 years.
	Retention time.Duration
	// Logger receives Badger's own messages; nil silences them.
	Logger badger.Logger
}

// Store is the consent store.
type Store struct {
	db        *badger.DB
	retention atomic.Int64 // time.Duration

	mu       sync.RWMutex // guards closed against sends on reqs
	createMu sync.Mutex   // serialises GetOrCreate: conflict detection is off
	closed   bool
	reqs     chan *pending
	done     chan struct{}
	seq      atomic.Uint32
	commits  atomic.Uint64
}

type pending struct {
	key, val []byte
	ttl      time.Duration
	err      chan error
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
		WithCompactL0OnClose(true)
	db, err := badger.Open(opts)
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("consent store %s is locked by another process (is another instance running with the same storage directory?): %w", dir, err)
		}
		return nil, fmt.Errorf("opening consent store %s: %w", dir, err)
	}
	s := &Store{
		db:   db,
		reqs: make(chan *pending, maxBatch),
		done: make(chan struct{}),
	}
	s.retention.Store(int64(o.Retention))
	go s.commitLoop()
	return s, nil
}

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
	defer txn.Discard()
	for _, p := range batch {
		e := badger.NewEntry(p.key, p.val)
		if p.ttl > 0 {
			e = e.WithTTL(p.ttl)
		}
		err := txn.SetEntry(e)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = s.db.NewTransaction(true)
			err = txn.SetEntry(e)
		}
		if err != nil {
			return err
		}
	}
	return txn.Commit()
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
	return &pending{key: key, val: val, ttl: ttl, err: make(chan error, 1)}
}

// recordKey is rec/<site>/<id>/<unix nanos><seq>, so a visitor's records
// sort by time and never collide.
func (s *Store) recordKey(r *Record) []byte {
	k := make([]byte, 0, 4+len(r.Site)+1+len(r.ID)+1+12)
	k = append(k, "rec/"...)
	k = append(k, r.Site...)
	k = append(k, '/')
	k = append(k, r.ID...)
	k = append(k, '/')
	k = binary.BigEndian.AppendUint64(k, uint64(r.Time.UnixNano()))
	k = binary.BigEndian.AppendUint32(k, s.seq.Add(1))
	return k
}

func validPart(s string) bool { return s != "" && !strings.ContainsAny(s, "/\x00") }

// Append stores a decision record durably, with the store's retention as
// TTL. The visitor's current state is their latest record.
func (s *Store) Append(r Record) error {
	if !validPart(r.Site) || !validPart(r.ID) {
		return fmt.Errorf("record needs a site and a consent id without '/'")
	}
	if r.Time.IsZero() {
		return fmt.Errorf("record needs a time")
	}
	val, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.write(newPending(s.recordKey(&r), val, s.Retention()))
}

// Records returns a visitor's records, oldest first.
func (s *Store) Records(site, id string) ([]Record, error) {
	if !validPart(site) || !validPart(id) {
		return nil, fmt.Errorf("invalid site or consent id")
	}
	var out []Record
	err := s.scan([]byte("rec/"+site+"/"+id+"/"), func(_, v []byte) error {
		var r Record
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// Current returns a visitor's latest record, or ErrNotFound.
func (s *Store) Current(site, id string) (Record, error) {
	var r Record
	if !validPart(site) || !validPart(id) {
		return r, fmt.Errorf("invalid site or consent id")
	}
	prefix := []byte("rec/" + site + "/" + id + "/")
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Reverse = true
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		// In reverse, seek past every key with the prefix.
		it.Seek(append(append([]byte(nil), prefix...), 0xff))
		if !it.ValidForPrefix(prefix) {
			return ErrNotFound
		}
		return it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &r) })
	})
	return r, err
}

// CountRecords counts the records of a site (all sites when site is "").
func (s *Store) CountRecords(site string) (int, error) {
	prefix := "rec/"
	if site != "" {
		prefix += site + "/"
	}
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte(prefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	return n, err
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
