package token

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
)

// Keyring holds the signing key and every key still valid for verification.
// Reads are lock-free; Rotate and Add publish a new immutable snapshot.
type Keyring struct {
	snap atomic.Pointer[keyringSnapshot]
}

type keyringSnapshot struct {
	signing *Key
	keys    map[uint32]*Key
}

// NewKeyring returns a key ring whose last key signs and all verify.
func NewKeyring(keys ...*Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("key ring needs at least one key")
	}
	s := &keyringSnapshot{signing: keys[len(keys)-1], keys: make(map[uint32]*Key, len(keys))}
	for _, k := range keys {
		if _, dup := s.keys[k.ID]; dup {
			return nil, fmt.Errorf("duplicate signing key id %d", k.ID)
		}
		s.keys[k.ID] = k
	}
	kr := new(Keyring)
	kr.snap.Store(s)
	return kr, nil
}

// Signing returns the key new tokens are signed with.
func (kr *Keyring) Signing() *Key { return kr.snap.Load().signing }

// Key returns the key with the given ID, or nil.
func (kr *Keyring) Key(id uint32) *Key { return kr.snap.Load().keys[id] }

// Keys returns all keys, the signing key last.
func (kr *Keyring) Keys() []*Key {
	s := kr.snap.Load()
	out := make([]*Key, 0, len(s.keys))
	for _, k := range s.keys {
		if k != s.signing {
			out = append(out, k)
		}
	}
	return append(out, s.signing)
}

// Rotate makes k the signing key; earlier keys stay valid for verification.
func (kr *Keyring) Rotate(k *Key) error {
	old := kr.snap.Load()
	if _, dup := old.keys[k.ID]; dup {
		return fmt.Errorf("duplicate signing key id %d", k.ID)
	}
	s := &keyringSnapshot{signing: k, keys: make(map[uint32]*Key, len(old.keys)+1)}
	for id, ok := range old.keys {
		s.keys[id] = ok
	}
	s.keys[k.ID] = k
	kr.snap.Store(s)
	return nil
}

// GenerateKey returns a new key with a random ID and a random 32-byte secret.
func GenerateKey() (*Key, error) {
	var b [4 + 32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	return NewKey(binary.BigEndian.Uint32(b[:4]), b[4:])
}

// MarshalKey renders k as one key-file line: "<id> <base64 secret>".
func MarshalKey(k *Key) string {
	return strconv.FormatUint(uint64(k.ID), 10) + " " + base64.StdEncoding.EncodeToString(k.Secret)
}

// ParseKeyFile parses a key file: one key per line as "<id> <base64 secret>"
// (id a decimal uint32, secret at least 32 bytes), blank lines and lines
// starting with # ignored. The last key signs; the others only verify, so
// a fleet rotates by appending a line on every node.
func ParseKeyFile(data []byte) ([]*Key, error) {
	var keys []*Key
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"<id> <base64 secret>\"", line)
		}
		id, err := strconv.ParseUint(fields[0], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("line %d: key id: %w", line, err)
		}
		secret, err := base64.StdEncoding.DecodeString(fields[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: key secret: %w", line, err)
		}
		k, err := NewKey(uint32(id), secret)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no keys found")
	}
	return keys, nil
}
