package policy

import (
	"fmt"
	"strings"
	"testing"
)

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
		note string
	}{
		{"1", "1", 0, "equal"},
		{"", "", 0, "both empty"},
		{"1.10", "1.9", 1, "numeric segments compare as numbers"},
		{"2.0", "1.99", 1, "first segment decides"},
		{"2024-05-01", "2024-04-30", 1, "dates with '-'"},
		{"2024-12-31", "2025-01-01", -1, "dates across a year"},
		{"1", "1.1", -1, "a missing segment sorts first"},
		// A missing segment is "" which does not parse as a number, so it
		// compares as text and "" < "0": "1.0" is newer than "1". This is
		// consistent with "1" < "1.1" (a longer version with the same
		// prefix is newer) and keeps the order antisymmetric and
		// transitive; it only means "1.0" and "1" are different versions,
		// which is acceptable for a policy version the site bumps on purpose.
		{"1.0", "1", 1, `missing segment is "" < "0"`},
		{"1.0.0", "1.0", 1, `missing segment is "" < "0"`},
		{"", "0", -1, "empty version is oldest"},
		{"", "1", -1, "empty version is oldest"},
		{"beta", "alpha", 1, "text segments compare as text"},
		{"1.beta", "1.alpha", 1, "text after equal numbers"},
		// "a" is text, so "10" vs "a" compares as text: "10" < "a".
		{"1.a", "1.10", 1, "mixed text/number compares as text"},
		{"1.9", "1.a", -1, "digits sort before lower-case letters"},
		{"v2", "v10", 1, "text segments are not compared naturally"},
		// Unlike semver, a pre-release suffix is an extra segment and
		// therefore sorts after the release.
		{"1.0.0-rc1", "1.0.0", 1, "suffix is an extra, newer segment"},
		{"1..2", "1.2", 0, "empty segments are dropped"},
		{"1_2", "1-2", 0, "'.', '-' and '_' are equivalent separators"},
		{".1.", "1", 0, "leading and trailing separators are ignored"},
		{"01", "1", 0, "leading zeros do not matter for numbers"},
		{"1.01", "1.1", 0, "leading zeros do not matter for numbers"},
		{"18446744073709551615", "18446744073709551614", 1, "max uint64"},
		{"3", "2.99.99", 1, "first segment decides"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s_vs_%s", tt.a, tt.b), func(t *testing.T) {
			if got := CompareVersions(tt.a, tt.b); got != tt.want {
				t.Errorf("CompareVersions(%q, %q) = %d, want %d (%s)", tt.a, tt.b, got, tt.want, tt.note)
			}
			if got := CompareVersions(tt.b, tt.a); got != -tt.want {
				t.Errorf("CompareVersions(%q, %q) = %d, want %d (reversed; %s)", tt.b, tt.a, got, -tt.want, tt.note)
			}
		})
	}
}

// versionSamples have no text segment starting with a digit and no number
// beyond uint64, the domain on which CompareVersions is a total order (see
// TestCompareVersionsDigitLeadingTextIsIntransitive for what breaks outside).
var versionSamples = []string{
	"", "0", "1", "1.0", "1.0.0", "1.1", "1.9", "1.10", "1.99", "2", "2.0",
	"10", "01", "1.01", "1.a", "1.b", "1.beta", "1.alpha", "1.0.0-rc1",
	"1.0.0-rc.2", "alpha", "beta", "v1", "v2", "v10", "2024-04-30",
	"2024-05-01", "2024.05.01", "2025_01_01", "1..2", "1.2", "-", "a.1", "a.10",
	"18446744073709551615", "+x", "~x", "X", "1.X",
}

func TestCompareVersionsProperties(t *testing.T) {
	for _, a := range versionSamples {
		if got := CompareVersions(a, a); got != 0 {
			t.Errorf("CompareVersions(%q, %q) = %d, want 0", a, a, got)
		}
		for _, b := range versionSamples {
			ab, ba := CompareVersions(a, b), CompareVersions(b, a)
			if ab < -1 || ab > 1 {
				t.Errorf("CompareVersions(%q, %q) = %d, want -1, 0 or 1", a, b, ab)
			}
			if ab != -ba {
				t.Errorf("not antisymmetric: CompareVersions(%q, %q) = %d, CompareVersions(%q, %q) = %d", a, b, ab, b, a, ba)
			}
			for _, c := range versionSamples {
				bc, ac := CompareVersions(b, c), CompareVersions(a, c)
				if ab <= 0 && bc <= 0 && ac > 0 {
					t.Errorf("not transitive: %q <= %q <= %q but %q > %q", a, b, c, a, c)
				}
				if ab == 0 && bc == 0 && ac != 0 {
					t.Errorf("equality not transitive: %q == %q == %q but CompareVersions(%q, %q) = %d", a, b, c, a, c, ac)
				}
			}
		}
	}
}

// TestCompareVersionsDigitLeadingText guards against a former bug: numbers
// compared with digit-leading text ("1a") or with numbers too large for
// uint64 must still give a transitive order.
func TestCompareVersionsDigitLeadingText(t *testing.T) {
	cycles := [][3]string{
		{"9", "10", "1a"},
		{"9", "10", "18446744073709551616"}, // 2^64 does not parse, compares as text
		{"1.9", "1.10", "1.1a"},
	}
	for _, c := range cycles {
		a, b, d := c[0], c[1], c[2]
		if CompareVersions(a, b) < 0 && CompareVersions(b, d) < 0 && CompareVersions(a, d) > 0 {
			t.Errorf("not transitive: %q < %q < %q but %q > %q", a, b, d, a, d)
		}
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"", false},
		{"a", true},
		{"analytics", true},
		{"google-analytics", true},
		{"my_cat-2", true},
		{"0", true},
		{"-", true},
		{strings.Repeat("a", 40), true},
		{strings.Repeat("a", 41), false},
		{"Analytics", false},
		{"a b", false},
		{"a.b", false},
		{"a/b", false},
		{"a*", false},
		{"é", false},
		{"a\n", false},
		{"a\x00", false},
	}
	for _, tt := range tests {
		if got := ValidName(tt.name); got != tt.want {
			t.Errorf("ValidName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestValidRegime(t *testing.T) {
	tests := []struct {
		r    string
		want bool
	}{
		{OptIn, true},
		{OptOut, true},
		{Notice, true},
		{"opt-in", true},
		{"", false},
		{"OPT-IN", false},
		{"optin", false},
		{"opt_in", false},
		{" notice", false},
	}
	for _, tt := range tests {
		if got := ValidRegime(tt.r); got != tt.want {
			t.Errorf("ValidRegime(%q) = %v, want %v", tt.r, got, tt.want)
		}
	}
}

func manyCategories(n int) []Category {
	cats := make([]Category, n)
	for i := range cats {
		cats[i] = Category{Name: fmt.Sprintf("c%d", i)}
	}
	return cats
}

func TestValidateCategories(t *testing.T) {
	tests := []struct {
		name    string
		cats    []Category
		wantErr string // "" means valid
	}{
		{"nil", nil, ""},
		{"empty", []Category{}, ""},
		{"defaults", DefaultCategories(), ""},
		{"one", []Category{{Name: "necessary", Required: true}}, ""},
		{"max", manyCategories(MaxCategories), ""},
		{"too many", manyCategories(MaxCategories + 1), "at most 64"},
		{"duplicate", []Category{{Name: "a"}, {Name: "b"}, {Name: "a"}}, `duplicate category "a"`},
		{"empty name", []Category{{Name: ""}}, "invalid category name"},
		{"upper case", []Category{{Name: "Analytics"}}, "invalid category name"},
		{"space", []Category{{Name: "my cat"}}, "invalid category name"},
		{"too long", []Category{{Name: strings.Repeat("x", 41)}}, "invalid category name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateCategories(tt.cats)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("ValidateCategories: unexpected error %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("ValidateCategories: no error, want one containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("ValidateCategories: error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestDefaultCategories(t *testing.T) {
	cats := DefaultCategories()
	if err := ValidateCategories(cats); err != nil {
		t.Fatalf("DefaultCategories invalid: %v", err)
	}
	want := []string{Necessary, Preferences, Analytics, Marketing}
	if len(cats) != len(want) {
		t.Fatalf("DefaultCategories has %d categories, want %d", len(cats), len(want))
	}
	var required []string
	for i, c := range cats {
		if c.Name != want[i] {
			t.Errorf("category %d is %q, want %q", i, c.Name, want[i])
		}
		if c.Description == "" {
			t.Errorf("category %q has no description", c.Name)
		}
		if c.Required {
			required = append(required, c.Name)
		}
		if got, wantSale := c.SaleOrSharing, c.Name == Marketing; got != wantSale {
			t.Errorf("category %q SaleOrSharing = %v, want %v", c.Name, got, wantSale)
		}
	}
	if len(required) != 1 || required[0] != Necessary {
		t.Errorf("required categories = %q, want exactly [%q]", required, Necessary)
	}

	// Each call returns a fresh slice: callers may modify it.
	cats[0].Name = "changed"
	cats[3].SaleOrSharing = false
	again := DefaultCategories()
	if again[0].Name != Necessary || !again[3].SaleOrSharing {
		t.Error("modifying the result of DefaultCategories changed a later result")
	}
}

func TestSet(t *testing.T) {
	var s Set
	for _, i := range []int{-100, -1, 0, 1, 31, 32, 63, 64, 65, 100} {
		if s.Has(i) {
			t.Errorf("empty Set.Has(%d) = true", i)
		}
	}
	s = s.With(0).With(5).With(63)
	tests := []struct {
		i    int
		want bool
	}{
		{-1, false},
		{0, true},
		{1, false},
		{5, true},
		{62, false},
		{63, true},
		{64, false},
		{100, false},
	}
	for _, tt := range tests {
		if got := s.Has(tt.i); got != tt.want {
			t.Errorf("Set(%#x).Has(%d) = %v, want %v", uint64(s), tt.i, got, tt.want)
		}
	}
	if want := Set(1 | 1<<5 | 1<<63); s != want {
		t.Errorf("Set = %#x, want %#x", uint64(s), uint64(want))
	}
	if got := s.With(5); got != s {
		t.Errorf("With of a present index changed the set: %#x", uint64(got))
	}
	s = s.Without(5)
	if s.Has(5) || !s.Has(0) || !s.Has(63) {
		t.Errorf("Without(5) = %#x", uint64(s))
	}
	if got := s.Without(5); got != s {
		t.Errorf("Without of an absent index changed the set: %#x", uint64(got))
	}
	if got := s.Without(63).Without(0); got != 0 {
		t.Errorf("removing every index left %#x", uint64(got))
	}

	// Out-of-range indexes must not panic; shifting by 64 or more (or a
	// huge uint from a negative int) yields 0, so With and Without leave
	// the set unchanged and Has stays false.
	full := ^Set(0)
	for _, i := range []int{-1, -64, 64, 100, 1 << 20} {
		if got := s.With(i); got != s {
			t.Errorf("With(%d) = %#x, want unchanged %#x", i, uint64(got), uint64(s))
		}
		if got := full.Without(i); got != full {
			t.Errorf("full.Without(%d) = %#x, want unchanged", i, uint64(got))
		}
		if full.Has(i) {
			t.Errorf("full.Has(%d) = true, want false", i)
		}
		if s.With(i).Has(i) {
			t.Errorf("With(%d).Has(%d) = true, want false", i, i)
		}
	}
}
