// Package anonymize turns the personal data that reaches the consent gateway
// (client addresses, visitor identifiers, page URLs, referrers and titles)
// into forms that can be forwarded to analytics: truncated IP addresses,
// keyed or daily-salted pseudonyms, and URLs and text with personal data
// removed.
//
// Every function fails closed: input that cannot be understood is dropped
// rather than passed through.
package anonymize

import (
	"net/netip"
	"strings"
)

// sixToFour is the 6to4 prefix (RFC 3056), whose addresses embed an IPv4
// address in bits 16 to 47.
var sixToFour = netip.MustParsePrefix("2002::/16")

// TruncateIP masks the last n bytes of an IPv4 address (n=1 → /24,
// n=2 → /16, n=3 → /8) and the corresponding IPv6 prefix (n=1 → /48,
// n=2 → /32, n=3 → /16).
//
// IPv4-mapped IPv6 addresses are unmapped first and the IPv6 zone is
// dropped. With n=1 a 6to4 address (2002::/16) is cut to /40, so that the
// IPv4 address it embeds is truncated like a plain IPv4 address would be.
// n=0 returns addr unchanged; n=4 means "remove" and returns the zero
// netip.Addr, and so does any other n outside 0..4, so that a misconfigured
// level fails safe. An invalid addr yields the zero netip.Addr.
func TruncateIP(addr netip.Addr, n int) netip.Addr {
	if n == 0 {
		return addr
	}
	if !addr.IsValid() || n < 0 || n > 3 {
		return netip.Addr{}
	}
	addr = addr.Unmap().WithZone("")
	var bits int
	if addr.Is4() {
		bits = 32 - 8*n
	} else {
		bits = 64 - 16*n // n=1 → 48, n=2 → 32, n=3 → 16
		if n == 1 && sixToFour.Contains(addr) {
			bits = 40
		}
	}
	p, err := addr.Prefix(bits)
	if err != nil {
		return netip.Addr{}
	}
	return p.Addr()
}

// TruncateIPString parses s and returns the truncated form of the addresses
// in it, as TruncateIP does with level n.
//
// s is an IP address, optionally with a port, in brackets or double-quoted,
// or an X-Forwarded-For style list "a, b, c", in which case every element is
// truncated and the elements are joined with the same separators (the comma
// and the blanks after it). Each address is written in canonical form without
// port, brackets or IPv6 zone, since ports and zones identify a client as well.
// Unparsable elements are dropped together with their separator, so that the
// result never holds any byte of an unparsable input. With n=4 (or any other
// "remove" level) the result is "".
func TruncateIPString(s string, n int) string {
	if strings.IndexByte(s, ',') < 0 {
		a, ok := parseIPElement(s)
		if !ok {
			return ""
		}
		t := truncateForString(a, n)
		if !t.IsValid() {
			return ""
		}
		return t.String()
	}
	var b strings.Builder
	first := true
	for elem := range strings.SplitSeq(s, ",") {
		a, ok := parseIPElement(elem)
		if !ok {
			continue
		}
		t := truncateForString(a, n)
		if !t.IsValid() {
			continue
		}
		if !first {
			b.WriteByte(',')
			b.WriteString(leadingBlanks(elem))
		}
		first = false
		b.WriteString(t.String())
	}
	return b.String()
}

// truncateForString truncates a for TruncateIPString, which drops the zone
// even at level 0.
func truncateForString(a netip.Addr, n int) netip.Addr {
	return TruncateIP(a, n).WithZone("")
}

// leadingBlanks returns the spaces and tabs at the start of s.
func leadingBlanks(s string) string {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return s[:i]
}

// parseIPElement parses one element of an address list: "1.2.3.4",
// "1.2.3.4:80", "2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:80", each
// optionally surrounded by blanks and double quotes.
func parseIPElement(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	if s == "" {
		return netip.Addr{}, false
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a, true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr(), true
	}
	if len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && a.Is6() {
			return a, true
		}
	}
	return netip.Addr{}, false
}
