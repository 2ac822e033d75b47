package consentgate

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestCookieDomain: the registrable domain a page's expired cookies are
// also sent for; none for an address.
func TestCookieDomain(t *testing.T) {
	for host, want := range map[string]string{
		"shop.example":          "shop.example",
		"www.shop.example:8443": "shop.example",
		"a.b.shop.co.uk":        "shop.co.uk",
		"127.0.0.1":             "",
		"127.0.0.1:80":          "",
		"[::1]:80":              "",
		"10.0.0.1.":             "",
		"host9":                 "",
	} {
		r := httptest.NewRequest(http.MethodGet, "http://x/", nil)
		r.Host = host
		if got := cookieDomain(r); got != want {
			t.Errorf("cookieDomain(%q) = %q, want %q", host, got, want)
		}
	}
}
