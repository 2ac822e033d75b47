package policy

import (
	"bytes"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"testing"
)

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		// exact
		{"_ga", "_ga", true},
		{"_ga", "_gab", false},
		{"_ga", "_g", false},
		{"_ga", "", false},
		{"", "", true},
		{"", "a", false},
		{"_GA", "_ga", false},
		// prefix*
		{"_ga_*", "_ga_XYZ", true},
		{"_ga_*", "_ga_", true},
		{"_ga_*", "_ga", false},
		{"_ga_*", "_gat_1", false},
		{"_ga_*", "x_ga_1", false},
		// *suffix
		{"*_mixpanel", "mp_abc_mixpanel", true},
		{"*_mixpanel", "_mixpanel", true},
		{"*_mixpanel", "mixpanel", false},
		{"*_mixpanel", "_mixpanelx", false},
		// infix
		{"mp_*_mixpanel", "mp_abc_mixpanel", true},
		{"mp_*_mixpanel", "mp__mixpanel", true},
		{"mp_*_mixpanel", "mp_mixpanel", false}, // prefix and suffix overlap
		{"_pk_id.*", "_pk_id.1.abcd", true},
		{"_pk_id.*", "_pk_idX1", false}, // '.' is literal
		// a*b*c
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "abbbccc", true},
		{"a*b*c", "acb", false},
		{"a*b*c", "ab", false},
		{"a*b*c", "abcx", false},
		{"a*b*c", "xabc", false},
		{"a*b*c", "ac", false},
		// '*' matches everything, including ""
		{"*", "", true},
		{"*", "anything at all", true},
		{"*", "*", true},
		{"**", "", true},
		{"**", "abc", true},
		{"a**b", "ab", true},
		{"*a*", "", false},
		{"*a*", "bab", true},
		// overlapping segments
		{"a*a", "a", false},
		{"a*a", "aa", true},
		{"a*a", "aba", true},
		{"a*a", "ab", false},
		{"aa*aa", "aaa", false},
		{"aa*aa", "aaaa", true},
		{"*aa*aa", "aaa", false},
		{"*aa*aa", "aaaa", true},
		{"a*ab*b", "aab", false},
		{"a*ab*b", "aabb", true},
		{"*ab*ab", "abab", true},
		{"*ab*ab", "aba", false},
		{"*a*b*a", "aba", true},
		{"*a*b*a", "ab", false},
		{"_ga_*", "_ga", false},
		{"_ga_*", "_ga_XYZ", true},
		// a literal '*' in the name only matches a '*' in the pattern
		{"a", "*", false},
		{"a*", "a*", true},
		// bytes, not runes
		{"é*", "éa", true},
		{"*\xff", "a\xff", true},
		{"\xc3*", "é", true}, // first byte of 'é'
		{"\ufffd", "\xff", false},
		{"a\nb*", "a\nbc", true},
	}
	for _, tt := range tests {
		if got := Glob(tt.pattern, tt.name); got != tt.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
		if got := refGlob(tt.pattern, tt.name); got != tt.want {
			t.Errorf("reference glob(%q, %q) = %v, want %v (bad test case?)", tt.pattern, tt.name, got, tt.want)
		}
	}
}

// bytesAsRunes maps every byte of s to the rune with the same value, so that
// the regexp package, which works on UTF-8 runes and decodes each invalid
// byte as U+FFFD, matches byte for byte like Glob does.
func bytesAsRunes(s string) string {
	var b strings.Builder
	b.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		b.WriteRune(rune(s[i]))
	}
	return b.String()
}

// refGlob is a reference implementation of Glob using regexp.
func refGlob(pattern, name string) bool {
	segs := strings.Split(bytesAsRunes(pattern), "*")
	for i, s := range segs {
		segs[i] = regexp.QuoteMeta(s)
	}
	re := regexp.MustCompile(`(?s)^` + strings.Join(segs, ".*") + `$`)
	return re.MatchString(bytesAsRunes(name))
}

func FuzzGlob(f *testing.F) {
	seeds := [][2]string{
		{"", ""},
		{"", "a"},
		{"*", ""},
		{"*", "abc"},
		{"**", "a"},
		{"a*a", "a"},
		{"a*a", "aa"},
		{"aa*aa", "aaa"},
		{"*aa*aa", "aaaa"},
		{"a*b*c", "abc"},
		{"a*b*c", "acb"},
		{"_ga_*", "_ga"},
		{"_ga_*", "_ga_XYZ"},
		{"mp_*_mixpanel", "mp_mixpanel"},
		{"mp_*_mixpanel", "mp_abc_mixpanel"},
		{"_pk_id.*", "_pk_id.1.abcd"},
		{"*ab*ab", "abab"},
		{"a.b", "axb"},
		{"(a|b)*", "a"},
		{"[a]*", "[a]"},
		{"a\nb*", "a\nbc"},
		{"*\n", "\n"},
		{"é*", "éa"},
		{"\xff*", "\xff\xfe"},
		{"\ufffd", "\xff"},
		{"\xc3*", "é"},
		{"a*", "*"},
		{"\\*", "\\x"},
		{"$*^", "$^"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		// The regexp reference costs O(len(pattern) * len(name)); bound the
		// sizes (well beyond real cookie names) to keep fuzzing fast.
		if len(pattern) > 64 || len(name) > 256 {
			return
		}
		got := Glob(pattern, name)
		want := refGlob(pattern, name)
		if got != want {
			t.Fatalf("Glob(%q, %q) = %v, reference says %v", pattern, name, got, want)
		}
	})
}

func categoryIndex(t testing.TB, cats []Category, name string) int {
	t.Helper()
	for i, c := range cats {
		if c.Name == name {
			return i
		}
	}
	t.Fatalf("no category %q", name)
	return -1
}

func TestClassifierCatalog(t *testing.T) {
	cats := DefaultCategories()
	c, err := NewClassifier(cats, nil, nil, Catalog())
	if err != nil {
		t.Fatalf("NewClassifier: %v", err)
	}
	tests := []struct {
		cookie, category, service string
	}{
		{"_ga", Analytics, "google-analytics"},
		{"_ga_ABC123", Analytics, "google-analytics"},
		{"_gid", Analytics, "google-analytics"},
		{"_gat_UA-1234-1", Analytics, "google-analytics"},
		{"_dc_gtm_UA-1", Analytics, "google-tag-manager"},
		{"_fbp", Marketing, "meta-pixel"},
		{"_fbc", Marketing, "meta-pixel"},
		{"_ym_uid", Analytics, "yandex-metrica"},
		{"_ym_something", Analytics, "yandex-metrica"},
		{"_hjSessionUser_1", Analytics, "hotjar"},
		{"_hjSession_123", Analytics, "hotjar"},
		{"_hjWhatever", Analytics, "hotjar"},
		{"_clck", Analytics, "microsoft-clarity"},
		{"_uetsid", Marketing, "microsoft-ads"},
		{"_pk_id.1.abcd", Analytics, "matomo"},
		{"_pk_ses.1.abcd", Analytics, "matomo"},
		{"mp_abc_mixpanel", Analytics, "mixpanel"},
		{"mp_other", Analytics, "mixpanel"},
		{"__hstc", Marketing, "hubspot"},
		{"__hs_opt_out", Marketing, "hubspot"},
		{"li_fat_id", Marketing, "linkedin-insight"},
		{"_ttp", Marketing, "tiktok-pixel"},
		{"ttcsid_ABC", Marketing, "tiktok-pixel"},
		{"_gcl_au", Marketing, "google-ads"},
		{"_gcl_xyz", Marketing, "google-ads"},
		{"personalization_id", Marketing, "x-pixel"},
	}
	for _, tt := range tests {
		i, svc := c.Classify(tt.cookie)
		want := categoryIndex(t, cats, tt.category)
		if i != want || svc != tt.service {
			t.Errorf("Classify(%q) = (%d, %q), want (%d %s, %q)", tt.cookie, i, svc, want, tt.category, tt.service)
		}
	}

	for _, name := range []string{"", "PHPSESSID", "session", "consentgate", "_g", "_gax", "mp", "_pk_id", "_h", "GA", "_GA", "_ga "} {
		if i, svc := c.Classify(name); i != Unclassified || svc != "" {
			t.Errorf("Classify(%q) = (%d, %q), want (Unclassified, \"\")", name, i, svc)
		}
	}
}

func TestClassifierPrecedence(t *testing.T) {
	cats := DefaultCategories()
	pref := categoryIndex(t, cats, Preferences)
	analytics := categoryIndex(t, cats, Analytics)
	marketing := categoryIndex(t, cats, Marketing)
	necessary := categoryIndex(t, cats, Necessary)

	type want struct {
		cookie   string
		category int
		service  string
	}
	tests := []struct {
		name     string
		site     []CookieRule
		services []Service
		want     []want
	}{
		{
			name: "site pattern beats catalog exact and service exact",
			site: []CookieRule{{Pattern: "_ga*", Category: Preferences}},
			services: []Service{{
				Name: "my-ga", Category: Marketing, Cookies: []string{"_ga", "_ga_*"},
			}},
			want: []want{
				{"_ga", pref, ""},
				{"_ga_ABC123", pref, ""},
				{"_gat", pref, ""},
				{"_gid", analytics, "google-analytics"}, // not covered by the site rule
			},
		},
		{
			name: "site exact beats catalog exact",
			site: []CookieRule{{Pattern: "_fbp", Category: Necessary}},
			want: []want{
				{"_fbp", necessary, ""},
				{"_fbc", marketing, "meta-pixel"},
			},
		},
		{
			name: "service pattern beats catalog exact",
			services: []Service{{
				Name: "own-pixel", Category: Analytics, Cookies: []string{"_fb*"},
			}},
			want: []want{
				{"_fbp", analytics, "own-pixel"},
				{"_fbc", analytics, "own-pixel"},
				{"fr", marketing, "meta-pixel"},
			},
		},
		{
			name: "service exact beats catalog exact and pattern",
			services: []Service{{
				Name: "my-ga", Category: Marketing, Cookies: []string{"_ga", "_ga_X"},
			}},
			want: []want{
				{"_ga", marketing, "my-ga"},
				{"_ga_X", marketing, "my-ga"},
				{"_ga_Y", analytics, "google-analytics"},
			},
		},
		{
			name: "within a tier exact beats pattern regardless of order",
			site: []CookieRule{
				{Pattern: "sess*", Category: Preferences},
				{Pattern: "session", Category: Necessary},
			},
			want: []want{
				{"session", necessary, ""},
				{"sessionx", pref, ""},
			},
		},
		{
			name: "within a tier the first pattern wins",
			site: []CookieRule{
				{Pattern: "a*", Category: Analytics},
				{Pattern: "ab*", Category: Marketing},
			},
			want: []want{
				{"abc", analytics, ""},
				{"a", analytics, ""},
			},
		},
		{
			name: "within a tier the first duplicate exact name wins",
			site: []CookieRule{
				{Pattern: "x", Category: Analytics},
				{Pattern: "x", Category: Marketing},
			},
			services: []Service{
				{Name: "one", Category: Preferences, Cookies: []string{"y"}},
				{Name: "two", Category: Marketing, Cookies: []string{"y"}},
			},
			want: []want{
				{"x", analytics, ""},
				{"y", pref, "one"},
			},
		},
		{
			name: "site pattern beats service pattern",
			site: []CookieRule{{Pattern: "own_*", Category: Necessary}},
			services: []Service{{
				Name: "own", Category: Marketing, Cookies: []string{"own_*", "own"},
			}},
			want: []want{
				{"own_1", necessary, ""},
				{"own", marketing, "own"},
				{"other", Unclassified, ""},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClassifier(cats, tt.site, tt.services, Catalog())
			if err != nil {
				t.Fatalf("NewClassifier: %v", err)
			}
			for _, w := range tt.want {
				i, svc := c.Classify(w.cookie)
				if i != w.category || svc != w.service {
					t.Errorf("Classify(%q) = (%d, %q), want (%d, %q)", w.cookie, i, svc, w.category, w.service)
				}
			}
		})
	}
}

func TestClassifierOrphan(t *testing.T) {
	cats := []Category{{Name: Necessary, Required: true}, {Name: Analytics}}
	c, err := NewClassifier(cats, nil, nil, Catalog())
	if err != nil {
		t.Fatalf("NewClassifier with a category missing from the catalog: %v", err)
	}
	tests := []struct {
		cookie   string
		category int
		service  string
	}{
		{"_fbp", Orphan, "meta-pixel"},
		{"_gcl_xyz", Orphan, "google-ads"}, // pattern
		{"_ga", 1, "google-analytics"},
		{"_pk_id.1.abcd", 1, "matomo"},
		{"PHPSESSID", Unclassified, ""},
	}
	for _, tt := range tests {
		i, svc := c.Classify(tt.cookie)
		if i != tt.category || svc != tt.service {
			t.Errorf("Classify(%q) = (%d, %q), want (%d, %q)", tt.cookie, i, svc, tt.category, tt.service)
		}
	}
}

func TestNewClassifierErrors(t *testing.T) {
	cats := DefaultCategories()
	tests := []struct {
		name     string
		site     []CookieRule
		services []Service
		catalog  []Service
		wantErr  string
	}{
		{name: "site rule unknown category", site: []CookieRule{{Pattern: "x", Category: "ads"}}, wantErr: `unknown category "ads"`},
		{name: "site rule empty category", site: []CookieRule{{Pattern: "x"}}, wantErr: "unknown category"},
		{name: "site rule empty pattern", site: []CookieRule{{Pattern: "", Category: Analytics}}, wantErr: "invalid cookie pattern"},
		{name: "site rule space", site: []CookieRule{{Pattern: "a b", Category: Analytics}}, wantErr: "invalid cookie pattern"},
		{name: "site rule semicolon", site: []CookieRule{{Pattern: "a;b", Category: Analytics}}, wantErr: "invalid cookie pattern"},
		{name: "site rule equals", site: []CookieRule{{Pattern: "a=b", Category: Analytics}}, wantErr: "invalid cookie pattern"},
		{name: "site rule comma", site: []CookieRule{{Pattern: "a,b", Category: Analytics}}, wantErr: "invalid cookie pattern"},
		{name: "site rule tab", site: []CookieRule{{Pattern: "a\tb", Category: Analytics}}, wantErr: "invalid cookie pattern"},
		{name: "site rule quote", site: []CookieRule{{Pattern: `a"b`, Category: Analytics}}, wantErr: "invalid cookie pattern"},
		{name: "site rule pattern with space", site: []CookieRule{{Pattern: "_ga *", Category: Analytics}}, wantErr: "invalid cookie pattern"},
		{
			name:     "service unknown category",
			services: []Service{{Name: "svc", Category: "ads", Cookies: []string{"x"}}},
			wantErr:  `service svc: cookie "x": unknown category "ads"`,
		},
		{
			name:     "service invalid pattern",
			services: []Service{{Name: "svc", Category: Analytics, Cookies: []string{"a=b"}}},
			wantErr:  "service svc: invalid cookie pattern",
		},
		{
			name:     "service empty pattern",
			services: []Service{{Name: "svc", Category: Analytics, Cookies: []string{""}}},
			wantErr:  "service svc: invalid cookie pattern",
		},
		{
			name:    "catalog invalid pattern",
			catalog: []Service{{Name: "cat", Category: Analytics, Cookies: []string{"a b"}}},
			wantErr: "catalog service cat: invalid cookie pattern",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClassifier(cats, tt.site, tt.services, tt.catalog)
			if err == nil {
				t.Fatalf("NewClassifier: no error, want one containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewClassifier: error %q does not contain %q", err, tt.wantErr)
			}
			if c != nil {
				t.Errorf("NewClassifier returned a classifier along with error %v", err)
			}
		})
	}

	// A catalog entry naming an unknown category is not an error: its
	// cookies become orphans.
	c, err := NewClassifier(cats, nil, nil, []Service{{Name: "cat", Category: "ads", Cookies: []string{"x", "y*"}}})
	if err != nil {
		t.Fatalf("NewClassifier with an unknown catalog category: %v", err)
	}
	for _, name := range []string{"x", "yz"} {
		if i, svc := c.Classify(name); i != Orphan || svc != "cat" {
			t.Errorf("Classify(%q) = (%d, %q), want (Orphan, \"cat\")", name, i, svc)
		}
	}
}

func TestClassifierNoRules(t *testing.T) {
	c, err := NewClassifier(nil, nil, nil, nil)
	if err != nil {
		t.Fatalf("NewClassifier: %v", err)
	}
	if i, svc := c.Classify("_ga"); i != Unclassified || svc != "" {
		t.Errorf("Classify(_ga) with no rules = (%d, %q)", i, svc)
	}
}

func TestClassifierConcurrent(t *testing.T) {
	cats := DefaultCategories()
	c, err := NewClassifier(cats, []CookieRule{{Pattern: "site_*", Category: Necessary}}, nil, Catalog())
	if err != nil {
		t.Fatal(err)
	}
	analytics := categoryIndex(t, cats, Analytics)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if i, _ := c.Classify("_pk_id.1.abcd"); i != analytics {
					t.Errorf("Classify(_pk_id.1.abcd) = %d", i)
					return
				}
				if i, _ := c.Classify("site_x"); i != 0 {
					t.Errorf("Classify(site_x) = %d", i)
					return
				}
			}
		})
	}
	wg.Wait()
}

// validCookiePattern reports whether p is a cookie name (an RFC 6265 token)
// in which '*' is a wildcard.
func validCookiePattern(p string) bool {
	if p == "" {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}

func TestCatalog(t *testing.T) {
	cats := DefaultCategories()
	catNames := make(map[string]bool)
	for _, c := range cats {
		catNames[c.Name] = true
	}
	services := Catalog()
	if len(services) == 0 {
		t.Fatal("empty catalog")
	}
	seen := make(map[string]bool)
	for _, s := range services {
		if !ValidName(s.Name) {
			t.Errorf("service %q: invalid name", s.Name)
		}
		if seen[s.Name] {
			t.Errorf("service %q: duplicate name", s.Name)
		}
		seen[s.Name] = true
		if !catNames[s.Category] {
			t.Errorf("service %q: category %q is not a default category", s.Name, s.Category)
		}
		if s.Category == Necessary {
			t.Errorf("service %q: a catalog tracker must not be necessary", s.Name)
		}
		if strings.TrimSpace(s.Title) == "" {
			t.Errorf("service %q: empty title", s.Name)
		}
		if strings.TrimSpace(s.Purpose) == "" {
			t.Errorf("service %q: empty purpose", s.Name)
		}
		if len(s.Cookies) == 0 && len(s.Hosts) == 0 {
			t.Errorf("service %q: neither cookies nor hosts", s.Name)
		}
		cookies := make(map[string]bool)
		for _, p := range s.Cookies {
			if !validCookiePattern(p) || strings.ContainsAny(p, " ;=") {
				t.Errorf("service %q: invalid cookie pattern %q", s.Name, p)
			}
			if cookies[p] {
				t.Errorf("service %q: duplicate cookie pattern %q", s.Name, p)
			}
			cookies[p] = true
		}
		for _, h := range s.Hosts {
			h, _, _ := strings.Cut(h, "/") // an optional path prefix follows the host
			if h == "" || h != strings.ToLower(h) || strings.ContainsAny(h, " :*") || strings.HasPrefix(h, ".") || strings.HasSuffix(h, ".") {
				t.Errorf("service %q: invalid host %q", s.Name, h)
			}
		}
	}

	required := []string{
		"google-analytics", "google-ads", "google-tag-manager", "meta-pixel",
		"yandex-metrica", "hotjar", "microsoft-clarity", "matomo", "mixpanel",
		"hubspot", "linkedin-insight", "tiktok-pixel",
	}
	for _, name := range required {
		if !seen[name] {
			t.Errorf("catalog lacks required service %q", name)
		}
	}

	if _, err := NewClassifier(cats, nil, nil, services); err != nil {
		t.Errorf("NewClassifier(DefaultCategories, Catalog): %v", err)
	}

	// Each call returns fresh slices: callers may modify them.
	services[0].Name = "changed"
	services[0].Cookies[0] = "changed"
	again := Catalog()
	if again[0].Name == "changed" || again[0].Cookies[0] == "changed" {
		t.Error("modifying the result of Catalog changed a later result")
	}
}

// TestCatalogNoShadowing checks that every catalog cookie, exact or an
// instance of a pattern, classifies to the service that lists it: no earlier
// service's pattern or exact name steals another service's cookie.
func TestCatalogNoShadowing(t *testing.T) {
	cats := DefaultCategories()
	c, err := NewClassifier(cats, nil, nil, Catalog())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range Catalog() {
		want := categoryIndex(t, cats, s.Category)
		for _, p := range s.Cookies {
			for _, fill := range []string{"", "1", "XyZ.42"} {
				name := strings.ReplaceAll(p, "*", fill)
				if !Glob(p, name) {
					t.Fatalf("Glob(%q, %q) = false", p, name)
				}
				i, svc := c.Classify(name)
				if i != want || svc != s.Name {
					t.Errorf("Classify(%q) (from %s pattern %q) = (%d, %q), want (%d, %q)", name, s.Name, p, i, svc, want, s.Name)
				}
			}
		}
	}
}

var classifyCases = []struct {
	name, cookie string
	hit          bool
}{
	{"exact", "_ga", true},
	{"pattern", "_pk_id.1.abcd", true},
	{"miss", "PHPSESSID", false},
}

func newBenchClassifier(tb testing.TB) *Classifier {
	tb.Helper()
	c, err := NewClassifier(DefaultCategories(), nil, nil, Catalog())
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestClassifyAllocs(t *testing.T) {
	c := newBenchClassifier(t)
	for _, cc := range classifyCases {
		if i, _ := c.Classify(cc.cookie); (i >= 0) != cc.hit {
			t.Fatalf("Classify(%q) = %d, hit want %v", cc.cookie, i, cc.hit)
		}
		if n := testing.AllocsPerRun(100, func() { c.Classify(cc.cookie) }); n != 0 {
			t.Errorf("Classify(%q) allocates %v times, want 0", cc.cookie, n)
		}
	}
}

func BenchmarkClassify(b *testing.B) {
	c := newBenchClassifier(b)
	for _, cc := range classifyCases {
		b.Run(cc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.Classify(cc.cookie)
			}
		})
	}
}

func BenchmarkGlob(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Glob("mp_*_mixpanel", "mp_0123456789abcdef_mixpanel")
	}
}

func TestHostIndex(t *testing.T) {
	ix := NewHostIndex([]Service{{Name: "own", Category: Analytics, Hosts: []string{"stats.example.com"}}}, Catalog())
	tests := []struct{ host, path, want string }{
		{"www.googletagmanager.com", "/gtag/js", "google-tag-manager"},
		{"WWW.YouTube.com", "/embed/x", "youtube"},
		{"m.youtube.com", "/", "youtube"},
		{"www.youtube-nocookie.com", "/embed/x", "youtube"},
		{"www.google.com", "/maps/embed?pb=1", "google-maps"},
		{"www.google.com", "/search", ""},
		{"connect.facebook.net", "/en_US/fbevents.js", "meta-pixel"},
		{"www.facebook.com", "/tr", "meta-pixel"},
		{"mc.yandex.ru", "/watch/1", "yandex-metrica"},
		{"stats.example.com", "/x.js", "own"},
		{"cdn.example.com", "/x.js", ""},
		{"notyoutube.com", "/", ""},
	}
	for _, tt := range tests {
		got := ""
		if s := ix.Lookup(tt.host, tt.path); s != nil {
			got = s.Name
		}
		if got != tt.want {
			t.Errorf("Lookup(%q, %q) = %q, want %q", tt.host, tt.path, got, tt.want)
		}
	}
}

func TestInlineIndex(t *testing.T) {
	ix := NewInlineIndex(Catalog())
	tests := map[string]string{
		"!function(f,b,e,v,n,t,s){...}(window, document,'script','https://connect.facebook.net/en_US/fbevents.js'); fbq('init', '1');": "meta-pixel",
		"var _paq = window._paq = window._paq || []; _paq.push(['trackPageView']);":                                                    "matomo",
		"(function(m,e,t,r,i,k,a){})(window, document, 'script', 'https://mc.yandex.ru/metrika/tag.js', 'ym');":                        "yandex-metrica",
		"console.log('hello')": "",
	}
	for code, want := range tests {
		got := ""
		if s := ix.Lookup([]byte(code)); s != nil {
			got = s.Name
		}
		if got != want {
			t.Errorf("Lookup(%.40q) = %q, want %q", code, got, want)
		}
	}
}

// TestInlineIndexMatchesNaive: the one-pass Lookup answers as searching for
// every signature in turn does (the first signature in list order that
// appears wins), on random code made of signature pieces, with short
// site signatures too.
func TestInlineIndexMatchesNaive(t *testing.T) {
	services := [][]Service{{{Name: "site-x", Category: "analytics", Inline: []string{"zq(", "ab"}}}, Catalog()}
	ix := NewInlineIndex(services...)
	naive := func(code []byte) *Service {
		for _, list := range services {
			for i := range list {
				for _, sig := range list[i].Inline {
					if sig != "" && bytes.Contains(code, []byte(sig)) {
						return &list[i]
					}
				}
			}
		}
		return nil
	}
	var pieces []string
	for _, list := range services {
		for _, s := range list {
			for _, sig := range s.Inline {
				pieces = append(pieces, sig, sig[:len(sig)/2], sig[len(sig)/2:])
			}
		}
	}
	pieces = append(pieces, " ", "x", "window.", "(", "'", "\n", "\x00")
	rnd := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		var b bytes.Buffer
		for range rnd.IntN(12) {
			b.WriteString(pieces[rnd.IntN(len(pieces))])
		}
		if got, want := ix.Lookup(b.Bytes()), naive(b.Bytes()); got != want {
			t.Fatalf("Lookup(%q) = %v, want %v", b.String(), got, want)
		}
	}
}

func BenchmarkInlineLookup(b *testing.B) {
	ix := NewInlineIndex(Catalog())
	// An application inlined whole: 100 KB without a signature.
	code := bytes.Repeat([]byte("function app(x){return x.map(function(y){return y*2+window.location.hash.length;});}\n"), 1200)
	b.SetBytes(int64(len(code)))
	for b.Loop() {
		if ix.Lookup(code) != nil {
			b.Fatal("found")
		}
	}
}
