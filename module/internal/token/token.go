// Package token encodes and verifies the signed consent token that the
// consent handler sends as a cookie (browsers) or a Consent-Token header
// (apps without a shared cookie jar).
//
// The wire form is base64url(payload || HMAC-SHA256(site || payload)) where
// payload is a compact, versioned binary encoding:
//
//	version  1 byte  (1)
//	key ID   4 bytes (big endian)
//	flags    1 byte
//	ID       16 bytes (random consent ID)
//	issued   8 bytes (Unix seconds, big endian)
//	policy   1 byte length + policy version bytes
//	granted  1 byte length + comma-separated category names
//
// The MAC covers the site identifier too, so a token issued by one site is
// rejected by another site that happens to share the key ring.
package token

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"
	"unsafe"
)

const (
	version    = 1
	macLen     = sha256.Size
	headerLen  = 1 + 4 + 1 + 16 + 8
	maxStrLen  = 255
	maxPayload = headerLen + 2 + 2*maxStrLen
	// MaxEncodedLen is the longest token Decode accepts; longer input is
	// rejected before any decoding work.
	MaxEncodedLen = (maxPayload + macLen + 2) / 3 * 4
	// ScratchLen is the scratch buffer size with which Verify never allocates.
	ScratchLen = MaxEncodedLen + macLen
)

// Flag bits carried in a token.
const (
	// FlagGPCSeen records that the decision was made (or revised) while the
	// browser sent Global Privacy Control, so the signal has been applied.
	FlagGPCSeen byte = 1 << iota
	// FlagWithdrawn marks a decision that resulted from a withdrawal.
	FlagWithdrawn
)

// Errors returned by Decode. Callers treat all of them as "no decision".
var (
	ErrMalformed  = errors.New("malformed consent token")
	ErrSignature  = errors.New("consent token signature mismatch")
	ErrUnknownKey = errors.New("consent token signed with an unknown key")
)

// ID is a random 128-bit consent identifier.
type ID [16]byte

// NewID returns a fresh random consent ID.
func NewID() (ID, error) {
	var id ID
	_, err := rand.Read(id[:])
	return id, err
}

// String returns the ID as 32 lower-case hex digits.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the zero ID (no decision).
func (id ID) IsZero() bool { return id == ID{} }

// ParseID parses 32 hex digits.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("consent id must be %d hex digits", 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("consent id: %w", err)
	}
	return id, nil
}

// Claims is the content of a consent token.
type Claims struct {
	KeyID   uint32
	Flags   byte
	ID      ID
	Issued  time.Time
	Policy  string
	Granted []string
}

// Key is one signing key of a key ring.
type Key struct {
	ID     uint32
	Secret []byte

	pool sync.Pool
}

// NewKey returns a key with the given ID and secret (at least 32 bytes).
func NewKey(id uint32, secret []byte) (*Key, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("signing key %d: secret must be at least 32 bytes, got %d", id, len(secret))
	}
	k := &Key{ID: id, Secret: append([]byte(nil), secret...)}
	k.pool.New = func() any { return hmac.New(sha256.New, k.Secret) }
	return k, nil
}

func (k *Key) mac(site string, payload []byte, out []byte) []byte {
	h := k.pool.Get().(hash.Hash)
	h.Reset()
	h.Write(stringBytes(site))
	h.Write(zero[:])
	h.Write(payload)
	out = h.Sum(out)
	k.pool.Put(h)
	return out
}

var zero [1]byte

// stringBytes views s as bytes without copying; callers only read it.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// KeyLookup finds a verification key by ID.
type KeyLookup interface {
	Key(id uint32) *Key
}

// Encode signs c for site with k and returns the token text.
func Encode(k *Key, site string, c Claims) (string, error) {
	if len(c.Policy) > maxStrLen {
		return "", fmt.Errorf("policy version longer than %d bytes", maxStrLen)
	}
	granted := strings.Join(c.Granted, ",")
	if len(granted) > maxStrLen {
		return "", fmt.Errorf("granted categories longer than %d bytes", maxStrLen)
	}
	buf := make([]byte, 0, headerLen+2+len(c.Policy)+len(granted)+macLen)
	buf = append(buf, version)
	buf = binary.BigEndian.AppendUint32(buf, k.ID)
	buf = append(buf, c.Flags)
	buf = append(buf, c.ID[:]...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(c.Issued.Unix()))
	buf = append(buf, byte(len(c.Policy)))
	buf = append(buf, c.Policy...)
	buf = append(buf, byte(len(granted)))
	buf = append(buf, granted...)
	buf = k.mac(site, buf, buf)
	return base64.RawURLEncoding.EncodeToString(buf), nil
}

// View is a decoded token whose strings point into a caller-owned buffer;
// it lets the hot path verify a token without allocating.
type View struct {
	KeyID   uint32
	Flags   byte
	ID      ID
	Issued  int64
	Policy  []byte
	Granted []byte // comma-separated category names
}

// Verify decodes and verifies text into v using buf as scratch space (it
// should have room for ScratchLen bytes to avoid allocation). v's byte
// slices alias buf.
func Verify(keys KeyLookup, site, text string, buf []byte, v *View) error {
	if len(text) == 0 || len(text) > MaxEncodedLen {
		return ErrMalformed
	}
	// Only the base64url alphabet: the decoder would skip '\r' and '\n',
	// letting one token have several spellings.
	for i := 0; i < len(text); i++ {
		c := text[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return ErrMalformed
		}
	}
	n := base64.RawURLEncoding.DecodedLen(len(text))
	if cap(buf) < n+macLen {
		buf = make([]byte, n+macLen)
	}
	raw := buf[:n]
	m, err := base64.RawURLEncoding.Decode(raw, stringBytes(text))
	if err != nil {
		return ErrMalformed
	}
	raw = raw[:m]
	if len(raw) < headerLen+2+macLen || raw[0] != version {
		return ErrMalformed
	}
	payload, sig := raw[:len(raw)-macLen], raw[len(raw)-macLen:]
	p := headerLen
	plen := int(payload[p])
	p++
	if p+plen >= len(payload) {
		return ErrMalformed
	}
	policy := payload[p : p+plen]
	p += plen
	glen := int(payload[p])
	p++
	if p+glen != len(payload) {
		return ErrMalformed
	}
	granted := payload[p : p+glen]

	kid := binary.BigEndian.Uint32(payload[1:5])
	k := keys.Key(kid)
	if k == nil {
		return ErrUnknownKey
	}
	// The MAC is computed into the scratch space after the decoded bytes.
	if !hmac.Equal(k.mac(site, payload, buf[n:n]), sig) {
		return ErrSignature
	}
	v.KeyID = kid
	v.Flags = payload[5]
	copy(v.ID[:], payload[6:22])
	v.Issued = int64(binary.BigEndian.Uint64(payload[22:30]))
	v.Policy = policy
	v.Granted = granted
	return nil
}

// Decode verifies text and returns its claims (allocating); see Verify for
// the allocation-free form.
func Decode(keys KeyLookup, site, text string) (Claims, error) {
	var v View
	if err := Verify(keys, site, text, nil, &v); err != nil {
		return Claims{}, err
	}
	c := Claims{
		KeyID:  v.KeyID,
		Flags:  v.Flags,
		ID:     v.ID,
		Issued: time.Unix(v.Issued, 0),
		Policy: string(v.Policy),
	}
	if len(v.Granted) > 0 {
		c.Granted = strings.Split(string(v.Granted), ",")
	}
	return c, nil
}
