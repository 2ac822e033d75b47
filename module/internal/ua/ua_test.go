package ua

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

const (
	uaChromeWindows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
	uaFirefoxLinux  = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
	uaFirefoxUbuntu = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
	uaSafariIPhone  = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1"
	uaSafariIPad    = "Mozilla/5.0 (iPad; CPU OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1"
	uaSafariMac     = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15"
	uaChromeAndroid = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36"
	uaChromeTablet  = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
	uaSamsung       = "Mozilla/5.0 (Linux; Android 13; SM-S908B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36"
	uaEdge          = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91"
	uaChromeOS      = "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
	uaGooglebot     = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
	uaGooglebotMob  = "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.71 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
	uaBingbot       = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36"
	uaCurl          = "curl/8.5.0"
)

// garbage10K is 10 KiB of pseudo-random bytes.
var garbage10K = func() string {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 10<<10)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return string(b)
}()

// paddedChrome10K is a real User-Agent padded past MaxLen.
var paddedChrome10K = uaChromeWindows + " " + strings.Repeat("x", 10<<10)

var table = []struct {
	name string
	ua   string
	want Info
	str  string // want.String(), when checked
}{
	{"Chrome Windows", uaChromeWindows, Info{"Chrome", "120", "Windows", "desktop"}, "Chrome/120 (Windows; desktop)"},
	{"Firefox Linux", uaFirefoxLinux, Info{"Firefox", "121", "Linux", "desktop"}, "Firefox/121 (Linux; desktop)"},
	{"Firefox Ubuntu", uaFirefoxUbuntu, Info{"Firefox", "121", "Linux", "desktop"}, ""},
	{"Safari iPhone", uaSafariIPhone, Info{"Safari", "17", "iOS", "mobile"}, "Safari/17 (iOS; mobile)"},
	{"Safari iPad", uaSafariIPad, Info{"Safari", "17", "iOS", "tablet"}, "Safari/17 (iOS; tablet)"},
	{"Safari Mac", uaSafariMac, Info{"Safari", "17", "Mac OS X", "desktop"}, ""},
	{"Chrome Android phone", uaChromeAndroid, Info{"Chrome", "120", "Android", "mobile"}, "Chrome/120 (Android; mobile)"},
	{"Chrome Android tablet", uaChromeTablet, Info{"Chrome", "120", "Android", "tablet"}, ""},
	{"Samsung Internet", uaSamsung, Info{"Samsung Internet", "23", "Android", "mobile"}, "Samsung Internet/23 (Android; mobile)"},
	{"Edge", uaEdge, Info{"Edge", "120", "Windows", "desktop"}, "Edge/120 (Windows; desktop)"},
	{"Chrome OS", uaChromeOS, Info{"Chrome", "120", "Chrome OS", "desktop"}, ""},
	{"Googlebot", uaGooglebot, Info{"Googlebot", "2", "Other", "bot"}, "Googlebot/2 (Other; bot)"},
	{"Googlebot smartphone", uaGooglebotMob, Info{"Googlebot", "2", "Android", "bot"}, ""},
	{"bingbot", uaBingbot, Info{"bingbot", "2", "Other", "bot"}, ""},
	{"curl", uaCurl, Info{"curl", "8", "Other", "other"}, "curl/8 (Other; other)"},
	{"empty", "", Info{"Other", "", "Other", "other"}, "Other (Other; other)"},
	{"10 KB garbage", garbage10K, Info{"Other", "", "Other", "other"}, "Other (Other; other)"},
	{"10 KB padded Chrome (coarse)", paddedChrome10K, Info{"Chrome", "120", "Windows", "desktop"}, ""},
}

func newTest(t testing.TB, o Options) *Generalizer {
	t.Helper()
	g, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// countParses wraps g's full parse with a counter.
func countParses(g *Generalizer) *atomic.Int64 {
	var n atomic.Int64
	parse := g.parse
	g.parse = func(s string) Info {
		n.Add(1)
		return parse(s)
	}
	return &n
}

func TestGeneralizeTable(t *testing.T) {
	g := newTest(t, Options{MissBudget: -1})
	for _, tc := range table {
		t.Run(tc.name, func(t *testing.T) {
			got := g.Generalize(tc.ua)
			if got != tc.want {
				t.Errorf("Generalize = %#v, want %#v", got, tc.want)
			}
			if tc.str != "" && got.String() != tc.str {
				t.Errorf("String() = %q, want %q", got.String(), tc.str)
			}
			checkInfo(t, tc.ua, got)
			// Same answer from the cache.
			if again := g.Generalize(tc.ua); again != got {
				t.Errorf("second call = %#v, want %#v", again, got)
			}
		})
	}
	hits, misses, coarse := g.Stats()
	if coarse != 4 { // two 10 KB inputs, twice each
		t.Errorf("coarse = %d, want 4", coarse)
	}
	if want := uint64(len(table) - 2); misses != want || hits != want {
		t.Errorf("hits, misses = %d, %d; want %d, %d", hits, misses, want, want)
	}
}

// checkInfo asserts the invariants every answer must satisfy.
func checkInfo(t testing.TB, ua string, got Info) {
	t.Helper()
	if token(got.Family) != got.Family {
		t.Errorf("Family %q is not a short token", got.Family)
	}
	if token(got.OS) != got.OS {
		t.Errorf("OS %q is not a short token", got.OS)
	}
	if got.Major != "" && major(got.Major) != got.Major {
		t.Errorf("Major %q is not a short number", got.Major)
	}
	switch got.Device {
	case devDesktop, devMobile, devTablet, devBot, devOther:
	default:
		t.Errorf("Device %q is not a device class", got.Device)
	}
	if len(ua) > maxTokenLen {
		if s := got.String(); s == ua || got.Family == ua || got.OS == ua || strings.Contains(s, ua) {
			t.Errorf("output %q leaks the input", s)
		}
	}
}

func TestCoarseMatchesFullParseOnCommonUAs(t *testing.T) {
	// The heuristic is coarser, but should agree on the mainstream cases.
	for _, tc := range []struct {
		ua   string
		want Info
	}{
		{uaChromeWindows, Info{"Chrome", "120", "Windows", "desktop"}},
		{uaFirefoxLinux, Info{"Firefox", "121", "Linux", "desktop"}},
		{uaSafariIPhone, Info{"Safari", "17", "iOS", "mobile"}},
		{uaSafariIPad, Info{"Safari", "17", "iOS", "tablet"}},
		{uaSafariMac, Info{"Safari", "17", "Mac OS X", "desktop"}},
		{uaChromeAndroid, Info{"Chrome", "120", "Android", "mobile"}},
		{uaChromeTablet, Info{"Chrome", "120", "Android", "tablet"}},
		{uaSamsung, Info{"Chrome", "115", "Android", "mobile"}}, // coarse: Samsung looks like Chrome
		{uaEdge, Info{"Edge", "120", "Windows", "desktop"}},
		{uaGooglebot, Info{"Other", "", "Other", "bot"}},
		{uaGooglebotMob, Info{"Chrome", "120", "Android", "bot"}},
		{uaCurl, Info{"Other", "", "Other", "other"}},
		{"", Info{"Other", "", "Other", "other"}},
		{"Some-Crawler/1.0", Info{"Other", "", "Other", "bot"}},
		{"MySPIDER", Info{"Other", "", "Other", "bot"}},
	} {
		if got := coarse(tc.ua); got != tc.want {
			t.Errorf("coarse(%.40q) = %#v, want %#v", tc.ua, got, tc.want)
		}
	}
}

func TestCacheHit(t *testing.T) {
	g := newTest(t, Options{MissBudget: -1})
	parses := countParses(g)
	first := g.Generalize(uaChromeWindows)
	if hits, misses, coarse := g.Stats(); hits != 0 || misses != 1 || coarse != 0 {
		t.Fatalf("after first call: hits, misses, coarse = %d, %d, %d; want 0, 1, 0", hits, misses, coarse)
	}
	for range 3 {
		if got := g.Generalize(uaChromeWindows); got != first {
			t.Fatalf("cached answer %#v differs from %#v", got, first)
		}
	}
	if hits, misses, _ := g.Stats(); hits != 3 || misses != 1 {
		t.Fatalf("hits, misses = %d, %d; want 3, 1", hits, misses)
	}
	if n := parses.Load(); n != 1 {
		t.Fatalf("parser called %d times, want 1", n)
	}
	// A different string, even one that generalises the same, is a miss.
	g.Generalize(uaChromeWindows + " ")
	if _, misses, _ := g.Stats(); misses != 2 {
		t.Fatalf("misses = %d, want 2", misses)
	}
}

func TestCacheHitDoesNotAllocate(t *testing.T) {
	g := newTest(t, Options{})
	g.Generalize(uaSafariIPhone)
	if n := testing.AllocsPerRun(1000, func() { g.Generalize(uaSafariIPhone) }); n != 0 {
		t.Fatalf("cache hit allocates %v times", n)
	}
}

func TestLRUEviction(t *testing.T) {
	c := newLRU(3)
	for i := range 5 {
		c.add(strconv.Itoa(i), Info{Family: strconv.Itoa(i)})
	}
	if c.len() != 3 {
		t.Fatalf("len = %d, want 3", c.len())
	}
	for i, want := range []bool{false, false, true, true, true} {
		if _, ok := c.get(strconv.Itoa(i)); ok != want {
			t.Errorf("get(%d) present = %v, want %v", i, ok, want)
		}
	}
	// Touch 2, add 5: 3 is now the least recently used and goes.
	c.get("2")
	c.add("5", Info{})
	if _, ok := c.get("3"); ok {
		t.Error("3 should have been evicted")
	}
	if _, ok := c.get("2"); !ok {
		t.Error("2 should have survived")
	}

	big := newLRU(10000)
	if len(big.shards) != maxShards {
		t.Errorf("shards = %d, want %d", len(big.shards), maxShards)
	}
	for i := range 30000 {
		big.add(strconv.Itoa(i), Info{})
	}
	if n := big.len(); n > 10000+maxShards || n < 9000 {
		t.Errorf("len = %d, over capacity", n)
	}
}

func TestMissBudget(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	const budget = 5
	g := newTest(t, Options{MissBudget: budget, Now: clock})
	parses := countParses(g)
	unique := func(i int) string { return uaChromeWindows + " n/" + strconv.Itoa(i) }

	for i := range budget {
		if got := g.Generalize(unique(i)); got.Family != "Chrome" || got.Device != "desktop" {
			t.Fatalf("within budget: %#v", got)
		}
	}
	if hits, misses, coarse := g.Stats(); hits != 0 || misses != budget || coarse != 0 {
		t.Fatalf("hits, misses, coarse = %d, %d, %d; want 0, %d, 0", hits, misses, coarse, budget)
	}

	// Budget exhausted: answers come from the heuristic, the parser is not called.
	for i := budget; i < 3*budget; i++ {
		got := g.Generalize(unique(i))
		if want := (Info{"Chrome", "120", "Windows", "desktop"}); got != want {
			t.Fatalf("over budget: %#v, want %#v", got, want)
		}
	}
	// Coarse answers are not cached: asking again is coarse again.
	g.Generalize(unique(budget))
	_, misses, coarse := g.Stats()
	if misses != budget || coarse != 2*budget+1 {
		t.Fatalf("misses, coarse = %d, %d; want %d, %d", misses, coarse, budget, 2*budget+1)
	}
	if n := parses.Load(); n != budget {
		t.Fatalf("parser called %d times, want %d", n, budget)
	}
	// Cached entries still answer while over budget.
	g.Generalize(unique(0))
	if hits, _, _ := g.Stats(); hits != 1 {
		t.Fatalf("hits = %d, want 1", hits)
	}

	// Half a second refills half the budget.
	now = now.Add(500 * time.Millisecond)
	for i := 100; i < 100+budget; i++ {
		g.Generalize(unique(i))
	}
	if n := parses.Load(); n != budget+budget/2 {
		t.Fatalf("after 0.5 s: parser called %d times, want %d", n, budget+budget/2)
	}

	// A full second refills the whole budget, and no more.
	now = now.Add(10 * time.Second)
	for i := 200; i < 200+2*budget; i++ {
		g.Generalize(unique(i))
	}
	if n := parses.Load(); n != 2*budget+budget/2 {
		t.Fatalf("after refill: parser called %d times, want %d", n, 2*budget+budget/2)
	}
	// The string that got a coarse answer earlier now gets parsed.
	now = now.Add(time.Second)
	g.Generalize(unique(budget))
	if n := parses.Load(); n != 2*budget+budget/2+1 {
		t.Fatalf("parser called %d times, want %d", n, 2*budget+budget/2+1)
	}
}

// TestSlowParsesCostMore checks that the budget is charged by parse time: a
// parse taking 9 ms (on the injected clock) costs 1+4 tokens.
func TestSlowParsesCostMore(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	g := newTest(t, Options{MissBudget: 10, Now: func() time.Time { return now }})
	parses := countParses(g)
	parse := g.parse
	g.parse = func(s string) Info {
		now = now.Add(9 * time.Millisecond)
		return parse(s)
	}
	for i := range 10 {
		g.Generalize(uaCurl + "/" + strconv.Itoa(i))
	}
	// 10 tokens: 10-5 = 5, +0.09 refill, -5 = 0.09, +0.09 refill: empty.
	if n := parses.Load(); n != 2 {
		t.Fatalf("parser called %d times, want 2", n)
	}
	if _, misses, coarse := g.Stats(); misses != 2 || coarse != 8 {
		t.Fatalf("misses, coarse = %d, %d; want 2, 8", misses, coarse)
	}
	// Debt is capped at one second's worth: after a 1 s parse, two seconds
	// refill the bucket completely.
	g.parse = func(s string) Info {
		now = now.Add(time.Second)
		return parse(s)
	}
	now = now.Add(time.Second)
	g.Generalize(uaCurl + "/slow")
	if g.budget.tokens != -10 {
		t.Fatalf("tokens = %v after a 1 s parse, want -10", g.budget.tokens)
	}
	now = now.Add(time.Second)
	if !g.budget.available() {
		t.Fatal("budget should be back to full two seconds later")
	}
}

func TestClockGoingBackwards(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	b := newBucket(2, func() time.Time { return now })
	if !b.take() || !b.take() || b.take() {
		t.Fatal("fresh bucket should hold exactly 2 tokens")
	}
	now = now.Add(-time.Hour)
	if b.take() {
		t.Fatal("going back in time must not refill")
	}
	now = now.Add(time.Second)
	if !b.take() || !b.take() || b.take() {
		t.Fatal("a second after the jump should refill exactly 2 tokens")
	}
}

func TestTooLongIsCoarseAndNotCached(t *testing.T) {
	g := newTest(t, Options{MaxLen: 64, MissBudget: -1})
	parses := countParses(g)
	for range 3 {
		if got := g.Generalize(uaChromeWindows); got != (Info{"Chrome", "120", "Windows", "desktop"}) {
			t.Fatalf("got %#v", got)
		}
	}
	if hits, misses, coarse := g.Stats(); hits != 0 || misses != 0 || coarse != 3 {
		t.Fatalf("hits, misses, coarse = %d, %d, %d; want 0, 0, 3", hits, misses, coarse)
	}
	if parses.Load() != 0 || g.cache.len() != 0 {
		t.Fatal("a too-long UA reached the parser or the cache")
	}
}

func TestNewOptions(t *testing.T) {
	if _, err := New(Options{MaxLen: -1}); err == nil {
		t.Error("MaxLen -1 accepted")
	}
	if _, err := New(Options{MaxLen: 1 << 20}); err == nil {
		t.Error("MaxLen 1 MiB accepted")
	}
	g := newTest(t, Options{CacheSize: -1, MissBudget: -1})
	if g.cache != nil || g.budget != nil {
		t.Fatal("negative CacheSize/MissBudget should disable cache/budget")
	}
	g.Generalize(uaCurl)
	g.Generalize(uaCurl)
	if hits, misses, _ := g.Stats(); hits != 0 || misses != 2 {
		t.Fatalf("without cache: hits, misses = %d, %d; want 0, 2", hits, misses)
	}
	d := newTest(t, Options{})
	if d.maxLen != defaultMaxLen || d.budget == nil || d.budget.rate != defaultMissBudget {
		t.Fatal("defaults not applied")
	}
	if n := len(d.cache.shards) * d.cache.shards[0].max; n < defaultCacheSize || n > defaultCacheSize+maxShards {
		t.Fatalf("cache capacity %d, want about %d", n, defaultCacheSize)
	}
}

// TestSingleflight runs in a synctest bubble so that "every goroutine is
// waiting on the parse" is an observable state rather than a sleep.
func TestSingleflight(t *testing.T) {
	if _, err := sharedEngine(); err != nil {
		t.Fatal(err)
	}
	for _, cacheSize := range []int{0, -1} { // with and without the cache
		t.Run("cache="+strconv.Itoa(cacheSize), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newTest(t, Options{CacheSize: cacheSize, MissBudget: -1})
				parse := g.parse
				release := make(chan struct{})
				var parses atomic.Int64
				g.parse = func(s string) Info {
					parses.Add(1)
					<-release
					return parse(s)
				}
				const n = 64
				ua := uaSafariIPhone + " unique/1"
				results := make([]Info, n)
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() { results[i] = g.Generalize(ua) })
				}
				synctest.Wait() // all 64 are blocked: one in the parse, 63 on its result
				close(release)
				wg.Wait()
				if p := parses.Load(); p != 1 {
					t.Fatalf("parser called %d times, want 1", p)
				}
				hits, misses, coarse := g.Stats()
				if hits != n-1 || misses != 1 || coarse != 0 {
					t.Fatalf("hits, misses, coarse = %d, %d, %d; want %d, 1, 0", hits, misses, coarse, n-1)
				}
				for _, r := range results {
					if r != (Info{"Safari", "17", "iOS", "mobile"}) {
						t.Fatalf("result %#v", r)
					}
				}
			})
		})
	}
}

// TestConcurrentSameNewUA exercises the real parser and cache from many
// goroutines (run with -race): however they interleave, one parse happens.
func TestConcurrentSameNewUA(t *testing.T) {
	g := newTest(t, Options{MissBudget: -1})
	const n = 200
	ua := uaSamsung + " unique/2"
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			if got := g.Generalize(ua); got.Family != "Samsung Internet" {
				t.Errorf("got %#v", got)
			}
		})
	}
	close(start)
	wg.Wait()
	if hits, misses, coarse := g.Stats(); misses != 1 || hits != n-1 || coarse != 0 {
		t.Fatalf("hits, misses, coarse = %d, %d, %d; want %d, 1, 0", hits, misses, coarse, n-1)
	}
}

// TestConcurrentMixed hammers hits, misses, the budget and eviction at once.
func TestConcurrentMixed(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	g := newTest(t, Options{CacheSize: 50, MissBudget: 20, Now: func() time.Time { return now }})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				var s string
				switch i % 3 {
				case 0:
					s = table[i%len(table)].ua
				case 1:
					s = uaEdge + " w" + strconv.Itoa(w) + "/" + strconv.Itoa(i)
				default:
					s = uaCurl
				}
				checkInfo(t, s, g.Generalize(s))
			}
		})
	}
	wg.Wait()
	hits, misses, coarse := g.Stats()
	if hits+misses+coarse != 8*200 {
		t.Fatalf("hits+misses+coarse = %d, want %d", hits+misses+coarse, 8*200)
	}
	if misses > 20 {
		t.Fatalf("misses = %d, over the budget of 20", misses)
	}
}

func TestInfoString(t *testing.T) {
	for _, tc := range []struct {
		in   Info
		want string
	}{
		{Info{"Chrome", "120", "Windows", "desktop"}, "Chrome/120 (Windows; desktop)"},
		{Info{"curl", "", "Other", "other"}, "curl (Other; other)"},
		{Info{}, "Other (Other; other)"},
	} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestFromClientHints(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		secCHUA, plat, mobile string
		want                  Info
		ok                    bool
	}{
		{"Chrome Windows", `"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"`, `"Windows"`, "?0",
			Info{"Chrome", "124", "Windows", "desktop"}, true},
		{"Edge macOS", `"Microsoft Edge";v="124", "Chromium";v="124", "Not-A.Brand";v="99"`, `"macOS"`, "?0",
			Info{"Edge", "124", "Mac OS X", "desktop"}, true},
		{"Chrome Android phone", `"Google Chrome";v="124", "Chromium";v="124", "Not.A/Brand";v="24"`, `"Android"`, "?1",
			Info{"Chrome", "124", "Android", "mobile"}, true},
		{"Chrome Android tablet", `"Google Chrome";v="124", "Chromium";v="124", "Not.A/Brand";v="24"`, `"Android"`, "?0",
			Info{"Chrome", "124", "Android", "tablet"}, true},
		{"Chromium only, Linux", `"Chromium";v="118", "Not=A?Brand";v="8"`, `"Linux"`, "?0",
			Info{"Chromium", "118", "Linux", "desktop"}, true},
		{"Samsung", `"Samsung Internet";v="23.0", "Chromium";v="115", "Not/A)Brand";v="99"`, `"Android"`, "?1",
			Info{"Samsung Internet", "23", "Android", "mobile"}, true},
		{"GREASE with semicolon and comma-ish chars", `" Not;A Brand";v="99", "Google Chrome";v="97", "Chromium";v="97"`, `"Chrome OS"`, "?0",
			Info{"Chrome", "97", "Chrome OS", "desktop"}, true},
		{"full version list", `"Google Chrome";v="124.0.6367.91", "Chromium";v="124.0.6367.91"`, `"Windows"`, "?0",
			Info{"Chrome", "124", "Windows", "desktop"}, true},
		{"unknown brand wins over Chrome", `"Foo Browser";v="3", "Chromium";v="120", "Not?A_Brand";v="8"`, `"Windows"`, "?0",
			Info{"Foo Browser", "3", "Windows", "desktop"}, true},
		{"headless", `"HeadlessChrome";v="124", "Chromium";v="124"`, `"Linux"`, "?0",
			Info{"HeadlessChrome", "124", "Linux", "bot"}, true},
		{"OWS and bare platform", `  "Google Chrome" ; v="124" ,"Chromium";v="124"  `, `Windows`, " ?0 ",
			Info{"Chrome", "124", "Windows", "desktop"}, true},
		{"only GREASE", `"Not-A.Brand";v="99"`, `"Windows"`, "?0", Info{"Other", "", "Windows", "desktop"}, false},
		{"empty", "", "", "", Info{"Other", "", "Other", "other"}, false},
		{"malformed", `Google Chrome;v=124`, `"Windows"`, "?0", Info{"Other", "", "Windows", "desktop"}, false},
		{"unterminated", `"Google Chrome;v="124"`, `"Windows"`, "?0", Info{"Other", "", "Windows", "desktop"}, false},
		{"long brand is not echoed", `"` + strings.Repeat("A", 100) + `";v="1"`, `"` + strings.Repeat("B", 100) + `"`, "?0",
			Info{"Other", "", "Other", "other"}, false},
		{"oversized", `"Google Chrome";v="124", ` + strings.Repeat(`"x";v="1", `, 100), `"Windows"`, "?0",
			Info{"Other", "", "Windows", "desktop"}, false},
		{"bad version", `"Google Chrome";v="12345678901"`, `"Windows"`, "?0", Info{"Chrome", "", "Windows", "desktop"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := FromClientHints(tc.secCHUA, tc.plat, tc.mobile)
			if got != tc.want || ok != tc.ok {
				t.Errorf("FromClientHints = %#v, %v; want %#v, %v", got, ok, tc.want, tc.ok)
			}
			checkInfo(t, tc.secCHUA, got)
		})
	}
}

var fuzzGen = sync.OnceValue(func() *Generalizer {
	g, err := New(Options{MissBudget: -1, CacheSize: 1000})
	if err != nil {
		panic(err)
	}
	return g
})

func FuzzGeneralize(f *testing.F) {
	for _, tc := range table {
		if len(tc.ua) <= 1024 {
			f.Add(tc.ua)
		}
	}
	f.Add(`"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"`)
	f.Add(strings.Repeat("Mozilla/5.0 ", 50))
	f.Add("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36")
	f.Add("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0")
	f.Fuzz(func(t *testing.T, s string) {
		g := fuzzGen()
		checkInfo(t, s, g.Generalize(s))
		checkInfo(t, s, coarse(s))
		info, _ := FromClientHints(s, s, s)
		checkInfo(t, s, info)
	})
}

var benchUAs = []string{uaChromeWindows, uaFirefoxLinux, uaSafariIPhone, uaSafariIPad, uaChromeAndroid, uaSamsung, uaEdge, uaGooglebot, uaSafariMac, uaCurl}

func BenchmarkGeneralizeHit(b *testing.B) {
	g := newTest(b, Options{})
	for _, s := range benchUAs {
		g.Generalize(s)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		g.Generalize(benchUAs[i%len(benchUAs)])
		i++
	}
	if _, misses, _ := g.Stats(); misses != uint64(len(benchUAs)) {
		b.Fatalf("misses = %d during a warm-cache benchmark", misses)
	}
}

func BenchmarkGeneralizeHitParallel(b *testing.B) {
	g := newTest(b, Options{})
	for _, s := range benchUAs {
		g.Generalize(s)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			g.Generalize(benchUAs[i%len(benchUAs)])
			i++
		}
	})
}

// uniqueUA returns a distinct, realistic User-Agent for each i (building it
// costs one allocation, which the benchmarks below include).
func uniqueUA(buf []byte, i int) string {
	buf = append(buf[:0], benchUAs[i%len(benchUAs)]...)
	buf = append(buf, " id/"...)
	buf = strconv.AppendInt(buf, int64(i), 10)
	return string(buf)
}

func BenchmarkGeneralizeMiss(b *testing.B) {
	g := newTest(b, Options{MissBudget: -1})
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		g.Generalize(uniqueUA(buf, i))
		i++
	}
	if _, misses, coarse := g.Stats(); coarse != 0 || misses != uint64(i) {
		b.Fatalf("misses, coarse = %d, %d after %d unique UAs", misses, coarse, i)
	}
}

// BenchmarkGeneralizeMissCrafted parses unique User-Agents of MaxLen bytes
// built to be slow for uap-go's regexes (the reason the budget charges by
// parse time).
func BenchmarkGeneralizeMissCrafted(b *testing.B) {
	g := newTest(b, Options{MissBudget: -1})
	crafted := []string{
		strings.Repeat("; ", 256),
		strings.Repeat("(a; b) ", 73),
		strings.Repeat("Ab1 ;/()._-xY", 40),
	}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		buf = append(strconv.AppendInt(buf[:0], int64(i), 10), crafted[i%len(crafted)]...)
		g.Generalize(string(buf[:defaultMaxLen]))
		i++
	}
	if _, misses, _ := g.Stats(); misses != uint64(i) {
		b.Fatalf("misses = %d after %d unique UAs", misses, i)
	}
}

// BenchmarkUniqueUAFlood is an attacker sending a new User-Agent with every
// request against the default options: beyond 200 parses a second the
// answers are coarse, so the average cost per call stays low.
func BenchmarkUniqueUAFlood(b *testing.B) {
	g := newTest(b, Options{})
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	i := 0
	start := time.Now()
	for b.Loop() {
		g.Generalize(uniqueUA(buf, i))
		i++
	}
	elapsed := time.Since(start)
	_, misses, coarse := g.Stats()
	b.ReportMetric(float64(misses)/elapsed.Seconds(), "parses/s")
	b.ReportMetric(float64(coarse)/float64(i), "coarse/op")
}

// BenchmarkGeneralizeOverBudget is the steady state of a flood once the
// budget is spent: every call takes the coarse path (frozen clock).
func BenchmarkGeneralizeOverBudget(b *testing.B) {
	now := time.Unix(1_700_000_000, 0)
	g := newTest(b, Options{MissBudget: 1, Now: func() time.Time { return now }})
	g.Generalize("spend the budget")
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		g.Generalize(uniqueUA(buf, i))
		i++
	}
	if _, misses, _ := g.Stats(); misses != 1 {
		b.Fatalf("misses = %d, want 1", misses)
	}
}

func BenchmarkCoarse(b *testing.B) {
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		coarse(benchUAs[i%len(benchUAs)])
		i++
	}
}
