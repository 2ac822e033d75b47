package anonymize

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTruncateIP(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string // "" means the zero Addr
	}{
		{"192.168.123.45", 0, "192.168.123.45"},
		{"192.168.123.45", 1, "192.168.123.0"},
		{"192.168.123.45", 2, "192.168.0.0"},
		{"192.168.123.45", 3, "192.0.0.0"},
		{"192.168.123.45", 4, ""},
		{"192.168.123.45", 5, ""},
		{"192.168.123.45", -1, ""},
		{"2001:db8:abcd:12:34:56:78:9a", 0, "2001:db8:abcd:12:34:56:78:9a"},
		{"2001:db8:abcd:12:34:56:78:9a", 1, "2001:db8:abcd::"},
		{"2001:db8:abcd:12:34:56:78:9a", 2, "2001:db8::"},
		{"2001:db8:abcd:12:34:56:78:9a", 3, "2001::"},
		{"2001:db8:abcd:12:34:56:78:9a", 4, ""},
		{"::ffff:10.20.30.40", 1, "10.20.30.0"},
		{"::ffff:10.20.30.40", 2, "10.20.0.0"},
		{"::ffff:10.20.30.40", 3, "10.0.0.0"},
		{"::ffff:10.20.30.40", 4, ""},
		{"::ffff:10.20.30.40", 0, "::ffff:10.20.30.40"},
		{"fe80::1:2:3:4%eth0", 1, "fe80::"},
		{"fe80::1:2:3:4%eth0", 0, "fe80::1:2:3:4%eth0"},
		{"2002:c000:0204:1:2:3:4:5", 1, "2002:c000:200::"}, // 6to4 embeds 192.0.2.4
		{"2002:c000:0204:1:2:3:4:5", 2, "2002:c000::"},
		{"::1", 1, "::"},
		{"", 1, ""},
	}
	for _, tt := range tests {
		var in netip.Addr
		if tt.in != "" {
			in = netip.MustParseAddr(tt.in)
		}
		got := TruncateIP(in, tt.n)
		if tt.want == "" {
			if got.IsValid() {
				t.Errorf("TruncateIP(%s, %d) = %s, want zero Addr", tt.in, tt.n, got)
			}
			continue
		}
		if got.String() != tt.want {
			t.Errorf("TruncateIP(%s, %d) = %s, want %s", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestTruncateIPString(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"203.0.113.77", 1, "203.0.113.0"},
		{"203.0.113.77", 2, "203.0.0.0"},
		{"203.0.113.77", 4, ""},
		{"203.0.113.77", 0, "203.0.113.77"},
		{" 203.0.113.77 ", 1, "203.0.113.0"},
		{"203.0.113.77:54321", 1, "203.0.113.0"},
		{"[2001:db8:1:2::5]:443", 1, "2001:db8:1::"},
		{"[2001:db8:1:2::5]", 2, "2001:db8::"},
		{"2001:db8:1:2::5", 3, "2001::"},
		{"fe80::1%eth0", 1, "fe80::"},
		{"fe80::1%eth0", 0, "fe80::1"},
		{"[fe80::1%eth0]:80", 1, "fe80::"},
		{"::ffff:198.51.100.9", 1, "198.51.100.0"},
		{`"[2001:db8::7]:4711"`, 1, "2001:db8::"},
		{"203.0.113.77, 198.51.100.9, 10.1.2.3", 1, "203.0.113.0, 198.51.100.0, 10.1.2.0"},
		{"203.0.113.77,198.51.100.9", 2, "203.0.0.0,198.51.0.0"},
		{"203.0.113.77,  2001:db8::1", 1, "203.0.113.0,  2001:db8::"},
		{"unknown, 203.0.113.77", 1, "203.0.113.0"},
		{"203.0.113.77, _hidden, 198.51.100.9", 1, "203.0.113.0, 198.51.100.0"},
		{"203.0.113.77, , 198.51.100.9,", 1, "203.0.113.0, 198.51.100.0"},
		{"203.0.113.77, 198.51.100.9", 4, ""},
		{"", 1, ""},
		{",,,", 1, ""},
		{"1.2.3.4.5", 1, ""},
		{"256.1.1.1", 1, ""},
		{"01.2.3.4", 1, ""},
		{"1.2.3.4:99999", 1, ""},
		{"1.2.3.4:http", 1, ""},
		{"[1.2.3.4]", 1, ""},
		{"javascript:alert(1)", 1, ""},
		{"12345678", 1, ""},
		{"host-10-1-2-3.example.com", 1, ""},
		{"fe80::1%<script>1.2.3.4", 0, "fe80::1"},
	}
	for _, tt := range tests {
		if got := TruncateIPString(tt.in, tt.n); got != tt.want {
			t.Errorf("TruncateIPString(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestTruncateIPStringGarbageLeaksNothing(t *testing.T) {
	garbage := []string{
		"1.2.3.4.5", "999.888.777.666", "12345678901", "1.2.3", "1.2.3.4/24",
		"1.2.3.4:", "[2001:db8::1", "2001:db8::1]", "::ffff:1.2.3.999", "x1.2.3.4",
		"1.2.3.4x", "1.2.3.4 5.6.7.8", "\"1.2.3.4", "1.2.3.4%eth0", "for=1.2.3.4",
	}
	for _, g := range garbage {
		for n := 0; n <= 4; n++ {
			got := TruncateIPString(g, n)
			if got != "" {
				t.Errorf("TruncateIPString(%q, %d) = %q, want \"\"", g, n, got)
			}
			if strings.ContainsAny(got, "0123456789") {
				t.Errorf("TruncateIPString(%q, %d) leaks digits: %q", g, n, got)
			}
		}
	}
}

// memStore is an in-memory SaltStore with TTL bookkeeping.
type memStore struct {
	mu      sync.Mutex
	now     func() time.Time
	data    map[string]memEntry
	ttls    []time.Duration
	keys    []string
	calls   int
	failErr error
}

type memEntry struct {
	val     []byte
	expires time.Time
}

func newMemStore(now func() time.Time) *memStore {
	return &memStore{now: now, data: map[string]memEntry{}}
}

func (m *memStore) GetOrCreate(key string, val []byte, ttl time.Duration) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.failErr != nil {
		return nil, m.failErr
	}
	now := m.now()
	if e, ok := m.data[key]; ok && now.Before(e.expires) {
		return append([]byte(nil), e.val...), nil
	}
	m.ttls = append(m.ttls, ttl)
	m.keys = append(m.keys, key)
	m.data[key] = memEntry{val: append([]byte(nil), val...), expires: now.Add(ttl)}
	return append([]byte(nil), val...), nil
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestSalts(t *testing.T) {
	clk := &clock{t: time.Date(2025, 3, 14, 23, 30, 0, 0, time.FixedZone("UTC+5", 5*3600))}
	store := newMemStore(clk.Now)
	s := NewSalts(store, clk.Now)

	salt1, day1, err := s.Today()
	if err != nil {
		t.Fatal(err)
	}
	if len(salt1) != 32 {
		t.Fatalf("salt length = %d, want 32", len(salt1))
	}
	if want := time.Date(2025, 3, 14, 0, 0, 0, 0, time.UTC); !day1.Equal(want) || day1.Location() != time.UTC {
		t.Errorf("day = %v, want %v", day1, want)
	}
	if got := store.keys; len(got) != 1 || got[0] != "salt/2025-03-14" {
		t.Errorf("keys = %q, want [salt/2025-03-14]", got)
	}
	if got := store.ttls; len(got) != 1 || got[0] != 48*time.Hour {
		t.Errorf("ttls = %v, want [48h]", got)
	}

	// Same day: same salt, served from memory.
	clk.Add(3 * time.Hour)
	salt2, day2, err := s.Today()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(salt1, salt2) || !day2.Equal(day1) {
		t.Errorf("same day gave a different salt or day")
	}
	if store.calls != 1 {
		t.Errorf("store calls = %d, want 1 (cached)", store.calls)
	}
	salt2[0] ^= 0xff // callers get copies
	if salt3, _, _ := s.Today(); !bytes.Equal(salt1, salt3) {
		t.Errorf("mutating a returned salt changed the cache")
	}

	// Another Salts on the same store shares the salt.
	other := NewSalts(store, clk.Now)
	if salt, _, err := other.Today(); err != nil || !bytes.Equal(salt, salt1) {
		t.Errorf("second Salts got a different salt (err %v)", err)
	}

	// Next UTC day: new salt under a new key.
	clk.Add(24 * time.Hour)
	salt4, day4, err := s.Today()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(salt4, salt1) {
		t.Errorf("next day gave the same salt")
	}
	if want := day1.AddDate(0, 0, 1); !day4.Equal(want) {
		t.Errorf("day = %v, want %v", day4, want)
	}
	if got := store.keys; len(got) != 2 || got[1] != "salt/2025-03-15" {
		t.Errorf("keys = %q", got)
	}
	for _, ttl := range store.ttls {
		if ttl != 48*time.Hour {
			t.Errorf("ttl = %v, want 48h", ttl)
		}
	}
}

func TestSaltsErrors(t *testing.T) {
	clk := &clock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)}
	store := newMemStore(clk.Now)
	boom := errors.New("disk on fire")
	store.failErr = boom
	s := NewSalts(store, clk.Now)
	if _, _, err := s.Today(); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want it to wrap %v", err, boom)
	}
	// The failure is not cached: the next call succeeds.
	store.failErr = nil
	if _, _, err := s.Today(); err != nil {
		t.Fatalf("after recovery: %v", err)
	}

	if _, _, err := NewSalts(nil, clk.Now).Today(); err == nil {
		t.Error("nil store: want error")
	}
	short := shortStore{}
	if _, _, err := NewSalts(short, clk.Now).Today(); err == nil {
		t.Error("short salt: want error")
	}
}

type shortStore struct{}

func (shortStore) GetOrCreate(string, []byte, time.Duration) ([]byte, error) {
	return []byte("tiny"), nil
}

func TestSaltsConcurrent(t *testing.T) {
	clk := &clock{t: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)}
	store := newMemStore(clk.Now)
	s := NewSalts(store, clk.Now)
	var wg sync.WaitGroup
	salts := make([][]byte, 32)
	for i := range salts {
		wg.Go(func() {
			salt, _, err := s.Today()
			if err != nil {
				t.Error(err)
			}
			salts[i] = salt
		})
	}
	wg.Wait()
	for _, salt := range salts[1:] {
		if !bytes.Equal(salt, salts[0]) {
			t.Fatal("concurrent callers saw different salts")
		}
	}
	if store.calls != 1 {
		t.Errorf("store calls = %d, want 1", store.calls)
	}
}

func testKey() []byte { return bytes.Repeat([]byte{0x42}, 32) }

func TestPseudonymizer(t *testing.T) {
	clk := &clock{t: time.Date(2025, 3, 14, 10, 0, 0, 0, time.UTC)}
	store := newMemStore(clk.Now)
	p, err := NewPseudonymizer(testKey(), NewSalts(store, clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	hexRe := regexp.MustCompile(`^[0-9a-f]{32}$`)

	a := p.Consented("shop.example", "c-123", "analytics")
	if !hexRe.MatchString(a) {
		t.Errorf("Consented = %q, want 32 hex chars", a)
	}
	if b := p.Consented("shop.example", "c-123", "analytics"); b != a {
		t.Errorf("Consented not stable: %q vs %q", a, b)
	}
	p2, _ := NewPseudonymizer(testKey(), nil)
	if b := p2.Consented("shop.example", "c-123", "analytics"); b != a {
		t.Errorf("Consented differs between instances with the same key")
	}
	otherKey := testKey()
	otherKey[0] = 1
	p3, _ := NewPseudonymizer(otherKey, nil)
	distinct := map[string]string{
		"base":          a,
		"other site":    p.Consented("blog.example", "c-123", "analytics"),
		"other purpose": p.Consented("shop.example", "c-123", "marketing"),
		"other id":      p.Consented("shop.example", "c-124", "analytics"),
		"other key":     p3.Consented("shop.example", "c-123", "analytics"),
		"shifted":       p.Consented("shop.example", "c-123analytics", ""),
	}
	seen := map[string]string{}
	for name, v := range distinct {
		if prev, ok := seen[v]; ok {
			t.Errorf("%s and %s collide: %s", name, prev, v)
		}
		seen[v] = name
	}
	if strings.Contains(a, "c-123") {
		t.Error("pseudonym contains the consent id")
	}

	d1, err := p.Daily("shop.example", "203.0.113.7", "Mozilla/5.0", "analytics")
	if err != nil {
		t.Fatal(err)
	}
	if !hexRe.MatchString(d1) {
		t.Errorf("Daily = %q, want 32 hex chars", d1)
	}
	clk.Add(10 * time.Hour) // still 2025-03-14
	d2, err := p.Daily("shop.example", "203.0.113.7", "Mozilla/5.0", "analytics")
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Errorf("Daily differs within a day: %q vs %q", d1, d2)
	}
	for name, v := range map[string][]string{
		"other site":    {"blog.example", "203.0.113.7", "Mozilla/5.0", "analytics"},
		"other ip":      {"shop.example", "203.0.113.8", "Mozilla/5.0", "analytics"},
		"other ua":      {"shop.example", "203.0.113.7", "curl/8", "analytics"},
		"other purpose": {"shop.example", "203.0.113.7", "Mozilla/5.0", "ads"},
	} {
		got, err := p.Daily(v[0], v[1], v[2], v[3])
		if err != nil || got == d1 {
			t.Errorf("%s: Daily = %q, %v; want a different hash", name, got, err)
		}
	}
	clk.Add(4 * time.Hour) // 2025-03-15
	d3, err := p.Daily("shop.example", "203.0.113.7", "Mozilla/5.0", "analytics")
	if err != nil {
		t.Fatal(err)
	}
	if d3 == d1 {
		t.Error("Daily equal across days")
	}
	if d3 == p.Consented("shop.example", "203.0.113.7", "analytics") {
		t.Error("Daily equals Consented")
	}
}

func TestPseudonymizerFormat(t *testing.T) {
	mac := func(key []byte, msg string) string {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return hex.EncodeToString(h.Sum(nil))[:32]
	}
	now := func() time.Time { return time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC) }
	salts := NewSalts(newMemStore(now), now)
	p, err := NewPseudonymizer(testKey(), salts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Consented("site", "cid", "analytics"), mac(testKey(), "site\x00cid\x00analytics"); got != want {
		t.Errorf("Consented = %s, want %s", got, want)
	}
	got, err := p.Daily("site", "203.0.113.7", "UA", "analytics")
	if err != nil {
		t.Fatal(err)
	}
	salt, _, _ := salts.Today()
	if want := mac(salt, "site\x00203.0.113.7\x00UA\x00analytics"); got != want {
		t.Errorf("Daily = %s, want %s", got, want)
	}
}

func TestPseudonymizerErrors(t *testing.T) {
	for _, n := range []int{0, 16, 31} {
		if _, err := NewPseudonymizer(make([]byte, n), nil); err == nil {
			t.Errorf("key of %d bytes: want error", n)
		}
	}
	key := testKey()
	p, err := NewPseudonymizer(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := p.Consented("s", "c", "p")
	key[0] ^= 0xff // the key is copied
	if after := p.Consented("s", "c", "p"); after != before {
		t.Error("pseudonymizer key aliases the caller's slice")
	}
	if _, err := p.Daily("s", "1.2.3.4", "ua", "p"); err == nil {
		t.Error("Daily without salts: want error")
	}
	clk := &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	store := newMemStore(clk.Now)
	store.failErr = errors.New("store down")
	p, _ = NewPseudonymizer(testKey(), NewSalts(store, clk.Now))
	if _, err := p.Daily("s", "1.2.3.4", "ua", "p"); err == nil || !strings.Contains(err.Error(), "store down") {
		t.Errorf("Daily with failing store: err = %v", err)
	}
}

func TestRedactPII(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		// E-mail addresses.
		{"john.doe@example.com", "[redacted]"},
		{"Contact: john.doe+shop@mail.example.co.uk.", "Contact: [redacted]."},
		{"Заказ для ivan.petrov@mail.ru оформлен", "Заказ для [redacted] оформлен"},
		{"Почта:иван@пример.рф!", "Почта:[redacted]!"},
		{"x@y.z", "[redacted]"},
		{"john%40example.com", "[redacted]"},
		{"email=john%40example.com&x=1", "email=[redacted]&x=1"},
		{"john%2540example.com", "[redacted]"},
		{"hello%20john%40example.com%20bye", "hello%20[redacted]%20bye"},
		{"%D0%98%D0%B2%D0%B0%D0%BD%20ivan%40example.kz", "%D0%98%D0%B2%D0%B0%D0%BD%20[redacted]"},
		{"a@b", "a@b"},
		{"@example.com", "@example.com"},
		{"user@.com", "user@.com"},
		{"Follow @shop on Twitter", "Follow @shop on Twitter"},
		// Phone numbers.
		{"+7 701 123 45 67", "[redacted]"},
		{"Тел.: +7 (701) 123-45-67, звоните!", "Тел.: [redacted], звоните!"},
		{"8 (916) 123-45-67", "[redacted]"},
		{"(555) 123-4567", "[redacted]"},
		{"call 555.123.4567 now", "call [redacted] now"},
		{"+44 20 7946 0958", "[redacted]"},
		{"+49 (0)30 1234567", "[redacted]"},
		{"89161234567", "[redacted]"},
		{"+79161234567", "[redacted]"},
		{"тел+79161234567", "тел[redacted]"},
		{"%2B7%20701%20123%2045%2067", "[redacted]"},
		{"phone=%2B7+701+123+45+67&ok=1", "phone=[redacted]&ok=1"},
		{"q=call+89161234567", "q=call+[redacted]"},
		{"+7\u00a0701\u00a0123\u00a045\u00a067", "[redacted]"},
		// Card numbers.
		{"4111 1111 1111 1111", "[redacted]"},
		{"card 4111-1111-1111-1111 exp", "card [redacted] exp"},
		{"4111111111111111", "[redacted]"},
		{"378282246310005", "[redacted]"},
		{"6011%200000%200000%200004", "[redacted]"},
		// IP addresses.
		{"from 203.0.113.77.", "from [redacted]."},
		{"from 203.0.113.77:4711", "from [redacted]"},
		{"ip=1.2.3.4&x=1", "ip=[redacted]&x=1"},
		{"client 2001:db8:1:2::77 seen", "client [redacted] seen"},
		{"[2001:DB8:0001:0002:0000:0000:0000:0077]:443", "[[redacted]]:443"},
		{"::ffff:203.0.113.77", "[redacted]"},
		{"fe80::1%25eth0", "[redacted]%25eth0"},
		{"ip%3D2001%3Adb8%3A%3A77", "ip%3D[redacted]"},
		{"203%2E0%2E113%2E77", "[redacted]"},
		{"host 2001:db8::1: down", "host [redacted]: down"},
		{"std::vector and a::b::c", "std::vector and a::b::c"},
		{"v1.2.3.4.5, 10:30:45, 2024.01.15, de:ad:be:ef:00:01", "v1.2.3.4.5, 10:30:45, 2024.01.15, de:ad:be:ef:00:01"},
		// Ordinary numbers stay.
		{"Order 12345 shipped", "Order 12345 shipped"},
		{"Black Friday 2024", "Black Friday 2024"},
		{"Цена 1 299 000 ₸", "Цена 1 299 000 ₸"},
		{"$1,299.99", "$1,299.99"},
		{"15.01.2024 - 20.01.2024", "15.01.2024 - 20.01.2024"},
		{"2024-01-15 12:30", "2024-01-15 12:30"},
		{"15.01.2024 9:05", "15.01.2024 9:05"},
		{"+7 701 123 45 67: call", "[redacted]: call"},
		{"4111111111111112", "4111111111111112"},         // fails Luhn, too long for a phone
		{"12345678901234567890", "12345678901234567890"}, // long id
		{"sku ABC123456789", "sku ABC123456789"},
		{"/assets/app.3f9a8b7c123456789.js", "/assets/app.3f9a8b7c123456789.js"},
		{"550e8400-e29b-41d4-a716-446655440000", "550e8400-e29b-41d4-a716-446655440000"},
		{"Nike Air Max 90 — интернет-магазин", "Nike Air Max 90 — интернет-магазин"},
		{"100%", "100%"},
		{"50%25 off", "50%25 off"},
		{"", ""},
		// Mixed.
		{"ivan@example.kz, +7 701 123 45 67; order 12345", "[redacted], [redacted]; order 12345"},
	}
	for _, tt := range tests {
		if got := RedactPII(tt.in); got != tt.want {
			t.Errorf("RedactPII(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedactPIIKeepsEncodingValid(t *testing.T) {
	for _, in := range []string{
		"a%2012345678901%20b",
		"%2089161234567",
		"x%20y%40example.com",
		"%E2%82%AC+1+234+567+890",
	} {
		out := RedactPII(in)
		if !validEscapes(out) {
			t.Errorf("RedactPII(%q) = %q: broken percent-encoding", in, out)
		}
		if out == in {
			t.Errorf("RedactPII(%q) redacted nothing", in)
		}
	}
}

func TestCleanURL(t *testing.T) {
	def := URLPolicy{}
	tests := []struct {
		name string
		p    URLPolicy
		in   string
		want string
	}{
		{"ga style", def,
			"https://shop.example/search?q=shoes&gclid=abc&utm_source=x&email=a%40b.c#frag",
			"https://shop.example/search?utm_source=x#frag"},
		{"keep click ids", URLPolicy{KeepClickIDs: true},
			"https://shop.example/search?q=shoes&gclid=abc&utm_source=x&email=a%40b.c#frag",
			"https://shop.example/search?gclid=abc&utm_source=x#frag"},
		{"custom deny list", URLPolicy{DenyParams: []string{"ref"}},
			"https://shop.example/p?ref=tw&q=shoes&fbclid=1",
			"https://shop.example/p?q=shoes"},
		{"empty deny list", URLPolicy{DenyParams: []string{}, KeepClickIDs: true},
			"https://shop.example/p?q=shoes&fbclid=1",
			"https://shop.example/p?q=shoes&fbclid=1"},
		{"relative", def, "/catalog/shoes?size=42&sid=XYZ", "/catalog/shoes?size=42"},
		{"relative path only", def, "catalog/item?id=7", "catalog/item?id=7"},
		{"query only", def, "?email=x%40y.z&page=2", "?page=2"},
		{"repeated params", def, "/p?q=a&page=1&q=b&Q=c&page=2", "/p?page=1&page=2"},
		{"case-insensitive", def, "/p?EMAIL=x&Phone=1&GCLID=2&Utm_Medium=cpc", "/p?Utm_Medium=cpc"},
		{"encoded name", def, "/p?e%6Dail=x&ok=1", "/p?ok=1"},
		{"bracket names", def, "/p?user%5Bemail%5D=x&user[name]=y&tags[]=1&email[]=z", "/p?tags[]=1"},
		{"amp prefix", def, "/p?a=1&amp;email=x&amp;b=2", "/p?a=1&amp;b=2"},
		{"all removed", def, "https://shop.example/?q=x&gclid=y", "https://shop.example/"},
		{"pii in values", def, "/p?contact=ivan%40example.kz&ref=%2B7%20701%20123%2045%2067&n=12345",
			"/p?contact=[redacted]&ref=[redacted]&n=12345"},
		{"pii in path", def, "/users/john.doe@example.com/orders/12345", "/users/[redacted]/orders/12345"},
		{"pii in encoded path", def, "/u/john%40example.com/x", "/u/[redacted]/x"},
		{"pii in fragment", def, "/p#contact-ivan@example.kz", "/p#[redacted]"},
		{"token in fragment", def, "https://app.example/cb#access_token=abc&token_type=bearer&state=1",
			"https://app.example/cb#token_type=bearer&state=1"},
		{"spa route fragment", def, "/#/search?q=shoes&page=2", "/#/search?page=2"},
		{"userinfo", def, "https://user:secret@shop.example/x", "https://shop.example/x"},
		{"userinfo email", def, "https://john%40example.com@shop.example/", "https://shop.example/"},
		{"jsessionid", def, "/cart;jsessionid=ABC123;v=2?x=1", "/cart;v=2?x=1"},
		{"path param only", def, "/;sessionid=1/x", "/;/x"},
		{"path param spaces", def, "/; sessionid / 00", "/;/%2000"},
		{"mailto", def, "mailto:john@example.com", "mailto:[redacted]"},
		{"cyrillic path kept", def, "https://shop.example/%D0%BA%D0%B0%D1%82%D0%B0%D0%BB%D0%BE%D0%B3?page=2",
			"https://shop.example/%D0%BA%D0%B0%D1%82%D0%B0%D0%BB%D0%BE%D0%B3?page=2"},
		{"invalid escape in query", def, "https://shop.example/?x=%zz", ""},
		{"invalid escape in key", def, "https://shop.example/?%zz=1", ""},
		{"invalid escape in denied value", def, "https://shop.example/?email=%4", ""},
		{"invalid escape in path", def, "https://shop.example/a%2", ""},
		{"invalid escape in fragment", def, "https://shop.example/#%G1", ""},
		{"control char", def, "https://shop.example/\x00", ""},
		{"bad host", def, "https://sh op.example/", ""},
		{"colon in first segment", def, "a:b/c:d", "a:b/c:d"},
		{"empty", def, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.CleanURL(tt.in); got != tt.want {
				t.Errorf("CleanURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestOrigin(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://example.com/path?q=secret#x", "https://example.com"},
		{"HTTPS://Example.COM", "https://example.com"},
		{"http://example.com:80/", "http://example.com"},
		{"https://example.com:443/", "https://example.com"},
		{"https://example.com:8443/a", "https://example.com:8443"},
		{"http://example.com:443/", "http://example.com:443"},
		{"https://user:pw@example.com/", "https://example.com"},
		{"https://[2001:DB8::1]:8080/x", "https://[2001:db8::1]:8080"},
		{"https://пример.рф/путь", "https://пример.рф"},
		{"  https://example.com/  ", "https://example.com"},
		{"android-app://com.example/", ""},
		{"ftp://example.com/", ""},
		{"javascript:alert(1)", ""},
		{"//example.com/x", ""},
		{"/relative", ""},
		{"https:///nohost", ""},
		{"https://exa mple.com/", ""},
		{"https://example.com:port/", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Origin(tt.in); got != tt.want {
			t.Errorf("Origin(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// cleanQueryReference is cleanQuery as first written, building every
// output; cleanQuery returns the input itself when nothing changes.
func cleanQueryReference(p URLPolicy, raw string) (string, bool) {
	var b strings.Builder
	for pair := range strings.SplitSeq(raw, "&") {
		if pair == "" {
			continue
		}
		key, val, hasVal := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(key)
		if err != nil {
			return "", false
		}
		if hasVal && !validEscapes(val) {
			return "", false
		}
		if p.denied(name) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(RedactPII(key))
		if hasVal {
			b.WriteByte('=')
			b.WriteString(RedactPII(val))
		}
	}
	return b.String(), true
}

// TestPlainURLsAgreeWithParse builds URLs from parts that sit on either
// side of what the byte scan serves, and checks that CleanURL and Origin
// give what they give through url.Parse.
func TestPlainURLsAgreeWithParse(t *testing.T) {
	prefixes := []string{"", "https://shop.example", "http://Shop.Example:80", "https://h:", "https://h:443", "HTTP://h",
		"http://u@h", "http://[::1]", "git+ssh://h", "https://", "//h", "mailto:", "h"}
	paths := []string{"", "/", "/a/b", "/a;jsessionid=1/b", "/;sid=x/y", "/a%2Fb", "/%zz", "/a b", "/a[1]", "/é",
		"/a'(b)*!$,=:@~", "/mail/john@example.com", "/+49301234567", "//x", "/a%"}
	queries := []string{"", "?", "?q=shoes&page=2", "?email=a%40b.c&x=1", "?%zz=1", "?a=%zz", "?a b=1", "?a=é", "?gclid=x&amp;q=1", "?x=1?y",
		"?a=1&&b=2&", "?&x=1", "?page=2&q=x", "?a&b=&=c", "?x=+49+30+1234+5678&y=1"}
	frags := []string{"", "#", "#top", "#/route?email=a@b.c&x=1", "#access_token=t", "#a#b", "#%zz", "#a%2Fb", "#é"}
	p := URLPolicy{}
	for _, pre := range prefixes {
		for _, path := range paths {
			for _, q := range queries {
				for _, f := range frags {
					s := pre + path + q + f
					if got, want := p.CleanURL(s), p.cleanParsedURL(s); got != want {
						t.Errorf("CleanURL(%q) = %q, through url.Parse %q", s, got, want)
					}
					if got, want := Origin(s), parsedOrigin(s); got != want {
						t.Errorf("Origin(%q) = %q, through url.Parse %q", s, got, want)
					}
				}
			}
		}
	}
}

// emailLike matches what the fuzzers treat as an e-mail address.
var emailLike = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+`)

// checkNoEmailLeak fails when out contains an e-mail-like string of in.
func checkNoEmailLeak(t *testing.T, in, out string) {
	t.Helper()
	for _, e := range emailLike.FindAllString(in, -1) {
		if strings.Contains(out, e) {
			t.Fatalf("input %q: output %q still contains %q", in, out, e)
		}
	}
}

func FuzzRedactPII(f *testing.F) {
	for _, s := range []string{
		"john.doe@example.com", "john%40example.com", "%2B7%20701%20123%2045%2067",
		"Заказ ivan@mail.ru +7 701 123 45 67", "4111 1111 1111 1111", "Order 12345",
		"a%2540b.c", "%e2@b.c", "x@y.z@w.v", "100%", "",
		"ip 203.0.113.77, 2001:db8::77", "%3A%3Affff%3A1.2.3.4", "std::x 1.2.3.4.5",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := RedactPII(s)
		checkNoEmailLeak(t, s, out)
		if validEscapes(s) && !validEscapes(out) {
			t.Fatalf("RedactPII(%q) = %q broke the percent-encoding", s, out)
		}
		if again := RedactPII(out); again != out && !strings.Contains(again, Redacted) {
			t.Fatalf("RedactPII not stable: %q -> %q -> %q", s, out, again)
		}
	})
}

func FuzzCleanURL(f *testing.F) {
	for _, s := range []string{
		"https://shop.example/search?q=shoes&gclid=abc&utm_source=x&email=a%40b.c#frag",
		"/p?a=1&b=john@example.com", "https://u:p@h/x;jsessionid=1", "mailto:a@b.c",
		"#/route?email=a", "?%zz", "//a@b.c/", "http://h/a.b@c.d/x", "",
		"HTTPS://Shop.Example:8443/a;jsessionid=1/b%2Fc?x=1&s=y#t?email=a%40b.c", "https://h:/p?#",
		"/a'b(c)*!$,=:@~?q=1#f/g?h", "http://h/a[b]", "http://h/a b?c d", "http://h/#a#b", "http://h:8a/",
		"https://www.google.com/%zz", "https://h/%C3%A9t%C3%A9", "http://[::1]:80/x", "/p?%", "http://h?x",
		"a=1&&b=2&", "&q=x&a=1", "a=1&q=x", "a&b=&=c&email", "x=1&y=john%40example.com&&", "&&&",
		"EMAIL", "GClid", "ſession", "\u212aeyword", "Li_Fat_Id", "access_tokens",
	} {
		f.Add(s)
	}
	p := URLPolicy{}
	f.Fuzz(func(t *testing.T, s string) {
		out := p.CleanURL(s)
		// The byte scan that serves plain URLs agrees with url.Parse.
		if want := p.cleanParsedURL(s); out != want {
			t.Fatalf("CleanURL(%q) = %q, through url.Parse %q", s, out, want)
		}
		if got, want := Origin(s), parsedOrigin(strings.TrimSpace(s)); got != want {
			t.Fatalf("Origin(%q) = %q, through url.Parse %q", s, got, want)
		}
		for _, keep := range []bool{false, true} {
			// The default lists' look-up table matches as strings.EqualFold.
			want := matchName(s, DefaultDenyParams) || !keep && matchName(s, ClickIDParams)
			if got := (URLPolicy{KeepClickIDs: keep}).deniedName(s); got != want {
				t.Fatalf("deniedName(%q) with KeepClickIDs %v = %v, want %v", s, keep, got, want)
			}
		}
		q, ok := p.cleanQuery(s)
		if wq, wok := cleanQueryReference(p, s); q != wq || ok != wok {
			t.Fatalf("cleanQuery(%q) = %q, %v; the reference gives %q, %v", s, q, ok, wq, wok)
		}
		checkNoEmailLeak(t, s, out)
		if out == "" {
			return
		}
		if _, err := url.Parse(out); err != nil {
			t.Fatalf("CleanURL(%q) = %q, which does not parse: %v", s, out, err)
		}
		if _, err := url.Parse(s); err != nil {
			t.Fatalf("CleanURL(%q) = %q for an unparsable URL", s, out)
		}
	})
}

// ipv4Like finds dotted quads in fuzz input.
var ipv4Like = regexp.MustCompile(`\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}`)

func FuzzTruncateIPString(f *testing.F) {
	for _, s := range []string{
		"203.0.113.77", "203.0.113.77:8080", "[2001:db8::1]:443", "1.2.3.4, 5.6.7.8",
		"fe80::1%eth0", "::ffff:1.2.3.4", "unknown, 1.2.3.4", "1.2.3.4.5", "garbage",
	} {
		for n := range 5 {
			f.Add(s, n)
		}
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		out := TruncateIPString(s, n)
		if out == "" {
			return
		}
		// Every element is a canonical address, truncated at level n.
		for elem := range strings.SplitSeq(out, ",") {
			elem = strings.TrimLeft(elem, " \t")
			a, err := netip.ParseAddr(elem)
			if err != nil || a.String() != elem || a.Zone() != "" {
				t.Fatalf("TruncateIPString(%q, %d) = %q: bad element %q", s, n, out, elem)
			}
			if n != 0 && TruncateIP(a, n) != a {
				t.Fatalf("TruncateIPString(%q, %d) = %q: %q is not truncated", s, n, out, elem)
			}
		}
		if n == 0 {
			return
		}
		outAddrs := map[string]bool{}
		for elem := range strings.SplitSeq(out, ",") {
			outAddrs[strings.TrimLeft(elem, " \t")] = true
		}
		for _, m := range ipv4Like.FindAllString(s, -1) {
			a, err := netip.ParseAddr(m)
			if err != nil || TruncateIP(a, n) == a {
				continue // not an address, or one that is its own truncation
			}
			if outAddrs[a.String()] {
				t.Fatalf("TruncateIPString(%q, %d) = %q leaks %s", s, n, out, a)
			}
		}
	})
}

const benchGA4DL = "https://shop.example/catalog/running-shoes/nike-air-zoom-pegasus-41?color=black&size=42&utm_source=google&utm_medium=cpc&utm_campaign=spring_sale&gclid=Cj0KCQjw8MG1BhCoARIsAHxSiQl2N3X-abc123&_gl=1*1abcd2*_ga*MTIzNDU2Nzg5LjE3MDAwMDAwMDA.#reviews"

const benchTitle = "Nike Air Zoom Pegasus 41 — купить в интернет-магазине по цене 59 990 ₸ | Shop.example"

func BenchmarkTruncateIP(b *testing.B) {
	a4 := netip.MustParseAddr("203.0.113.77")
	a6 := netip.MustParseAddr("2001:db8:abcd:12:34:56:78:9a")
	b.ReportAllocs()
	for b.Loop() {
		_ = TruncateIP(a4, 1)
		_ = TruncateIP(a6, 1)
	}
}

func BenchmarkConsented(b *testing.B) {
	p, err := NewPseudonymizer(testKey(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Consented("shop.example", "0f8c7e6d-5b4a-4392-8170-6f5e4d3c2b1a", "analytics")
	}
}

func BenchmarkDaily(b *testing.B) {
	now := func() time.Time { return time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC) }
	p, err := NewPseudonymizer(testKey(), NewSalts(newMemStore(now), now))
	if err != nil {
		b.Fatal(err)
	}
	ua := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
	if _, err := p.Daily("shop.example", "203.0.113.77", ua, "analytics"); err != nil { // warm the salt
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Daily("shop.example", "203.0.113.77", ua, "analytics"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCleanURL(b *testing.B) {
	p := URLPolicy{}
	if got := p.CleanURL(benchGA4DL); got == "" || strings.Contains(got, "gclid") {
		b.Fatalf("CleanURL = %q", got)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = p.CleanURL(benchGA4DL)
	}
}

func BenchmarkRedactPII(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = RedactPII(benchTitle)
	}
}
