package token

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

func testRing(t testing.TB) *Keyring {
	t.Helper()
	k, err := NewKey(7, bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func testClaims() Claims {
	return Claims{
		Flags:   FlagGPCSeen,
		ID:      ID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		Issued:  time.Unix(1_700_000_000, 0),
		Policy:  "2024-05",
		Granted: []string{"necessary", "analytics"},
	}
}

func TestRoundTrip(t *testing.T) {
	kr := testRing(t)
	text, err := Encode(kr.Signing(), "shop.example", testClaims())
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(kr, "shop.example", text)
	if err != nil {
		t.Fatal(err)
	}
	want := testClaims()
	want.KeyID = 7
	if got.ID != want.ID || !got.Issued.Equal(want.Issued) || got.Policy != want.Policy ||
		strings.Join(got.Granted, ",") != "necessary,analytics" || got.Flags != FlagGPCSeen || got.KeyID != 7 {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestEmptyGranted(t *testing.T) {
	kr := testRing(t)
	c := testClaims()
	c.Granted = nil
	c.Policy = ""
	text, err := Encode(kr.Signing(), "s", c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(kr, "s", text)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Granted) != 0 || got.Policy != "" {
		t.Fatalf("got %+v", got)
	}
}

func TestRejects(t *testing.T) {
	kr := testRing(t)
	good, err := Encode(kr.Signing(), "shop.example", testClaims())
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 0x01
		return base64.RawURLEncoding.EncodeToString(b)
	}
	other, _ := NewKey(8, bytes.Repeat([]byte{2}, 32))
	otherRing, _ := NewKeyring(other)
	forged, _ := Encode(other, "shop.example", testClaims())
	// A token signed with an attacker key that reuses our key ID.
	impostor, _ := NewKey(7, bytes.Repeat([]byte{3}, 32))
	impostorTok, _ := Encode(impostor, "shop.example", testClaims())

	tests := []struct {
		name string
		keys KeyLookup
		site string
		text string
		want error
	}{
		{"empty", kr, "shop.example", "", ErrMalformed},
		{"garbage", kr, "shop.example", "not base64 !!", ErrMalformed},
		{"truncated", kr, "shop.example", good[:len(good)-5], ErrMalformed},
		{"truncated to header", kr, "shop.example", good[:20], ErrMalformed},
		{"extended", kr, "shop.example", good + "AAAA", ErrMalformed},
		{"newline inserted", kr, "shop.example", good[:3] + "\n" + good[3:], ErrMalformed},
		{"padding", kr, "shop.example", good + "=", ErrMalformed},
		{"altered granted", kr, "shop.example", flip(len(raw) - macLen - 3), ErrSignature},
		{"altered issued", kr, "shop.example", flip(25), ErrSignature},
		{"altered id", kr, "shop.example", flip(10), ErrSignature},
		{"altered mac", kr, "shop.example", flip(len(raw) - 1), ErrSignature},
		{"altered version", kr, "shop.example", flip(0), ErrMalformed},
		{"other site", kr, "other.example", good, ErrSignature},
		{"unknown key", kr, "shop.example", forged, ErrUnknownKey},
		{"impostor key same id", kr, "shop.example", impostorTok, ErrSignature},
		{"our token, their ring", otherRing, "shop.example", good, ErrUnknownKey},
		{"too long", kr, "shop.example", strings.Repeat("A", MaxEncodedLen+1), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.keys, tt.site, tt.text)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	kr := testRing(t)
	old, _ := Encode(kr.Signing(), "s", testClaims())
	nk, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := kr.Rotate(nk); err != nil {
		t.Fatal(err)
	}
	if kr.Signing() != nk {
		t.Fatal("rotated key does not sign")
	}
	if _, err := Decode(kr, "s", old); err != nil {
		t.Fatalf("old token after rotation: %v", err)
	}
	fresh, _ := Encode(kr.Signing(), "s", testClaims())
	c, err := Decode(kr, "s", fresh)
	if err != nil || c.KeyID != nk.ID {
		t.Fatalf("new token: %v %+v", err, c)
	}
	if err := kr.Rotate(nk); err == nil {
		t.Fatal("rotating to a duplicate id succeeded")
	}
	if len(kr.Keys()) != 2 || kr.Keys()[1] != nk {
		t.Fatal("Keys() must list the signing key last")
	}
}

func TestKeyFile(t *testing.T) {
	k1, _ := GenerateKey()
	k2, _ := GenerateKey()
	file := "# fleet keys\n" + MarshalKey(k1) + "\n\n" + MarshalKey(k2) + "\n"
	keys, err := ParseKeyFile([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	if kr.Signing().ID != k2.ID || kr.Key(k1.ID) == nil {
		t.Fatal("last key must sign and the first verify")
	}
	bad := []string{
		"",
		"# only a comment",
		"12",
		"x " + base64.StdEncoding.EncodeToString(make([]byte, 32)),
		"1 %%%",
		"1 " + base64.StdEncoding.EncodeToString(make([]byte, 16)),
		"1 a b",
	}
	for _, b := range bad {
		if _, err := ParseKeyFile([]byte(b)); err == nil {
			t.Errorf("ParseKeyFile(%q) succeeded", b)
		}
	}
	if _, err := NewKeyring(k1, k1); err == nil {
		t.Error("duplicate key ids accepted")
	}
}

func TestParseID(t *testing.T) {
	id, _ := NewID()
	got, err := ParseID(id.String())
	if err != nil || got != id {
		t.Fatalf("ParseID round trip: %v", err)
	}
	for _, s := range []string{"", "zz", strings.Repeat("g", 32)} {
		if _, err := ParseID(s); err == nil {
			t.Errorf("ParseID(%q) succeeded", s)
		}
	}
}

func FuzzVerify(f *testing.F) {
	kr := testRing(f)
	good, _ := Encode(kr.Signing(), "s", testClaims())
	f.Add(good)
	f.Add(good[:10])
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, text string) {
		var v View
		buf := make([]byte, 0, ScratchLen)
		err := Verify(kr, "s", text, buf, &v)
		if err == nil && text != good {
			// Any other accepted text must decode to the same signed payload
			// (base64 allows no alternative encodings in RawURL strict form,
			// so this means a forgery).
			c, _ := Decode(kr, "s", text)
			re, _ := Encode(kr.Signing(), "s", c)
			if re != text {
				t.Fatalf("accepted a token that is not ours: %q", text)
			}
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	kr := testRing(b)
	text, _ := Encode(kr.Signing(), "shop.example", testClaims())
	buf := make([]byte, 0, ScratchLen)
	var v View
	b.ReportAllocs()
	for b.Loop() {
		if err := Verify(kr, "shop.example", text, buf, &v); err != nil {
			b.Fatal(err)
		}
	}
}
