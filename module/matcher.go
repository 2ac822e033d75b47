package consentgate

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(MatchConsent{})
}

// MatchConsent matches requests whose visitor granted every named
// category, as decided by the consent handler earlier in the route. It
// never decides consent itself: without a consent handler it never matches.
//
//	@stats consent analytics
//	reverse_proxy @stats analytics.internal:8000
type MatchConsent []string

// CaddyModule returns the Caddy module information.
func (MatchConsent) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.matchers.consent",
		New: func() caddy.Module { return new(MatchConsent) },
	}
}

// Provision warns about a matcher that can never match.
func (m MatchConsent) Provision(ctx caddy.Context) error {
	if len(m) == 0 {
		ctx.Logger().Warn("consent matcher without categories matches every request with a consent decision")
	}
	return nil
}

// Match implements caddyhttp.RequestMatcher.
func (m MatchConsent) Match(r *http.Request) bool {
	ok, _ := m.MatchWithError(r)
	return ok
}

// MatchWithError implements caddyhttp.RequestMatcherWithError.
func (m MatchConsent) MatchWithError(r *http.Request) (bool, error) {
	d := DecisionFromRequest(r)
	if d == nil {
		return false, nil
	}
	for _, name := range m {
		if !d.Has(name) {
			return false, nil
		}
	}
	return true, nil
}

// UnmarshalCaddyfile parses the matcher. Syntax:
//
//	consent <category...>
func (m *MatchConsent) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for d.Next() {
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		*m = append(*m, args...)
		if d.NextBlock(0) {
			return d.Err("consent matcher takes no block")
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner                 = MatchConsent{}
	_ caddyhttp.RequestMatcherWithError = MatchConsent{}
	_ caddyfile.Unmarshaler             = (*MatchConsent)(nil)
)
