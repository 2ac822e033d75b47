package anonymize

import (
	"net/url"
	"strings"
)

// URLPolicy says what to remove from URLs sent to analytics.
type URLPolicy struct {
	// DenyParams lists query parameter names that are removed, compared
	// case-insensitively. Nil means DefaultDenyParams; an empty non-nil
	// slice removes none.
	DenyParams []string
	// KeepClickIDs keeps the click identifiers of ClickIDParams; when false
	// they are removed.
	KeepClickIDs bool
}

// DefaultDenyParams are the query parameters that commonly carry personal
// data, credentials or search terms.
var DefaultDenyParams = []string{"email", "e-mail", "mail", "phone", "tel", "token", "access_token", "id_token", "auth", "password", "pass", "pwd", "session", "sessionid", "sid", "q", "query", "search", "s", "keyword", "keywords", "name", "first_name", "last_name", "address", "zip", "postcode"}

// ClickIDParams are advertising click identifiers, which link a visit to an
// ad click and so to a person.
var ClickIDParams = []string{"gclid", "dclid", "gbraid", "wbraid", "gclsrc", "fbclid", "yclid", "ysclid", "msclkid", "ttclid", "twclid", "li_fat_id", "mc_eid", "mc_cid", "igshid", "epik", "sccid", "irclickid", "_hsenc", "_hsmi", "vero_id", "rb_clickid", "s_cid", "wickedid"}

// sessionPathParams are path parameters (";jsessionid=...") that carry a
// session identifier; they are always removed from paths.
var sessionPathParams = []string{"jsessionid", "phpsessid"}

// CleanURL removes denied parameters and (unless KeepClickIDs) click ids from
// an absolute or relative URL, redacts personal data (see RedactPII) in the
// remaining path, query keys and values and fragment, and drops the
// userinfo.
//
// Parameter names are matched after percent-decoding, also when written as
// "user[email]", "email[]" or with an "amp;" prefix left over from HTML
// escaping. A fragment that looks like a query ("#access_token=...", or
// "#/route?email=...") is cleaned like one, and so are path parameters
// (";jsessionid=..."). The rest of the URL keeps its original encoding.
// An unparsable URL, or one with invalid percent-encoding anywhere, returns
// "" (dropped, never passed through).
func (p URLPolicy) CleanURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	u.User = nil
	if u.Opaque != "" {
		if !validEscapes(u.Opaque) {
			return ""
		}
		u.Opaque = RedactPII(u.Opaque)
	}
	if esc := u.EscapedPath(); esc != "" {
		clean, ok := p.cleanPath(esc)
		if !ok {
			return ""
		}
		if clean != esc {
			dec, err := url.PathUnescape(clean)
			if err != nil {
				return ""
			}
			u.Path, u.RawPath = dec, clean
		}
	}
	if u.RawQuery != "" {
		q, ok := p.cleanQuery(u.RawQuery)
		if !ok {
			return ""
		}
		u.RawQuery = q
	}
	if u.RawQuery == "" {
		u.ForceQuery = false
	}
	if esc := u.EscapedFragment(); esc != "" {
		frag, ok := p.cleanFragment(esc)
		if !ok {
			return ""
		}
		if frag != esc {
			dec, err := url.PathUnescape(frag)
			if err != nil {
				return ""
			}
			u.Fragment, u.RawFragment = dec, frag
		}
	}
	return u.String()
}

// cleanPath removes denied and session path parameters from the escaped
// path and redacts the rest.
func (p URLPolicy) cleanPath(esc string) (string, bool) {
	if strings.IndexByte(esc, ';') >= 0 {
		segs := strings.Split(esc, "/")
		for i, seg := range segs {
			if strings.IndexByte(seg, ';') < 0 {
				continue
			}
			parts := strings.Split(seg, ";")
			kept := parts[:1]
			for _, param := range parts[1:] {
				name, _, _ := strings.Cut(param, "=")
				dec, err := url.PathUnescape(name)
				if err != nil {
					return "", false
				}
				if p.denied(dec) || matchName(dec, sessionPathParams) {
					continue
				}
				kept = append(kept, param)
			}
			if len(kept) == 1 && kept[0] == "" {
				// Keep the segment non-empty: "/;sid=1/x" must not turn
				// into "//x", which would read as a host.
				kept = append(kept, "")
			}
			segs[i] = strings.Join(kept, ";")
		}
		esc = strings.Join(segs, "/")
	}
	return RedactPII(esc), true
}

// cleanQuery removes denied parameters from a raw query and redacts the
// keys and values of the others. ok is false when the query has invalid
// percent-encoding.
func (p URLPolicy) cleanQuery(raw string) (string, bool) {
	var b strings.Builder
	b.Grow(len(raw))
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

// cleanFragment cleans an escaped fragment: query-like parts as a query,
// the rest as text.
func (p URLPolicy) cleanFragment(esc string) (string, bool) {
	if route, query, ok := strings.Cut(esc, "?"); ok {
		q, ok := p.cleanQuery(query)
		if !ok {
			return "", false
		}
		route = RedactPII(route)
		if q == "" {
			return route, true
		}
		return route + "?" + q, true
	}
	if strings.IndexByte(esc, '=') >= 0 && strings.IndexByte(esc, '/') < 0 {
		return p.cleanQuery(esc)
	}
	return RedactPII(esc), true
}

// denied reports whether the decoded parameter name must be removed. The
// name is checked as is, without an "amp;" prefix and a "[]" suffix, and by
// the innermost key of "a[b][c]".
func (p URLPolicy) denied(name string) bool {
	n := strings.TrimSpace(name)
	if p.deniedName(n) {
		return true
	}
	if len(n) > 4 && strings.EqualFold(n[:4], "amp;") {
		n = n[4:]
		if p.deniedName(n) {
			return true
		}
	}
	if strings.HasSuffix(n, "[]") {
		n = n[:len(n)-2]
		if p.deniedName(n) {
			return true
		}
	}
	if strings.HasSuffix(n, "]") {
		if i := strings.LastIndexByte(n, '['); i >= 0 {
			return p.deniedName(n[i+1 : len(n)-1])
		}
	}
	return false
}

// deniedName reports whether name is on the deny list or, unless click ids
// are kept, on the click id list.
func (p URLPolicy) deniedName(name string) bool {
	deny := p.DenyParams
	if deny == nil {
		deny = DefaultDenyParams
	}
	return matchName(name, deny) || !p.KeepClickIDs && matchName(name, ClickIDParams)
}

// matchName reports whether name equals one of list, ignoring case.
func matchName(name string, list []string) bool {
	for _, l := range list {
		if len(l) == len(name) && strings.EqualFold(l, name) {
			return true
		}
	}
	return false
}

// validEscapes reports whether every '%' in s starts a valid %XX escape.
func validEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

// Origin cuts a referrer to its origin ("https://example.com"): the
// lower-cased scheme and host and a non-default port. It returns "" for
// unparsable or non-http(s) input.
func Origin(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Opaque != "" {
		return ""
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	if i := strings.IndexByte(host, '%'); i >= 0 {
		host = host[:i] // IPv6 zone
	}
	if host == "" || strings.ContainsAny(host, " \t/\\@[]") {
		return ""
	}
	if strings.IndexByte(host, ':') >= 0 {
		host = "[" + host + "]"
	}
	port := u.Port()
	if port == "" || scheme == "http" && port == "80" || scheme == "https" && port == "443" {
		return scheme + "://" + host
	}
	return scheme + "://" + host + ":" + port
}
