package htmlrewrite

import (
	"net/url"
	"strings"

	whatwg "github.com/nlnwa/whatwg-url/url"
)

// DocumentURLer is a Policy that knows the URL of the page being
// rewritten, against which relative URLs and <base href> resolve.
type DocumentURLer interface {
	DocumentURL() string
}

// BaseInjector is a Policy whose markup must change when the page has a
// <base href>: relative URLs in it (the banner's own files and API) would
// follow the base to another origin. The rewriter calls InjectUnderBase
// instead of Inject once the page's first <base href> has been seen; base
// is that URL, resolved.
type BaseInjector interface {
	InjectUnderBase(lang, base string) []byte
}

// injection is the policy's markup for the page at this point.
func (r *resolver) injection(lang string) []byte {
	if b, ok := r.p.(BaseInjector); ok && r.baseSeen {
		return b.InjectUnderBase(lang, r.base)
	}
	return r.p.Inject(lang)
}

// resolver finds the host and path a browser loads an attribute's URL
// from. Browsers parse URLs by the WHATWG URL standard, not RFC 3986: they
// drop tabs and newlines anywhere, read backslashes as slashes, skip any
// number of slashes after "https:", percent-decode and IDNA-map host names
// ("%2E" and "。" are dots), and resolve relative URLs against the first
// <base href>. A tracker host written in any of those ways must be found.
type resolver struct {
	p        Policy
	base     string // the first <base href>, resolved
	baseSeen bool
}

// unknownDocument stands for the page's URL when the policy does not
// give it: a scheme-only "https:host" then reads as absolute, which
// holds back rather than lets through.
const unknownDocument = "http://document.invalid/"

func (r *resolver) document() string {
	if d, ok := r.p.(DocumentURLer); ok {
		if u := d.DocumentURL(); u != "" {
			return u
		}
	}
	return unknownDocument
}

// setBase records the page's <base href>: from here on, relative URLs
// resolve against it (against the page's URL when it does not parse).
func (r *resolver) setBase(href string) {
	r.baseSeen = true
	r.base = r.document()
	if u, err := whatwg.ParseRef(r.base, href); err == nil {
		r.base = u.Href(true)
	}
}

// classify classifies the URL raw loads from.
func (r *resolver) classify(raw string) (Classification, bool) {
	u, ok := r.target(raw)
	if !ok {
		return Classification{}, false
	}
	return r.p.ClassifyURL(u)
}

// target returns the scheme, host (lower case, without port or trailing
// dot) and decoded path a browser would load raw from, when that is an
// http(s) URL on another origin than the page's: relative URLs count only
// after a <base href>.
func (r *resolver) target(raw string) (*url.URL, bool) {
	s := strings.TrimFunc(raw, func(c rune) bool { return c <= ' ' })
	// The common case first: plainURL takes only absolute URLs without
	// control bytes, where the steps below change nothing.
	if u, ok := plainURL(s); ok {
		u.Host = hostName(u.Host)
		return u, true
	}
	dropped := strings.ContainsAny(s, "\t\n\r")
	if dropped {
		s = strings.Map(func(c rune) rune {
			if c == '\t' || c == '\n' || c == '\r' {
				return -1
			}
			return c
		}, s)
	}
	scheme, absolute := urlScheme(s)
	switch {
	case s == "":
		return nil, false
	case absolute && !strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https"):
		// data:, javascript:, blob:, about:… load from no host.
		return nil, false
	case !absolute && !r.baseSeen && !(len(s) > 1 && isSlash(s[0]) && isSlash(s[1])):
		// Relative, without <base>: the page's own origin.
		return nil, false
	}
	if dropped {
		if u, ok := plainURL(s); ok {
			// Plain once tabs and newlines are gone.
			u.Host = hostName(u.Host)
			return u, true
		}
	}
	base := r.base
	if !r.baseSeen {
		base = r.document()
	}
	w, err := whatwg.ParseRef(base, s)
	if err != nil || w.Hostname() == "" {
		return nil, false
	}
	if sc := w.Scheme(); sc != "http" && sc != "https" {
		return nil, false
	}
	path := w.Pathname()
	if p, err := url.PathUnescape(path); err == nil {
		path = p
	}
	return &url.URL{Scheme: w.Scheme(), Host: hostName(w.Hostname()), Path: path}, true
}

// hostName is a host as the policy gets it: lower case, without a port or
// a trailing dot.
func hostName(h string) string { return strings.TrimRight(strings.ToLower(h), ".") }

func isSlash(c byte) bool { return c == '/' || c == '\\' }

// urlScheme returns the scheme s starts with ("https" of "https:…"), if any.
func urlScheme(s string) (string, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c|0x20 && c|0x20 <= 'z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return s[:i], true
		default:
			return "", false
		}
	}
	return "", false
}

// plainURL reads the common case quickly, without net/url: "http(s)://"
// or "//", then a plain domain name (letters, digits, hyphens, dots; no
// punycode, nothing that reads as an IP address), an optional userinfo
// and port, and a path without dot segments, all in printable ASCII
// without '%' or '\'. For these the host and path are what a browser
// finds (FuzzPlainURL checks it against the WHATWG parser); anything else
// goes to that parser.
func plainURL(s string) (*url.URL, bool) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '%' || c == '\\' {
			return nil, false
		}
	}
	scheme, rest := "https", ""
	switch {
	case strings.HasPrefix(s, "//"):
		rest = s[2:]
	case len(s) > 8 && strings.EqualFold(s[:8], "https://"):
		rest = s[8:]
	case len(s) > 7 && strings.EqualFold(s[:7], "http://"):
		scheme, rest = "http", s[7:]
	default:
		return nil, false
	}
	if rest == "" || rest[0] == '/' {
		// "https:///host": browsers skip the extra slashes.
		return nil, false
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	host := rest[:end]
	if at := strings.LastIndexByte(host, '@'); at >= 0 {
		host = host[at+1:]
	}
	if colon := strings.IndexByte(host, ':'); colon >= 0 {
		if strings.Trim(host[colon+1:], "0123456789") != "" || len(host)-colon > 6 {
			return nil, false // not a port
		}
		host = host[:colon]
	}
	if !ldhName(host) || endsInNumber(host) || strings.Contains(strings.ToLower(host), "xn--") {
		// Anything but a plain domain name goes to the URL standard's
		// host parser: browsers rewrite IP addresses ("0x7f.1" is
		// 127.0.0.1), validate punycode ("xn--") and check other code
		// points.
		return nil, false
	}
	path := ""
	if end < len(rest) && rest[end] == '/' {
		path = rest[end:]
		if q := strings.IndexAny(path, "?#"); q >= 0 {
			path = path[:q]
		}
		if strings.Contains(path, "/.") {
			// Browsers resolve dot segments ("/x/../maps").
			return nil, false
		}
	}
	return &url.URL{Scheme: scheme, Host: host, Path: path}, true
}

// ldhName reports whether host is letters, digits, hyphens and dots only.
func ldhName(host string) bool {
	for i := 0; i < len(host); i++ {
		if c := host[i]; !('a' <= c|0x20 && c|0x20 <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return host != ""
}

// endsInNumber is, erring wide, the URL standard's test for a host that
// is an IPv4 address: its last label (after a final dot) looks like a
// number (digits, hex digits, "0x", a sign).
func endsInNumber(host string) bool {
	host = strings.TrimSuffix(host, ".")
	digit := false
	for i := len(host) - 1; i >= 0 && host[i] != '.'; i-- {
		switch c := host[i]; {
		case '0' <= c && c <= '9':
			digit = true
		case 'a' <= c|0x20 && c|0x20 <= 'f', c|0x20 == 'x', c == '+', c == '-':
		default:
			return false
		}
	}
	return digit
}
