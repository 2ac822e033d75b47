// Package policy models a site's consent policy: its categories, the
// services inside them, the cookie rules that classify cookies by category,
// and the regime that applies to a visitor.
package policy

import (
	"fmt"
	"strings"
)

// Built-in category names.
const (
	Necessary   = "necessary"
	Preferences = "preferences"
	Analytics   = "analytics"
	Marketing   = "marketing"
)

// Regimes decide what applies before a visitor has decided.
const (
	// OptIn grants nothing optional before a decision (GDPR-style).
	OptIn = "opt-in"
	// OptOut grants optional categories until the visitor refuses them
	// (as US state privacy laws allow).
	OptOut = "opt-out"
	// Notice only informs; optional categories are granted unless refused.
	Notice = "notice"
)

// ValidRegime reports whether r names a regime.
func ValidRegime(r string) bool { return r == OptIn || r == OptOut || r == Notice }

// MaxCategories bounds the number of categories so a granted set fits in a
// uint64 bit set.
const MaxCategories = 64

// Category is a purpose a visitor can grant or refuse.
type Category struct {
	// Name is the category's identifier, e.g. "analytics": lower-case
	// letters, digits, '-' and '_'.
	Name string `json:"name"`
	// Description is shown to visitors.
	Description string `json:"description,omitempty"`
	// Required marks a category that is always granted (necessary cookies).
	Required bool `json:"required,omitempty"`
	// SaleOrSharing marks a category refused by Global Privacy Control (and
	// DNT when honoured) until the visitor grants it explicitly.
	SaleOrSharing bool `json:"sale_or_sharing,omitempty"`
}

// DefaultCategories are used when a site configures none.
func DefaultCategories() []Category {
	return []Category{
		{Name: Necessary, Required: true, Description: "Needed for the site to work: sessions, security, load balancing, remembering your consent."},
		{Name: Preferences, Description: "Remember your choices such as language or region."},
		{Name: Analytics, Description: "Count visits and measure how the site is used."},
		{Name: Marketing, SaleOrSharing: true, Description: "Advertising, retargeting and sharing with advertising partners."},
	}
}

// ValidName reports whether s is a valid category or service name.
func ValidName(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Set is a set of categories as bits over a site's category list.
type Set uint64

// Has reports whether category index i is in the set.
func (s Set) Has(i int) bool { return i >= 0 && i < MaxCategories && s&(1<<uint(i)) != 0 }

// With returns s with index i added.
func (s Set) With(i int) Set { return s | 1<<uint(i) }

// Without returns s with index i removed.
func (s Set) Without(i int) Set { return s &^ (1 << uint(i)) }

// CompareVersions orders policy versions segment by segment, splitting on
// '.', '-' and '_': all-digit segments compare as numbers (of any length),
// other segments as text, and a number sorts before text, so "1.10" > "1.9",
// "2024-05-01" > "2024-04-30" and "1.10" < "1.1a". A missing segment sorts
// first ("1" < "1.0"). It returns -1, 0 or 1 and is a total order.
func CompareVersions(a, b string) int {
	as := splitVersion(a)
	bs := splitVersion(b)
	for i := 0; i < len(as) || i < len(bs); i++ {
		switch {
		case i >= len(as):
			return -1
		case i >= len(bs):
			return 1
		}
		if c := compareSegment(as[i], bs[i]); c != 0 {
			return c
		}
	}
	return 0
}

func compareSegment(x, y string) int {
	xn, yn := allDigits(x), allDigits(y)
	switch {
	case xn && yn:
		x, y = strings.TrimLeft(x, "0"), strings.TrimLeft(y, "0")
		if len(x) != len(y) {
			if len(x) < len(y) {
				return -1
			}
			return 1
		}
		return strings.Compare(x, y)
	case xn:
		return -1
	case yn:
		return 1
	}
	return strings.Compare(x, y)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func splitVersion(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == '.' || r == '-' || r == '_' })
}

// ValidateCategories checks a category list.
func ValidateCategories(cats []Category) error {
	if len(cats) > MaxCategories {
		return fmt.Errorf("at most %d categories, got %d", MaxCategories, len(cats))
	}
	seen := make(map[string]bool, len(cats))
	for _, c := range cats {
		if !ValidName(c.Name) {
			return fmt.Errorf("invalid category name %q: use lower-case letters, digits, '-' and '_'", c.Name)
		}
		if seen[c.Name] {
			return fmt.Errorf("duplicate category %q", c.Name)
		}
		seen[c.Name] = true
	}
	return nil
}
