package anonymize

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Redacted replaces every piece of personal data RedactPII finds.
const Redacted = "[redacted]"

// maxDecodeLevels bounds how many layers of percent-encoding RedactPII looks
// through ("%2540" is "@" encoded twice).
const maxDecodeLevels = 3

// minPhoneDigits is the least number of digits of a national phone number;
// minIntlPhoneDigits that of one written with a leading "+".
const (
	minPhoneDigits     = 9
	minIntlPhoneDigits = 7
	maxPhoneDigits     = 15 // E.164
	minCardDigits      = 13
	maxCardDigits      = 19
)

// span is a half-open byte range [lo, hi).
type span struct{ lo, hi int }

// RedactPII replaces e-mail addresses, phone numbers, payment card
// numbers and IP addresses in s with "[redacted]".
//
// E-mail addresses may have Unicode local parts and domains. Phone numbers
// are international forms (a leading "+" and at least 7 digits) and national
// forms with at least 9 digits; digit groups may be separated by up to two
// spaces, dashes, dots, parentheses or "+" signs (the form encoding of a
// space). Card numbers are 13 to 19 digits that pass the Luhn check; written
// with separators they are caught as phone numbers already. Numbers that
// touch an ASCII letter or "_" (hex hashes, SKUs) are left alone, and so are
// short numbers such as order ids, years and prices. IP addresses are
// IPv4 dotted quads and IPv6 addresses in any form net/netip reads
// (compressed, expanded, IPv4-mapped); ones that touch a letter that is not
// a hex digit, or "_", are left alone ("std::vector").
//
// Percent-encoded forms ("john%40example.com", "%2B7%20701...") are found by
// decoding a copy, up to three times; the redaction covers the whole encoded
// text, and the parts that are not personal data keep their original
// encoding, so a valid URL component stays valid.
func RedactPII(s string) string {
	if !mayContainPII(s) {
		return s
	}
	var spans []span
	spans = detectPII(s, nil, spans)
	if len(spans) > 0 && strings.IndexByte(s, '%') >= 0 {
		snapToEscapes(s, spans)
	}
	view, m := s, []span(nil)
	for range maxDecodeLevels {
		if strings.IndexByte(view, '%') < 0 {
			break
		}
		next, nm, changed := percentDecode(view, m)
		if !changed {
			break
		}
		view, m = next, nm
		spans = detectPII(view, m, spans)
	}
	if len(spans) == 0 {
		return s
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	var b strings.Builder
	b.Grow(len(s))
	pos := 0
	for i := 0; i < len(spans); {
		lo, hi := spans[i].lo, spans[i].hi
		for i++; i < len(spans) && spans[i].lo <= hi; i++ {
			hi = max(hi, spans[i].hi)
		}
		b.WriteString(s[pos:lo])
		b.WriteString(Redacted)
		pos = hi
	}
	b.WriteString(s[pos:])
	return b.String()
}

// mayContainPII reports whether s has an '@', a '%', enough digits for a
// phone number or enough dots or colons for an IP address; when it does
// not, RedactPII has nothing to do.
func mayContainPII(s string) bool {
	digits, dots, colons := 0, 0, 0
	for i := 0; i < len(s); i++ {
		switch piiByte[s[i]] {
		case 0:
		case piiMark:
			return true
		case piiDigit:
			digits++
			if digits >= minIntlPhoneDigits {
				return true
			}
		case piiDot:
			dots++
		case piiColon:
			colons++
			if colons >= 2 {
				return true
			}
		}
	}
	return dots >= 3 && digits >= 4
}

// Classes of the bytes mayContainPII counts; all others are 0.
const (
	piiMark = 1 + iota // '@' and '%'
	piiDigit
	piiDot
	piiColon
)

var piiByte = func() (t [256]uint8) {
	t['@'], t['%'], t['.'], t[':'] = piiMark, piiMark, piiDot, piiColon
	for c := '0'; c <= '9'; c++ {
		t[c] = piiDigit
	}
	return t
}()

// detectPII appends the personal data found in view to spans. m maps each
// byte of view to the range of the original string it was decoded from; nil
// means view is the original string.
func detectPII(view string, m []span, spans []span) []span {
	emit := func(lo, hi int) {
		if m != nil {
			lo, hi = m[lo].lo, m[hi-1].hi
		}
		spans = append(spans, span{lo, hi})
	}
	findEmails(view, emit)
	findNumbers(view, emit)
	findIPs(view, emit)
	return spans
}

// findIPs calls emit for every IP address in v: a run of hex digits,
// colons and dots that net/netip reads as an address, with at least three
// dots (IPv4) or two colons (IPv6), not touching other letters or "_".
func findIPs(v string, emit func(lo, hi int)) {
	for i := 0; i < len(v); {
		if !isIPByte(v[i]) {
			i++
			continue
		}
		lo, dots, colons := i, 0, 0
		for ; i < len(v) && isIPByte(v[i]); i++ {
			switch v[i] {
			case '.':
				dots++
			case ':':
				colons++
			}
		}
		if dots < 3 && colons < 2 {
			continue
		}
		hi := i
		for hi > lo && v[hi-1] == '.' {
			hi-- // the end of a sentence
		}
		if hi == lo || lo > 0 && isWordByte(v[lo-1]) || i < len(v) && isWordByte(v[i]) {
			continue
		}
		if !isIP(v[lo:hi]) {
			if v[hi-1] != ':' || strings.HasSuffix(v[lo:hi], "::") || !isIP(v[lo:hi-1]) {
				continue
			}
			hi-- // "…:" ending a list item
		}
		emit(lo, hi)
	}
}

// isIP reports whether s is an IP address, or an IPv4 address and port.
func isIP(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	_, err := netip.ParseAddrPort(s)
	return err == nil
}

// isIPByte reports whether c may be part of a written IP address.
func isIPByte(c byte) bool { return isHex(c) || c == ':' || c == '.' }

// findEmails calls emit for every e-mail address in v.
func findEmails(v string, emit func(lo, hi int)) {
	for off := 0; ; {
		i := strings.IndexByte(v[off:], '@')
		if i < 0 {
			return
		}
		at := off + i
		off = at + 1
		lo := at
		for lo > 0 {
			r, size := utf8.DecodeLastRuneInString(v[:lo])
			if !isLocalRune(r) {
				break
			}
			lo -= size
		}
		if lo == at {
			continue
		}
		hi, dotLabel := at+1, false
		for hi < len(v) {
			r, size := utf8.DecodeRuneInString(v[hi:])
			if r == '.' {
				if hi == at+1 {
					break // the domain starts with a dot
				}
				if hi+1 < len(v) {
					if r2, _ := utf8.DecodeRuneInString(v[hi+1:]); isLabelRune(r2) {
						dotLabel = true
					}
				}
			} else if !isLabelRune(r) {
				break
			}
			hi += size
		}
		if !dotLabel {
			continue
		}
		for v[hi-1] == '.' {
			hi--
		}
		emit(lo, hi)
		off = hi
	}
}

// isLocalRune reports whether r may be part of the local part of an e-mail
// address as RedactPII understands it.
func isLocalRune(r rune) bool {
	if r < utf8.RuneSelf {
		c := byte(r)
		return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
	}
	return r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r))
}

// isLabelRune reports whether r may be part of a domain label.
func isLabelRune(r rune) bool {
	if r < utf8.RuneSelf {
		c := byte(r)
		return isAlnum(c) || c == '-'
	}
	return r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r))
}

// findNumbers calls emit for every phone or card number in v.
func findNumbers(v string, emit func(lo, hi int)) {
	for i := 0; i < len(v); {
		if !isDigit(v[i]) {
			i++
			continue
		}
		start, end := i, i
		digits, separated := 0, false
		var groupLens [4]int // lengths of the first digit groups
		groups := 0
		for j := i; ; {
			k := j
			for k < len(v) && isDigit(v[k]) {
				k++
			}
			digits += k - j
			if groups < len(groupLens) {
				groupLens[groups] = k - j
			}
			groups++
			end = k
			g := k
			for range 2 {
				size := separatorAt(v, g)
				if size == 0 {
					break
				}
				g += size
			}
			if g == k || g >= len(v) || !isDigit(v[g]) {
				break
			}
			separated = true
			j = g
		}
		i = end
		if start > 0 && isWordByte(v[start-1]) || end < len(v) && isWordByte(v[end]) {
			continue
		}
		if groups == 4 && end < len(v) && v[end] == ':' && isDateTime(groupLens) {
			continue // "2024-01-15 12:30"
		}
		lo, plus := start, false
		if lo > 0 && v[lo-1] == '+' && (lo == 1 || !isAlnum(v[lo-2])) {
			lo--
			plus = true
		}
		if lo > 0 && v[lo-1] == '(' {
			lo--
		}
		switch {
		case plus && digits >= minIntlPhoneDigits,
			separated && digits >= minPhoneDigits,
			digits >= minPhoneDigits && digits <= maxPhoneDigits,
			digits >= minCardDigits && digits <= maxCardDigits && !separated && luhn(v[start:end]):
			emit(lo, end)
		}
	}
}

// isDateTime reports whether four digit groups of the given lengths, the
// last followed by ':', are a date and an hour: "2024-01-15 12:" or
// "15.01.2024 9:".
func isDateTime(g [4]int) bool {
	return g[3] <= 2 && (g[0] == 4 && g[1] == 2 && g[2] == 2 || g[0] == 2 && g[1] == 2 && g[2] == 4)
}

// separatorAt returns the length of the digit-group separator at v[i:], or 0.
func separatorAt(v string, i int) int {
	if i >= len(v) {
		return 0
	}
	switch v[i] {
	case ' ', '\t', '-', '.', '(', ')', '+':
		return 1
	}
	if v[i] < utf8.RuneSelf {
		return 0
	}
	r, size := utf8.DecodeRuneInString(v[i:])
	switch r {
	case '\u00a0', '\u2009', '\u202f', '\u2011', '\u2012', '\u2013':
		return size
	}
	return 0
}

// luhn reports whether the digit string d passes the Luhn check.
func luhn(d string) bool {
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		n := int(d[i] - '0')
		if double {
			n *= 2
			if n > 9 {
				n -= 9
			}
		}
		sum += n
		double = !double
	}
	return sum%10 == 0
}

// percentDecode decodes the valid %XX escapes of v once. m maps the bytes of
// v to the original string (nil: v is the original); the returned map does
// the same for the decoded string. changed is false when v has no valid
// escape.
func percentDecode(v string, m []span) (out string, nm []span, changed bool) {
	b := make([]byte, 0, len(v))
	nm = make([]span, 0, len(v))
	for i := 0; i < len(v); {
		lo := i
		if v[i] == '%' && i+2 < len(v) && isHex(v[i+1]) && isHex(v[i+2]) {
			b = append(b, unhex(v[i+1])<<4|unhex(v[i+2]))
			i += 3
			changed = true
		} else {
			b = append(b, v[i])
			i++
		}
		if m != nil {
			nm = append(nm, span{m[lo].lo, m[i-1].hi})
		} else {
			nm = append(nm, span{lo, i})
		}
	}
	if !changed {
		return v, m, false
	}
	return string(b), nm, true
}

// snapToEscapes widens spans found in the original string s so that none
// of them cuts a %XX escape in two.
func snapToEscapes(s string, spans []span) {
	esc := make([]bool, len(s)) // esc[i]: s[i] starts a valid escape
	for i := 0; i < len(s); {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			esc[i] = true
			i += 3
			continue
		}
		i++
	}
	for k := range spans {
		sp := &spans[k]
		for _, back := range []int{1, 2} {
			if e := sp.lo - back; e >= 0 && esc[e] {
				sp.lo = e
				break
			}
		}
		for _, back := range []int{1, 2} {
			if e := sp.hi - back; e >= sp.lo && esc[e] && e+3 > sp.hi {
				sp.hi = e + 3
				break
			}
		}
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isAlnum(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// isWordByte reports whether c is an ASCII letter, digit or underscore.
func isWordByte(c byte) bool { return isAlnum(c) || c == '_' }

func isHex(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case isDigit(c):
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
