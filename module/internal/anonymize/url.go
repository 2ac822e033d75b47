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
	if parts, ok := splitPlainURL(raw); ok {
		return p.cleanPlainURL(raw, parts)
	}
	return p.cleanParsedURL(raw)
}

// cleanParsedURL is CleanURL for any URL, through url.Parse.
func (p URLPolicy) cleanParsedURL(raw string) string {
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
	if u.Scheme == "" && u.Host == "" && strings.HasPrefix(u.EscapedPath(), "//") {
		// Without a scheme or host (the userinfo just dropped, or "////x"),
		// String would write the path's "//" where it reads as a host.
		return ""
	}
	return u.String()
}

// plainURL is a URL split without url.Parse: prefix is "scheme://host[:port]"
// or "" for a path-absolute reference; query and fragment come without their
// "?" and "#".
type plainURL struct {
	prefix, path, query, fragment string
}

// splitPlainURL splits the URLs most beacons carry — "scheme://host/path?
// query#fragment" with a lower-case scheme, a host name of letters, digits,
// dots and dashes and a numeric port, or a path-absolute "/path?query#frag" —
// when url.Parse followed by URL.String would give back every part
// unchanged: valid percent-escapes, no userinfo, no IP literal, nothing in
// the path or fragment that String re-escapes. Anything else is left to
// cleanParsedURL (ok is false), so both paths agree byte for byte.
func splitPlainURL(raw string) (u plainURL, ok bool) {
	rest, frag, _ := strings.Cut(raw, "#")
	rest, query, _ := strings.Cut(rest, "?")
	if !plainQuery(query) || !plainPart(frag, true) {
		return u, false
	}
	u.query, u.fragment = query, frag
	if strings.HasPrefix(rest, "/") {
		if strings.HasPrefix(rest, "//") || !plainPart(rest, false) {
			return u, false
		}
		u.path = rest
		return u, true
	}
	i := schemeEnd(rest)
	if i < 0 {
		return u, false
	}
	hostEnd := len(rest)
	if j := strings.IndexByte(rest[i:], '/'); j >= 0 {
		hostEnd = i + j
	}
	if !plainHost(rest[i:hostEnd]) || !plainPart(rest[hostEnd:], false) {
		return u, false
	}
	u.prefix, u.path = rest[:hostEnd], rest[hostEnd:]
	return u, true
}

// schemeEnd returns the index after "scheme://" at the start of s, or -1
// when s does not start with a lower-case scheme and "//".
func schemeEnd(s string) int {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return -1
	}
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', isDigit(c), c == '+', c == '-', c == '.':
		case c == ':':
			if strings.HasPrefix(s[i+1:], "//") {
				return i + 3
			}
			return -1
		default:
			return -1
		}
	}
	return -1
}

// plainHost reports whether h is a non-empty host name of ASCII letters,
// digits, dots and dashes, with an optional numeric port.
func plainHost(h string) bool {
	name, port, _ := strings.Cut(h, ":")
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isAlnum(c) && c != '.' && c != '-' {
			return false
		}
	}
	for i := 0; i < len(port); i++ {
		if !isDigit(port[i]) {
			return false
		}
	}
	return true
}

// plainPart reports whether a path (or, with fragment, a fragment) holds
// only characters that URL.String writes back as they are, and valid
// percent-escapes.
func plainPart(s string, fragment bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case plainPathByte[c]:
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
		case fragment && c == '?':
		default:
			return false
		}
	}
	return true
}

// plainPathByte marks the bytes that URL.String writes back unchanged in a
// path or fragment: letters, digits and "-._~!$&'()*+,;=:@/".
var plainPathByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = isAlnum(byte(c)) || strings.IndexByte("-._~!$&'()*+,;=:@/", byte(c)) >= 0
	}
	return t
}()

// plainQuery reports whether a raw query has no byte url.Parse rejects
// (control characters) and none that calls for a closer look (non-ASCII,
// space); cleanQuery checks its escapes.
func plainQuery(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// cleanPlainURL is CleanURL for a URL that splitPlainURL split from raw.
func (p URLPolicy) cleanPlainURL(raw string, u plainURL) string {
	path := u.path
	if path != "" {
		var ok bool
		if path, ok = p.cleanPath(path); !ok {
			return ""
		}
	}
	query := u.query
	if query != "" {
		var ok bool
		if query, ok = p.cleanQuery(query); !ok {
			return ""
		}
	}
	frag := u.fragment
	if frag != "" {
		var ok bool
		if frag, ok = p.cleanFragment(frag); !ok {
			return ""
		}
	}
	n := len(u.prefix) + len(path) + len(query) + len(frag)
	if query != "" {
		n++
	}
	if frag != "" {
		n++
	}
	if n == len(raw) && path == u.path && query == u.query && frag == u.fragment {
		return raw // nothing to clean, and no empty "?" or "#" to drop
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(u.prefix)
	b.WriteString(path)
	if query != "" {
		b.WriteByte('?')
		b.WriteString(query)
	}
	if frag != "" {
		b.WriteByte('#')
		b.WriteString(frag)
	}
	return b.String()
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
	// Until a pair has to change, the output is the prefix raw[:same]; the
	// builder starts at the first change, so a query with nothing to remove
	// or redact comes back as it is.
	var b strings.Builder
	building, same := false, 0
	for rest := raw; ; {
		start := len(raw) - len(rest)
		pair, next, more := strings.Cut(rest, "&")
		rest = next
		if pair != "" {
			key, val, hasVal := strings.Cut(pair, "=")
			name, err := url.QueryUnescape(key)
			if err != nil {
				return "", false
			}
			if hasVal && !validEscapes(val) {
				return "", false
			}
			keep := !p.denied(name)
			rkey, rval := key, val
			if keep {
				rkey, rval = RedactPII(key), RedactPII(val)
			}
			if !building && same == start && keep && rkey == key && rval == val {
				same = start + len(pair)
				if more {
					same++ // the '&'
				}
				continue
			}
			if !building {
				building = true
				b.Grow(len(raw))
				b.WriteString(strings.TrimSuffix(raw[:same], "&"))
			}
			if keep {
				if b.Len() > 0 {
					b.WriteByte('&')
				}
				b.WriteString(rkey)
				if hasVal {
					b.WriteByte('=')
					b.WriteString(rval)
				}
			}
		}
		if !more {
			break
		}
	}
	if !building {
		return strings.TrimSuffix(raw[:same], "&"), true
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
	if p.DenyParams != nil {
		return matchName(name, p.DenyParams) || !p.KeepClickIDs && matchName(name, ClickIDParams)
	}
	// The default lists, looked up at once rather than one by one.
	if len(name) > maxListedName {
		return false
	}
	var buf [maxListedName]byte
	lower := buf[:len(name)]
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	kind := listedNames[string(lower)]
	return kind&listedDeny != 0 || !p.KeepClickIDs && kind&listedClickID != 0
}

// listedNames holds DefaultDenyParams and ClickIDParams in lower case.
// Comparing lower-cased ASCII is what matchName's strings.EqualFold does
// for these all-ASCII names: a non-ASCII rune that folds to an ASCII
// letter (the Kelvin sign, the long s) is longer than it, so a name
// holding one never has the length of a listed name.
var listedNames = func() map[string]uint8 {
	m := make(map[string]uint8)
	for _, n := range DefaultDenyParams {
		m[strings.ToLower(n)] |= listedDeny
	}
	for _, n := range ClickIDParams {
		m[strings.ToLower(n)] |= listedClickID
	}
	return m
}()

const (
	listedDeny uint8 = 1 << iota
	listedClickID
	// maxListedName is at least the length of the longest listed name.
	maxListedName = 32
)

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
	for i := strings.IndexByte(s, '%'); i >= 0; i = strings.IndexByte(s, '%') {
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return false
		}
		s = s[i+3:]
	}
	return true
}

// Origin cuts a referrer to its origin ("https://example.com"): the
// lower-cased scheme and host and a non-default port. It returns "" for
// unparsable or non-http(s) input.
func Origin(raw string) string {
	raw = strings.TrimSpace(raw)
	if u, ok := splitPlainURL(raw); ok && u.prefix != "" {
		return plainOrigin(u.prefix)
	}
	return parsedOrigin(raw)
}

// plainOrigin is Origin of a URL that splitPlainURL split, given its
// "scheme://host[:port]" prefix.
func plainOrigin(prefix string) string {
	scheme, host, _ := strings.Cut(prefix, "://")
	if scheme != "http" && scheme != "https" {
		return ""
	}
	name, port, _ := strings.Cut(host, ":")
	for i := 0; i < len(name); i++ {
		if 'A' <= name[i] && name[i] <= 'Z' {
			// Rare: lower-case a copy.
			host = strings.ToLower(host)
			name, port, _ = strings.Cut(host, ":")
			break
		}
	}
	if port == "" || scheme == "http" && port == "80" || scheme == "https" && port == "443" {
		if origin := prefix[:len(scheme)+3+len(name)]; origin[len(scheme)+3:] == name {
			return origin // already lower-case: no copy
		}
		return prefix[:len(scheme)+3] + name
	}
	if host == prefix[len(scheme)+3:] {
		return prefix
	}
	return prefix[:len(scheme)+3] + name + ":" + port
}

// parsedOrigin is Origin for any URL, through url.Parse.
func parsedOrigin(raw string) string {
	u, err := url.Parse(raw)
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
