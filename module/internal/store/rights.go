package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/dgraph-io/badger/v4"
)

// Delete removes key durably.
func (s *Store) Delete(key string) error {
	return s.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(key)) })
}

// Restriction marks a visitor whose processing is restricted: the privacy
// filter drops their analytics.
type Restriction struct {
	Site   string    `json:"site"`
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Reason string    `json:"reason,omitempty"`
}

func restrictKey(site, id string) string { return "restrict/" + site + "/" + id }

// Restrict records (on) or lifts (off) a restriction of processing.
func (s *Store) Restrict(r Restriction, on bool) error {
	if !validPart(r.Site) || !validPart(r.ID) {
		return fmt.Errorf("invalid site or consent id")
	}
	if !on {
		return s.Delete(restrictKey(r.Site, r.ID))
	}
	val, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.Put(restrictKey(r.Site, r.ID), val)
}

// Restrictions calls fn for every restriction in force.
func (s *Store) Restrictions(fn func(Restriction) error) error {
	return s.Scan("restrict/", func(_ string, v []byte) error {
		var r Restriction
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		return fn(r)
	})
}

// Subject is the stable, non-reversible name of a visitor in request
// records that must outlive their erasure.
func Subject(site, id string) string {
	sum := sha256.Sum256([]byte("consentgate-subject-v1\n" + site + "\n" + id))
	return hex.EncodeToString(sum[:16])
}

// Request types of data-subject requests.
const (
	RequestAccess      = "access"
	RequestExport      = "export"
	RequestCorrection  = "correction"
	RequestRestriction = "restriction"
	RequestErasure     = "erasure"
)

// Request statuses.
const (
	StatusPending   = "pending"
	StatusCompleted = "completed"
	StatusRejected  = "rejected"
)

// RequestDeadline is the time the law gives to answer a request.
const RequestDeadline = 30 * 24 * time.Hour

// Request is a data-subject request and what became of it.
type Request struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Site    string `json:"site"`
	Subject string `json:"subject"`
	// ConsentID is kept only while the request is pending, to act on it.
	ConsentID string            `json:"consent_id,omitempty"`
	Via       string            `json:"via"` // self-service or admin
	Fields    map[string]string `json:"fields,omitempty"`
	Note      string            `json:"note,omitempty"`
	Status    string            `json:"status"`
	Received  time.Time         `json:"received"`
	Deadline  time.Time         `json:"deadline"`
	Completed *time.Time        `json:"completed,omitempty"`
	// Result says what was done (records erased, exported, …).
	Result string `json:"result,omitempty"`
}

// Overdue reports whether a pending request passed its deadline.
func (r Request) Overdue(now time.Time) bool {
	return r.Status == StatusPending && now.After(r.Deadline)
}

// NewRequestID returns a time-ordered random request ID (also the
// receipt a visitor gets).
func NewRequestID(at time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(at.UnixNano()))
	_, _ = rand.Read(b[8:])
	return hex.EncodeToString(b[:])
}

func validRequestID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// PutRequest stores (or updates) a request durably. The consent ID of a
// pending request is kept apart and dropped physically when the request
// is answered, so answered requests name the visitor only by Subject. A
// request that is answered bumps the DSR counter of its day and type.
func (s *Store) PutRequest(r Request) error {
	if !validRequestID(r.ID) {
		return fmt.Errorf("invalid request id %q", r.ID)
	}
	consentID := r.ConsentID
	r.ConsentID = ""
	val, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ps := []*pending{newPending([]byte("dsr/"+r.ID), val, s.Retention())}
	if r.Status == StatusPending && consentID != "" {
		ps = append(ps, newPending([]byte("dsrid/"+r.ID), []byte(consentID), s.Retention()))
	}
	if r.Status == StatusCompleted {
		ps = append(ps, &pending{kind: opAdd, key: []byte("cnt/r/" + dim(r.Site) + "/" + Day(r.Received) + "/" + dim(r.Type)), delta: 1, err: make(chan error, 1)})
	}
	if err := s.write(ps...); err != nil {
		return err
	}
	if r.Status != StatusPending {
		if _, err := s.Get("dsrid/" + r.ID); err == nil {
			return s.db.DropPrefix([]byte("dsrid/" + r.ID))
		}
	}
	return nil
}

// GetRequest returns one request.
func (s *Store) GetRequest(id string) (Request, error) {
	var r Request
	if !validRequestID(id) {
		return r, ErrNotFound
	}
	v, err := s.Get("dsr/" + id)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return r, err
	}
	if r.Status == StatusPending {
		if cid, err := s.Get("dsrid/" + id); err == nil {
			r.ConsentID = string(cid)
		}
	}
	return r, nil
}

// Requests calls fn for every request, oldest first.
func (s *Store) Requests(fn func(Request) error) error {
	return s.Scan("dsr/", func(_ string, v []byte) error {
		var r Request
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		return fn(r)
	})
}

// Cell is one aggregate count.
type Cell struct {
	// Kind is decisions, methods, requests, enforcement or pageviews.
	Kind string `json:"kind"`
	Site string `json:"site"`
	Day  string `json:"day"`
	// Dims are the cell's other dimensions, by kind: decisions: regime,
	// country, category, choice; methods: method; requests: type;
	// enforcement: what, category; pageviews: country.
	Dims  []string `json:"dims"`
	Count uint64   `json:"count"`
}

var cellKinds = map[string]string{"d": "decisions", "m": "methods", "r": "requests", "e": "enforcement", "p": "pageviews"}

// CounterKey names an aggregate counter: kind is one of e (enforcement)
// or p (pageviews) for counters the gateway adds to from outside.
func CounterKey(kind, site string, day string, dims ...string) string {
	var b strings.Builder
	b.WriteString("cnt/" + kind + "/" + dim(site) + "/" + day)
	for _, d := range dims {
		b.WriteString("/" + dim(d))
	}
	return b.String()
}

// Stats returns the aggregate counts of a site (every site when site is
// "") for days in [from, to] (inclusive, "YYYY-MM-DD"; empty for no
// bound), sorted by kind, site, day and dimensions.
func (s *Store) Stats(site, from, to string) ([]Cell, error) {
	var out []Cell
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte("cnt/")
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			parts := strings.Split(string(item.Key()), "/")
			if len(parts) < 4 {
				continue
			}
			kind, ok := cellKinds[parts[1]]
			if !ok || (site != "" && parts[2] != site) {
				continue
			}
			day := parts[3]
			if (from != "" && day < from) || (to != "" && day > to) {
				continue
			}
			var n uint64
			if err := item.Value(func(v []byte) error {
				if len(v) == 8 {
					n = binary.BigEndian.Uint64(v)
				}
				return nil
			}); err != nil {
				return err
			}
			out = append(out, Cell{Kind: kind, Site: parts[2], Day: day, Dims: parts[4:], Count: n})
		}
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out, err
}

// Usage summarises what the store holds, for stats and purge.
type Usage struct {
	Retention  string     `json:"retention"`
	Encrypted  bool       `json:"encrypted"`
	Records    int        `json:"records"`
	Tombstones int        `json:"tombstones"`
	Oldest     *time.Time `json:"oldest,omitempty"`
	// NextDisposal is when the oldest record expires.
	NextDisposal *time.Time `json:"next_disposal,omitempty"`
	Requests     int        `json:"requests"`
	Pending      int        `json:"pending_requests"`
	Overdue      int        `json:"overdue_requests"`
	LSMBytes     int64      `json:"lsm_bytes"`
	VlogBytes    int64      `json:"vlog_bytes"`
}

// Usage walks the store and summarises it.
func (s *Store) Usage(now time.Time) (Usage, error) {
	u := Usage{Retention: s.Retention().String(), Encrypted: s.encrypted}
	u.LSMBytes, u.VlogBytes = s.db.Size()
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte("log/")
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			e, err := itemEntry(item)
			if err != nil {
				return err
			}
			if e.Erased != nil {
				u.Tombstones++
				continue
			}
			u.Records++
			var t struct {
				Time time.Time `json:"time"`
			}
			if json.Unmarshal(e.Record, &t) == nil && (u.Oldest == nil || t.Time.Before(*u.Oldest)) {
				tt := t.Time
				u.Oldest = &tt
			}
			if exp := item.ExpiresAt(); exp > 0 {
				d := time.Unix(int64(exp), 0).UTC()
				if u.NextDisposal == nil || d.Before(*u.NextDisposal) {
					u.NextDisposal = &d
				}
			}
		}
		return nil
	})
	if err != nil {
		return u, err
	}
	err = s.Requests(func(r Request) error {
		u.Requests++
		if r.Status == StatusPending {
			u.Pending++
		}
		if r.Overdue(now) {
			u.Overdue++
		}
		return nil
	})
	return u, err
}

// PurgeResult says what a purge disposed of.
type PurgeResult struct {
	// Deleted counts records older than the retention period that were
	// still present (written under a longer retention) and were deleted.
	Deleted int `json:"deleted"`
	// Compacted is true when the store was compacted so that expired and
	// deleted data left the files, not only the index.
	Compacted bool `json:"compacted"`
}

// Purge deletes records older than the retention period and compacts the
// store so that expired and deleted data physically leaves its files.
// Chains stay verifiable: only the oldest entries go.
func (s *Store) Purge(now time.Time) (PurgeResult, error) {
	s.eraseMu.Lock()
	defer s.eraseMu.Unlock()
	var res PurgeResult
	cutoff := now.Add(-s.Retention())
	type old struct {
		site string
		seq  uint64
		id   string
	}
	var doomed []old
	err := s.Export("", time.Time{}, cutoff, func(site string, e Entry) error {
		var r struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(e.Record, &r); err != nil {
			return err
		}
		doomed = append(doomed, old{site, e.Seq, r.ID})
		return nil
	})
	if err != nil {
		return res, err
	}
	// DropPrefix removes every version of the keys from the files, not
	// only from view; it takes many keys at once.
	for len(doomed) > 0 {
		n := min(len(doomed), 512)
		keys := make([][]byte, 0, 2*n)
		for _, d := range doomed[:n] {
			keys = append(keys, logKey(d.site, d.seq), idxKey(d.site, d.id, d.seq))
		}
		if err := s.db.DropPrefix(keys...); err != nil {
			return res, err
		}
		res.Deleted += n
		doomed = doomed[n:]
	}
	if err := s.db.Flatten(2); err != nil {
		return res, fmt.Errorf("compacting: %w", err)
	}
	for {
		if err := s.db.RunValueLogGC(0.01); err != nil {
			if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
				break
			}
			return res, fmt.Errorf("value log gc: %w", err)
		}
	}
	res.Compacted = true
	return res, nil
}

// backupMagic starts every backup file.
const backupMagic = "consentgate-backup-v1\n"

// Backup writes a full backup of the store to w in Badger's stream
// format. When key is set (the store's encryption key) the stream is
// encrypted with age, so a backup of an encrypted store is never plain.
func (s *Store) Backup(w io.Writer, key []byte) error {
	if _, err := io.WriteString(w, backupMagic); err != nil {
		return err
	}
	out := w
	var closer io.Closer
	if len(key) > 0 {
		r, err := age.NewScryptRecipient(hex.EncodeToString(key))
		if err != nil {
			return err
		}
		r.SetWorkFactor(15)
		ew, err := age.Encrypt(w, r)
		if err != nil {
			return err
		}
		out, closer = ew, ew
	}
	if _, err := s.db.Backup(out, 0); err != nil {
		return fmt.Errorf("backing up: %w", err)
	}
	if closer != nil {
		return closer.Close()
	}
	return nil
}

// Restore loads a backup written by Backup into the store (normally a new,
// empty one). key decrypts an encrypted backup.
func (s *Store) Restore(r io.Reader, key []byte) error {
	magic := make([]byte, len(backupMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != backupMagic {
		return errors.New("not a consentgate backup")
	}
	// age's header starts with its version line; a plain Badger stream
	// does not.
	br := &peekReader{r: r}
	head, err := br.peek(len("age-encryption.org/"))
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	in := io.Reader(br)
	if string(head) == "age-encryption.org/" {
		if len(key) == 0 {
			return errors.New("the backup is encrypted: give the encryption key")
		}
		id, err := age.NewScryptIdentity(hex.EncodeToString(key))
		if err != nil {
			return err
		}
		if in, err = age.Decrypt(br, id); err != nil {
			return fmt.Errorf("decrypting backup (wrong key?): %w", err)
		}
	}
	if err := s.db.Load(&frameLimiter{r: in}, 256); err != nil {
		return fmt.Errorf("restoring: %w", err)
	}
	// Heads and counters may have changed under the commit loop's cache.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	done := make(chan error, 1)
	s.reqs <- &pending{kind: opReset, err: done}
	return <-done
}

// maxBackupFrame bounds one frame of Badger's backup stream. Badger's Load
// allocates whatever length a frame claims, so a corrupt length would
// otherwise exhaust memory instead of failing.
const maxBackupFrame = 256 << 20

// frameLimiter passes a backup stream through, failing at a frame whose
// length prefix (uint64, little endian) exceeds maxBackupFrame.
type frameLimiter struct {
	r    io.Reader
	hdr  [8]byte
	nhdr int    // header bytes seen of the current frame
	left uint64 // body bytes left of the current frame
}

func (f *frameLimiter) Read(p []byte) (int, error) {
	if f.left == 0 && f.nhdr == 8 {
		f.nhdr = 0
	}
	if f.nhdr < 8 {
		// Read the length prefix byte by byte into p and check it.
		n, err := f.r.Read(p[:min(len(p), 8-f.nhdr)])
		copy(f.hdr[f.nhdr:], p[:n])
		f.nhdr += n
		if f.nhdr == 8 {
			f.left = binary.LittleEndian.Uint64(f.hdr[:])
			if f.left > maxBackupFrame {
				return 0, fmt.Errorf("corrupt backup: a frame claims %d bytes", f.left)
			}
		}
		return n, err
	}
	if uint64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= uint64(n)
	return n, err
}

type peekReader struct {
	r   io.Reader
	buf []byte
}

func (p *peekReader) peek(n int) ([]byte, error) {
	for len(p.buf) < n {
		b := make([]byte, n-len(p.buf))
		m, err := p.r.Read(b)
		p.buf = append(p.buf, b[:m]...)
		if err != nil {
			return p.buf, err
		}
	}
	return p.buf, nil
}

func (p *peekReader) Read(b []byte) (int, error) {
	if len(p.buf) > 0 {
		n := copy(b, p.buf)
		p.buf = p.buf[n:]
		return n, nil
	}
	return p.r.Read(b)
}

// RotateEncryptionKey re-encrypts the data keys of the (closed) store in
// dir from oldKey to newKey; Badger's data itself is encrypted with those
// data keys, so nothing else is rewritten. Empty oldKey encrypts a store
// that was plain only for data written from now on, so it is refused.
func RotateEncryptionKey(dir string, oldKey, newKey []byte) error {
	if len(oldKey) == 0 || len(newKey) == 0 {
		return errors.New("both the old and the new encryption key are needed")
	}
	opt := badger.KeyRegistryOptions{
		Dir:                           dir,
		ReadOnly:                      true,
		EncryptionKey:                 oldKey,
		EncryptionKeyRotationDuration: 10 * 24 * time.Hour,
	}
	kr, err := badger.OpenKeyRegistry(opt)
	if err != nil {
		return fmt.Errorf("opening the key registry with the old key: %w", err)
	}
	defer kr.Close()
	opt.EncryptionKey = newKey
	opt.ReadOnly = false
	if err := badger.WriteKeyRegistry(kr, opt); err != nil {
		return fmt.Errorf("writing the key registry with the new key: %w", err)
	}
	return nil
}
