package consentgate

import (
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/consentgate/consentgate/module/internal/policy"
	"github.com/consentgate/consentgate/module/internal/token"
)

// decisionVarKey is the request variable that holds the *Decision.
const decisionVarKey = "consent.decision"

// Decision is a visitor's consent for one request, decided once by the
// consent handler and read by the matcher, the privacy filter, placeholders
// and logs.
type Decision struct {
	// ID is the consent ID of a valid decision, zero otherwise.
	ID token.ID
	// Decided reports whether the visitor has a valid, current decision.
	Decided bool
	// Granted is the set of granted categories (indexes into the site's
	// categories), after regime defaults and privacy signals.
	Granted policy.Set
	// Regime is the regime that applies: opt-in, opt-out or notice.
	Regime string
	// Country is the visitor's country when known (ISO 3166-1 alpha-2).
	Country string
	// GPC and DNT report the privacy signals the request carried (DNT
	// only when the site honours it).
	GPC, DNT bool
	// Issued and Expires bound a valid decision.
	Issued, Expires time.Time
	// SiteID is the site the decision belongs to.
	SiteID string
	// PolicyVersion is the policy version the decision was made under (the
	// site's current version when there is no decision).
	PolicyVersion string

	// previous is the consent ID of an expired-by-policy (stale) decision,
	// reused when the visitor decides again so their records stay linked.
	previous token.ID
	flags    byte
	// gpcRevoked is set when a GPC/DNT signal newly refuses categories the
	// visitor's token granted; the handler records it and reissues.
	gpcRevoked bool
	site       *siteConfig
}

// DecisionFromRequest returns the decision the consent handler made for r,
// or nil when no consent handler ran.
func DecisionFromRequest(r *http.Request) *Decision {
	d, _ := caddyhttp.GetVar(r.Context(), decisionVarKey).(*Decision)
	return d
}

// Has reports whether the named category is granted.
func (d *Decision) Has(category string) bool {
	if d == nil || d.site == nil {
		return false
	}
	i, ok := d.site.index[category]
	return ok && d.Granted.Has(i)
}

// GrantedNames lists the granted categories in the site's order.
func (d *Decision) GrantedNames() []string { return d.names(true) }

// DeniedNames lists the refused (or not yet granted) categories.
func (d *Decision) DeniedNames() []string { return d.names(false) }

func (d *Decision) names(granted bool) []string {
	out := []string{}
	if d == nil || d.site == nil {
		return out
	}
	for i, c := range d.site.categories {
		if d.Granted.Has(i) == granted {
			out = append(out, c.Name)
		}
	}
	return out
}

// IDString is the consent ID as hex, "" without a decision.
func (d *Decision) IDString() string {
	if d == nil || !d.Decided {
		return ""
	}
	return d.ID.String()
}
