package anonymize

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"sync"
)

// MinKeySize is the shortest key NewPseudonymizer accepts.
const MinKeySize = 32

// pseudonymBytes is the number of MAC bytes kept in a pseudonym; it is
// written as twice as many hex digits.
const pseudonymBytes = 16

// maxPooledBuf bounds the scratch buffer kept in a pooled macState, so that
// one huge input does not pin memory.
const maxPooledBuf = 4 << 10

// Pseudonymizer makes keyed pseudonyms. It is safe for concurrent use.
type Pseudonymizer struct {
	salts *Salts
	macs  sync.Pool // of *macState keyed with the pseudonymizer key
}

// macState is a reusable keyed HMAC with a scratch buffer for its message.
type macState struct {
	h   hash.Hash
	buf []byte
	sum [sha256.Size]byte
}

// NewPseudonymizer returns a pseudonymizer using key for Consented and salts
// for Daily. The key must be at least 32 bytes long and is copied; salts may
// be nil when Daily is not used.
func NewPseudonymizer(key []byte, salts *Salts) (*Pseudonymizer, error) {
	if len(key) < MinKeySize {
		return nil, errors.New("pseudonymizer key must be at least 32 bytes")
	}
	k := append([]byte(nil), key...)
	p := &Pseudonymizer{salts: salts}
	p.macs.New = func() any { return &macState{h: hmac.New(sha256.New, k)} }
	return p, nil
}

// Consented returns a stable pseudonym for a visitor who granted analytics:
// HMAC-SHA256(key, site 0x00 consentID 0x00 purpose), the first 16 bytes in
// hex, 32 characters. It is stable as long as the consent ID lasts and cannot
// be linked to the consent ID without the key.
func (p *Pseudonymizer) Consented(site, consentID, purpose string) string {
	m := p.macs.Get().(*macState)
	out := m.pseudonym(site, consentID, purpose, "", 3)
	p.macs.Put(m)
	return out
}

// Daily returns a cookieless daily visitor hash: HMAC-SHA256(salt of the day,
// site 0x00 ip 0x00 userAgent 0x00 purpose), the first 16 bytes in hex, 32
// characters. Hashes cannot be linked across days because the salt is
// deleted after its day; pass the full client address, the salt makes it
// irreversible. It fails when the salt of the day cannot be loaded.
func (p *Pseudonymizer) Daily(site, ip, userAgent, purpose string) (string, error) {
	if p.salts == nil {
		return "", errors.New("pseudonymizer has no daily salts")
	}
	d, err := p.salts.today()
	if err != nil {
		return "", err
	}
	m := d.macs.Get().(*macState)
	out := m.pseudonym(site, ip, userAgent, purpose, 4)
	d.macs.Put(m)
	return out, nil
}

// pseudonym MACs the first n of a, b, c, d joined with 0x00 bytes and returns
// the truncated MAC in hex.
func (m *macState) pseudonym(a, b, c, d string, n int) string {
	buf := append(m.buf[:0], a...)
	buf = append(buf, 0)
	buf = append(buf, b...)
	buf = append(buf, 0)
	buf = append(buf, c...)
	if n == 4 {
		buf = append(buf, 0)
		buf = append(buf, d...)
	}
	m.h.Reset()
	m.h.Write(buf)
	sum := m.h.Sum(m.sum[:0])
	if cap(buf) > maxPooledBuf {
		buf = nil
	}
	m.buf = buf
	var out [2 * pseudonymBytes]byte
	hex.Encode(out[:], sum[:pseudonymBytes])
	return string(out[:])
}
