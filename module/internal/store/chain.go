package store

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Record is one consent decision (or a correction of one).
type Record struct {
	// Site is the site identifier the decision belongs to.
	Site string `json:"site"`
	// ID is the visitor's consent ID (32 hex digits).
	ID string `json:"id"`
	// Time is when the decision was made.
	Time time.Time `json:"time"`
	// PolicyVersion is the policy version the visitor decided on.
	PolicyVersion string `json:"policy_version"`
	// Shown is the hash of the policy text and banner strings the visitor
	// was shown (see PutPolicy), so the record proves what they saw.
	Shown string `json:"shown,omitempty"`
	// Lang is the language the banner was shown in.
	Lang string `json:"lang,omitempty"`
	// Granted and Denied list the categories by name.
	Granted []string `json:"granted"`
	Denied  []string `json:"denied"`
	// Method is how the decision was made: api, form, gpc, withdrawal, or
	// correction for an operator's correction of an earlier record.
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
	// Corrects is, for a correction, the sequence number of the record it
	// corrects, and Correction the corrected fields with their new values.
	Corrects   uint64            `json:"corrects,omitempty"`
	Correction map[string]string `json:"correction,omitempty"`
	// Nonce is random, so the record's digest (kept after erasure) reveals
	// nothing about the erased fields.
	Nonce string `json:"nonce,omitempty"`

	// Seq and Hash are the record's place in its site's chain, filled in
	// when records are read; they are not part of the hashed content.
	Seq  uint64 `json:"seq,omitempty"`
	Hash string `json:"hash,omitempty"`
}

// MethodCorrection is the method of a correction record.
const MethodCorrection = "correction"

// Entry is one link of a site's chain: a record, or the tombstone left by
// its erasure.
type Entry struct {
	Seq uint64 `json:"seq"`
	// Prev is the hash of the previous entry ("" for a chain's first).
	Prev string `json:"prev,omitempty"`
	// Hash is SHA-256 over the site, Seq, Prev and Digest.
	Hash string `json:"hash"`
	// Digest is SHA-256 of the record's exact JSON bytes.
	Digest string `json:"digest"`
	// Record is the record's JSON; empty once erased.
	Record json.RawMessage `json:"record,omitempty"`
	// Erased says when and by which request the record was erased.
	Erased *Erasure `json:"erased,omitempty"`
}

// Erasure is what a tombstone keeps of an erased record.
type Erasure struct {
	Time    time.Time `json:"time"`
	Receipt string    `json:"receipt"`
}

// head is the last link of a site's chain.
type head struct {
	seq  uint64
	hash [32]byte
}

func (h head) encode() []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), h.hash[:]...), h.seq)
}

func decodeHead(b []byte) (head, error) {
	var h head
	if len(b) != 40 {
		return h, errors.New("chain head is corrupt")
	}
	copy(h.hash[:], b)
	h.seq = binary.BigEndian.Uint64(b[32:])
	return h, nil
}

func headKey(site string) []byte { return []byte("head/" + site) }

func logKey(site string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte("log/"+site+"/"), seq)
}

func idxKey(site, id string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte("idx/"+site+"/"+id+"/"), seq)
}

// linkHash chains an entry to its predecessor.
func linkHash(site string, seq uint64, prev []byte, digest [32]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("consentgate-chain-v1\n"))
	h.Write([]byte(site))
	h.Write([]byte{0})
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	h.Write(b[:])
	h.Write(prev)
	h.Write(digest[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// siteHead returns the head of a site's chain as the commit loop sees it.
func (s *Store) siteHead(txn *badger.Txn, heads map[string]head, site string) (head, error) {
	if h, ok := heads[site]; ok {
		return h, nil
	}
	if h, ok := s.heads[site]; ok {
		return h, nil
	}
	item, err := txn.Get(headKey(site))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return head{}, nil
	}
	if err != nil {
		return head{}, err
	}
	var h head
	err = item.Value(func(v []byte) error {
		h, err = decodeHead(v)
		return err
	})
	return h, err
}

// appendEntry links a record into its site's chain (commit loop only).
func (s *Store) appendEntry(txn *badger.Txn, heads map[string]head, p *pending, set func(*badger.Entry) error, ttl time.Duration) error {
	h, err := s.siteHead(txn, heads, p.site)
	if err != nil {
		return err
	}
	var prev []byte
	if h.seq > 0 {
		prev = h.hash[:]
	}
	seq := h.seq + 1
	hash := linkHash(p.site, seq, prev, p.digest)
	// The entry's JSON is assembled by hand: the record is already JSON
	// (hashed as is), and this runs in the single commit goroutine.
	val := make([]byte, 0, len(p.val)+256)
	val = append(val, `{"seq":`...)
	val = strconv.AppendUint(val, seq, 10)
	if prev != nil {
		val = append(val, `,"prev":"`...)
		val = hex.AppendEncode(val, prev)
		val = append(val, '"')
	}
	val = append(val, `,"hash":"`...)
	val = hex.AppendEncode(val, hash[:])
	val = append(val, `","digest":"`...)
	val = hex.AppendEncode(val, p.digest[:])
	val = append(val, `","record":`...)
	val = append(val, p.val...)
	val = append(val, '}')
	if err := set(badger.NewEntry(logKey(p.site, seq), val).WithTTL(ttl)); err != nil {
		return err
	}
	if err := set(badger.NewEntry(idxKey(p.site, p.id, seq), nil).WithTTL(ttl)); err != nil {
		return err
	}
	heads[p.site] = head{seq: seq, hash: hash}
	p.seq = seq
	return nil
}

func validPart(s string) bool { return s != "" && !strings.ContainsAny(s, "/\x00") }

// dim makes a value safe as a counter key part.
func dim(s string) string {
	if s == "" {
		return "-"
	}
	if !strings.ContainsAny(s, "/\x00") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, s)
}

// Day is the UTC day of t as the counters key it.
func Day(t time.Time) string { return t.UTC().Format("2006-01-02") }

// decisionCounts are the aggregate counters a record bumps.
func decisionCounts(r *Record) []string {
	if r.Method == MethodCorrection {
		return nil
	}
	day := Day(r.Time)
	base := "cnt/d/" + dim(r.Site) + "/" + day + "/" + dim(r.Regime) + "/" + dim(r.Country) + "/"
	out := make([]string, 0, len(r.Granted)+len(r.Denied)+1)
	for _, c := range r.Granted {
		out = append(out, base+dim(c)+"/granted")
	}
	for _, c := range r.Denied {
		out = append(out, base+dim(c)+"/denied")
	}
	return append(out, "cnt/m/"+dim(r.Site)+"/"+day+"/"+dim(r.Method))
}

// Append stores a decision record durably at the end of its site's hash
// chain, with the store's retention as TTL. The visitor's current state is
// their latest record that is not a correction.
func (s *Store) Append(r Record) error {
	_, err := s.AppendSeq(r)
	return err
}

// AppendSeq is Append returning the record's sequence number in the chain.
func (s *Store) AppendSeq(r Record) (uint64, error) {
	if !validPart(r.Site) || !validPart(r.ID) {
		return 0, fmt.Errorf("record needs a site and a consent id without '/'")
	}
	if r.Time.IsZero() {
		return 0, fmt.Errorf("record needs a time")
	}
	r.Seq, r.Hash = 0, ""
	if r.Nonce == "" {
		var n [12]byte
		_, _ = rand.Read(n[:])
		r.Nonce = hex.EncodeToString(n[:])
	}
	val, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	p := &pending{kind: opAppend, site: r.Site, id: r.ID, val: val, digest: sha256.Sum256(val), counts: decisionCounts(&r), err: make(chan error, 1)}
	if err := s.write(p); err != nil {
		return 0, err
	}
	return p.seq, nil
}

// readEntry decodes a stored entry.
func readEntry(v []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(v, &e); err != nil {
		return e, fmt.Errorf("corrupt chain entry: %w", err)
	}
	return e, nil
}

// itemEntry decodes the entry an iterator or Get item holds.
func itemEntry(item *badger.Item) (Entry, error) {
	var e Entry
	err := item.Value(func(v []byte) error {
		var err error
		e, err = readEntry(v)
		return err
	})
	return e, err
}

// DecodeRecord returns the record of an entry, with Seq and Hash filled.
func (e Entry) DecodeRecord() (Record, error) {
	var r Record
	if len(e.Record) == 0 {
		return r, ErrNotFound
	}
	if err := json.Unmarshal(e.Record, &r); err != nil {
		return r, fmt.Errorf("corrupt record %d: %w", e.Seq, err)
	}
	r.Seq, r.Hash = e.Seq, e.Hash
	return r, nil
}

// visitorSeqs lists a visitor's sequence numbers, oldest first.
func (s *Store) visitorSeqs(txn *badger.Txn, site, id string, reverse bool) []uint64 {
	prefix := []byte("idx/" + site + "/" + id + "/")
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = prefix
	opts.Reverse = reverse
	it := txn.NewIterator(opts)
	defer it.Close()
	var out []uint64
	start := prefix
	if reverse {
		start = append(append([]byte(nil), prefix...), 0xff)
	}
	for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
		k := it.Item().Key()
		if len(k) == len(prefix)+8 {
			out = append(out, binary.BigEndian.Uint64(k[len(prefix):]))
		}
	}
	return out
}

func (s *Store) entry(txn *badger.Txn, site string, seq uint64) (Entry, error) {
	item, err := txn.Get(logKey(site, seq))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Entry{}, ErrNotFound
	}
	if err != nil {
		return Entry{}, err
	}
	return itemEntry(item)
}

// Records returns a visitor's records, oldest first.
func (s *Store) Records(site, id string) ([]Record, error) {
	if !validPart(site) || !validPart(id) {
		return nil, fmt.Errorf("invalid site or consent id")
	}
	var out []Record
	err := s.db.View(func(txn *badger.Txn) error {
		for _, seq := range s.visitorSeqs(txn, site, id, false) {
			e, err := s.entry(txn, site, seq)
			if errors.Is(err, ErrNotFound) {
				continue // expired between the index and the log
			}
			if err != nil {
				return err
			}
			r, err := e.DecodeRecord()
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// Current returns a visitor's latest decision (corrections applied to
// it), or ErrNotFound.
func (s *Store) Current(site, id string) (Record, error) {
	var r Record
	if !validPart(site) || !validPart(id) {
		return r, fmt.Errorf("invalid site or consent id")
	}
	rs, err := s.Records(site, id)
	if err != nil {
		return r, err
	}
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].Method == MethodCorrection {
			continue
		}
		r = rs[i]
		for _, c := range rs[i+1:] {
			if c.Method == MethodCorrection && c.Corrects == r.Seq {
				applyCorrection(&r, c.Correction)
			}
		}
		return r, nil
	}
	return r, ErrNotFound
}

// CorrectableFields are the fields an operator may correct.
var CorrectableFields = []string{"country", "lang", "regime", "policy_version"}

func applyCorrection(r *Record, c map[string]string) {
	for k, v := range c {
		switch k {
		case "country":
			r.Country = v
		case "lang":
			r.Lang = v
		case "regime":
			r.Regime = v
		case "policy_version":
			r.PolicyVersion = v
		}
	}
}

// Correct appends a correction of a visitor's record seq (0: their
// latest decision) and returns the correction record.
func (s *Store) Correct(site, id string, seq uint64, fields map[string]string, at time.Time) (Record, error) {
	if len(fields) == 0 {
		return Record{}, errors.New("nothing to correct")
	}
	for k := range fields {
		ok := false
		for _, f := range CorrectableFields {
			ok = ok || k == f
		}
		if !ok {
			return Record{}, fmt.Errorf("field %q cannot be corrected (correctable: %s)", k, strings.Join(CorrectableFields, ", "))
		}
	}
	rs, err := s.Records(site, id)
	if err != nil {
		return Record{}, err
	}
	var target *Record
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].Method != MethodCorrection && (seq == 0 || rs[i].Seq == seq) {
			target = &rs[i]
			break
		}
	}
	if target == nil {
		return Record{}, ErrNotFound
	}
	c := Record{Site: site, ID: id, Time: at, PolicyVersion: target.PolicyVersion, Method: MethodCorrection,
		Regime: target.Regime, Corrects: target.Seq, Correction: fields}
	c.Seq, err = s.AppendSeq(c)
	return c, err
}

// CountRecords counts the live records of a site (all sites when site is
// ""); erased records are not counted.
func (s *Store) CountRecords(site string) (int, error) {
	prefix := "idx/"
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

// Erase replaces every record of a visitor on a site with a tombstone that
// keeps the chain verifiable (sequence, links and digest) and nothing
// personal, removes their index and restriction, and returns how many
// records were erased.
//
// Overwriting is not enough: Badger keeps earlier versions of a key in its
// write-ahead log and tables until compaction. So the erased keys are
// dropped physically (DropPrefix flushes the memtable and compacts the
// tables holding them away) and the tombstones written after. An intent
// written first makes this crash-safe: OpenStore finishes an interrupted
// erasure.
func (s *Store) Erase(site, id, receipt string, at time.Time) (int, error) {
	if !validPart(site) || !validPart(id) {
		return 0, fmt.Errorf("invalid site or consent id")
	}
	s.eraseMu.Lock()
	defer s.eraseMu.Unlock()
	in := erasure{Site: site, ID: id, Receipt: receipt}
	err := s.db.View(func(txn *badger.Txn) error {
		for _, seq := range s.visitorSeqs(txn, site, id, false) {
			in.Seqs = append(in.Seqs, seq)
			item, err := txn.Get(logKey(site, seq))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			e, err := itemEntry(item)
			if err != nil {
				return err
			}
			e.Record = nil
			if e.Erased == nil {
				e.Erased = &Erasure{Time: at.UTC(), Receipt: receipt}
			}
			in.Tombstones = append(in.Tombstones, tombstone{Entry: e, ExpiresAt: item.ExpiresAt()})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	val, err := json.Marshal(in)
	if err != nil {
		return 0, err
	}
	if err := s.Put("erasing/"+receipt, val); err != nil {
		return 0, err
	}
	return len(in.Tombstones), s.finishErasure(in)
}

// erasure is the intent of an erasure in progress.
type erasure struct {
	Site       string      `json:"site"`
	ID         string      `json:"id"`
	Receipt    string      `json:"receipt"`
	Seqs       []uint64    `json:"seqs"`
	Tombstones []tombstone `json:"tombstones"`
}

type tombstone struct {
	Entry     Entry  `json:"entry"`
	ExpiresAt uint64 `json:"expires_at"`
}

// finishErasure drops every version of the erased keys, writes the
// tombstones and then drops the intent itself (which names the visitor).
func (s *Store) finishErasure(in erasure) error {
	drop := [][]byte{
		[]byte("idx/" + in.Site + "/" + in.ID + "/"),
		[]byte("restrict/" + in.Site + "/" + in.ID),
	}
	for _, seq := range in.Seqs {
		drop = append(drop, logKey(in.Site, seq))
	}
	if err := s.db.DropPrefix(drop...); err != nil {
		return fmt.Errorf("dropping erased records: %w", err)
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		for _, t := range in.Tombstones {
			val, err := json.Marshal(t.Entry)
			if err != nil {
				return err
			}
			e := badger.NewEntry(logKey(in.Site, t.Entry.Seq), val)
			e.ExpiresAt = t.ExpiresAt
			if err := txn.SetEntry(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("writing tombstones: %w", err)
	}
	if err := s.db.DropPrefix([]byte("erasing/" + in.Receipt)); err != nil {
		return fmt.Errorf("dropping the erasure intent: %w", err)
	}
	return nil
}

// resumeErasures finishes erasures a crash interrupted.
func (s *Store) resumeErasures() error {
	var todo []erasure
	err := s.Scan("erasing/", func(_ string, v []byte) error {
		var in erasure
		if err := json.Unmarshal(v, &in); err != nil {
			return err
		}
		todo = append(todo, in)
		return nil
	})
	if err != nil {
		return err
	}
	for _, in := range todo {
		if err := s.finishErasure(in); err != nil {
			return err
		}
	}
	return nil
}

// Problem is the first break verification found in a chain.
type Problem struct {
	Seq    uint64 `json:"seq"`
	Kind   string `json:"kind"` // altered, removed, reordered, truncated
	Detail string `json:"detail"`
}

// Verification is the result of walking one site's chain.
type Verification struct {
	Site       string   `json:"site"`
	OK         bool     `json:"ok"`
	Entries    int      `json:"entries"`
	Tombstones int      `json:"tombstones"`
	FirstSeq   uint64   `json:"first_seq"`
	LastSeq    uint64   `json:"last_seq"`
	Head       string   `json:"head"`
	Problem    *Problem `json:"problem,omitempty"`
}

// Sites lists the sites that have a chain.
func (s *Store) Sites() ([]string, error) {
	var out []string
	err := s.scanKeys([]byte("head/"), func(k []byte) error {
		out = append(out, string(k[len("head/"):]))
		return nil
	})
	return out, err
}

func (s *Store) scanKeys(prefix []byte, fn func(k []byte) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := fn(it.Item().Key()); err != nil {
				return err
			}
		}
		return nil
	})
}

// Verify walks a site's chain and reports the first entry that was
// altered, removed or reordered. Records that expired at the start of the
// chain (retention) are not a break: the walk starts at the first entry
// present, whose predecessor it cannot check.
func (s *Store) Verify(site string) (Verification, error) {
	v := Verification{Site: site}
	if !validPart(site) {
		return v, fmt.Errorf("invalid site")
	}
	fail := func(seq uint64, kind, format string, args ...any) error {
		v.Problem = &Problem{Seq: seq, Kind: kind, Detail: fmt.Sprintf(format, args...)}
		return errStop
	}
	var last head
	prefix := []byte("log/" + site + "/")
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(headKey(site))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("site %q has no records: %w", site, ErrNotFound)
		}
		if err != nil {
			return err
		}
		var want head
		if err := item.Value(func(b []byte) error {
			want, err = decodeHead(b)
			return err
		}); err != nil {
			return err
		}
		v.Head = hex.EncodeToString(want.hash[:])
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != len(prefix)+8 {
				return fail(0, "altered", "unexpected key %q in the chain", k)
			}
			seq := binary.BigEndian.Uint64(k[len(prefix):])
			e, err := itemEntry(item)
			if err != nil {
				return fail(seq, "altered", "%v", err)
			}
			if e.Seq != seq {
				return fail(seq, "reordered", "entry stored at %d says it is %d", seq, e.Seq)
			}
			var digest [32]byte
			if e.Erased == nil {
				digest = sha256.Sum256(e.Record)
				if hex.EncodeToString(digest[:]) != e.Digest {
					return fail(seq, "altered", "record %d does not match its digest", seq)
				}
			} else {
				v.Tombstones++
				d, err := hex.DecodeString(e.Digest)
				if err != nil || len(d) != 32 {
					return fail(seq, "altered", "tombstone %d has a bad digest", seq)
				}
				copy(digest[:], d)
			}
			var prev []byte
			if e.Prev != "" {
				if prev, err = hex.DecodeString(e.Prev); err != nil {
					return fail(seq, "altered", "entry %d has a bad link", seq)
				}
			}
			if v.Entries == 0 {
				v.FirstSeq = seq
				if seq == 1 && prev != nil {
					return fail(seq, "altered", "the first entry links to a predecessor")
				}
			} else {
				if seq != last.seq+1 {
					return fail(last.seq+1, "removed", "entries %d to %d are missing", last.seq+1, seq-1)
				}
				if !bytes.Equal(prev, last.hash[:]) {
					return fail(seq, "reordered", "entry %d does not link to entry %d", seq, last.seq)
				}
			}
			h := linkHash(site, seq, prev, digest)
			if hex.EncodeToString(h[:]) != e.Hash {
				return fail(seq, "altered", "entry %d's hash does not match its content", seq)
			}
			last = head{seq: seq, hash: h}
			v.Entries++
			v.LastSeq = seq
		}
		switch {
		case v.Entries == 0 && want.seq > 0:
			// Everything expired (or was removed): nothing to check
			// against the head.
			return fail(want.seq, "removed", "the chain's head is entry %d but no entry is present (all expired or removed)", want.seq)
		case last.seq < want.seq:
			return fail(last.seq+1, "truncated", "entries %d to %d after the last present one are missing", last.seq+1, want.seq)
		case last.seq > want.seq || last.hash != want.hash:
			return fail(want.seq, "altered", "the chain's head does not match its last entry")
		}
		return nil
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	v.OK = err == nil && v.Problem == nil
	return v, err
}

var errStop = errors.New("stop")

// Export calls fn for every entry of a site (every site when site is ""),
// in chain order, streaming. With from or to set, only records whose time
// falls in [from, to) are passed, and tombstones are skipped.
func (s *Store) Export(site string, from, to time.Time, fn func(site string, e Entry) error) error {
	prefix := []byte("log/")
	if site != "" {
		if !validPart(site) {
			return fmt.Errorf("invalid site")
		}
		prefix = []byte("log/" + site + "/")
	}
	filtered := !from.IsZero() || !to.IsZero()
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.PrefetchSize = 256
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) < len("log/")+9 {
				continue
			}
			entrySite := string(k[len("log/") : len(k)-9])
			e, err := itemEntry(item)
			if err != nil {
				return err
			}
			if filtered {
				if len(e.Record) == 0 {
					continue
				}
				var t struct {
					Time time.Time `json:"time"`
				}
				if err := json.Unmarshal(e.Record, &t); err != nil {
					return err
				}
				if (!from.IsZero() && t.Time.Before(from)) || (!to.IsZero() && !t.Time.Before(to)) {
					continue
				}
			}
			if err := fn(entrySite, e); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutPolicy stores a policy snapshot (the exact policy text and banner
// strings shown) once, by its SHA-256, and returns the hash.
func (s *Store) PutPolicy(snapshot []byte) (string, error) {
	sum := sha256.Sum256(snapshot)
	h := hex.EncodeToString(sum[:])
	if _, err := s.GetOrCreate("policy/"+h, snapshot, 0); err != nil {
		return "", err
	}
	return h, nil
}

// Policy returns the policy snapshot stored under hash.
func (s *Store) Policy(hash string) ([]byte, error) { return s.Get("policy/" + hash) }
