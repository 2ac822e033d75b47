package htmlrewrite

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// This file follows the x/net/html tokenizer's readTag (token.go) and
// unescape (escape.go) byte for byte, so that the scanner finds the same
// tag ends and reads the same attribute values as the reference.

// Byte classes inside a tag.
const (
	clSpace = 1 << iota // ' ', '\n', '\r', '\t', '\f'
	clSlash
	clGT
	clEq
)

var tagClass = [256]uint8{
	' ': clSpace, '\n': clSpace, '\r': clSpace, '\t': clSpace, '\f': clSpace,
	'/': clSlash, '>': clGT, '=': clEq,
}

func isLetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

// States of the tag machine.
const (
	tsName       = iota // in the tag name
	tsBeforeAttr        // between attributes
	tsKey               // in an attribute name
	tsAfterKey          // white space after an attribute name
	tsBeforeVal         // after '='
	tsQuoted            // in a quoted value
	tsUnquoted          // in an unquoted value
)

// tagScan is the state of a tag between bytes; offsets count from the
// tag's '<', so they survive the tag being moved to the front of the
// buffer while more input is read.
type tagScan struct {
	st       uint8
	quote    byte
	endTag   bool
	record   bool // keep attribute spans: the tag's attributes matter
	name     elem
	pos      int // scanned up to here
	keyStart int
	keyEnd   int
	valStart int
}

// attrSpan locates an attribute's raw key and value in its tag.
type attrSpan struct{ k0, k1, v0, v1 int }

// scanTag runs the tag states from t[s.pos:], where t starts at the tag's
// '<'. It returns the offset just past the '>' that closes the tag, or -1
// when t ends first. With s.record the attributes with a name are
// appended to *attrs in order, duplicates included.
func scanTag(t []byte, s *tagScan, attrs *[]attrSpan) int {
	// The state lives in locals while bytes flow; s is updated only where
	// the tag may end or t runs out.
	i, st := s.pos, s.st
	for i < len(t) {
		switch st {
		case tsName:
			for i < len(t) && tagClass[t[i]]&(clSpace|clSlash|clGT) == 0 {
				i++
			}
			if i == len(t) {
				break
			}
			start := 1
			if s.endTag {
				start = 2
			}
			s.name = lookupElem(t[start:i])
			s.record = !s.endTag && s.name.attrsMatter()
			if t[i] == '>' {
				return i + 1
			}
			// White space is skipped; a '/' is read as an attribute with an
			// empty name and dropped.
			i++
			st = tsBeforeAttr
		case tsBeforeAttr:
			c := t[i]
			switch {
			case tagClass[c]&(clSpace|clSlash) != 0:
				i++
			case c == '>':
				return i + 1
			default:
				// The first byte of a name may be '='.
				s.keyStart = i
				i++
				st = tsKey
				// Most attributes are key="value": read one whole.
				for i < len(t) && tagClass[t[i]] == 0 {
					i++
				}
				if i+1 < len(t) && t[i] == '=' && (t[i+1] == '"' || t[i+1] == '\'') {
					if j := bytes.IndexByte(t[i+2:], t[i+1]); j >= 0 {
						s.keyEnd = i
						addAttr(s, attrs, i+2, i+2+j)
						i += 2 + j + 1
						st = tsBeforeAttr
					}
				}
			}
		case tsKey:
			for i < len(t) && tagClass[t[i]] == 0 {
				i++
			}
			if i == len(t) {
				break
			}
			s.keyEnd = i
			switch c := t[i]; {
			case c == '=':
				i++
				st = tsBeforeVal
			case tagClass[c]&clSpace != 0:
				i++
				st = tsAfterKey
			case c == '/':
				addAttr(s, attrs, i, i)
				i++
				st = tsBeforeAttr
			default: // '>'
				addAttr(s, attrs, i, i)
				return i + 1
			}
		case tsAfterKey:
			c := t[i]
			switch {
			case tagClass[c]&clSpace != 0:
				i++
			case c == '=':
				i++
				st = tsBeforeVal
			case c == '/':
				addAttr(s, attrs, s.keyEnd, s.keyEnd)
				i++
				st = tsBeforeAttr
			case c == '>':
				addAttr(s, attrs, s.keyEnd, s.keyEnd)
				return i + 1
			default:
				// A new attribute begins; this one has no value.
				addAttr(s, attrs, s.keyEnd, s.keyEnd)
				st = tsBeforeAttr
			}
		case tsBeforeVal:
			c := t[i]
			switch {
			case tagClass[c]&clSpace != 0:
				i++
			case c == '>':
				addAttr(s, attrs, s.keyEnd, s.keyEnd)
				return i + 1
			case c == '"' || c == '\'':
				s.quote = c
				i++
				s.valStart = i
				st = tsQuoted
			default:
				s.valStart = i
				i++
				st = tsUnquoted
			}
		case tsQuoted:
			j := bytes.IndexByte(t[i:], s.quote)
			if j < 0 {
				i = len(t)
				break
			}
			i += j
			addAttr(s, attrs, s.valStart, i)
			i++
			st = tsBeforeAttr
		case tsUnquoted:
			for i < len(t) && tagClass[t[i]]&(clSpace|clGT) == 0 {
				i++
			}
			if i == len(t) {
				break
			}
			addAttr(s, attrs, s.valStart, i)
			if t[i] == '>' {
				return i + 1
			}
			i++
			st = tsBeforeAttr
		}
	}
	s.pos, s.st = i, st
	return -1
}

func addAttr(s *tagScan, attrs *[]attrSpan, v0, v1 int) {
	if s.record && s.keyEnd > s.keyStart && attrs != nil {
		*attrs = append(*attrs, attrSpan{s.keyStart, s.keyEnd, v0, v1})
	}
}

// tagAttrs is a complete start tag whose attributes matter, with the
// scratch space to decode them.
type tagAttrs struct {
	raw   []byte
	spans []attrSpan // duplicates included
	buf   []byte     // scratch for decoding
	uniq  []attrSpan // scratch for unique
	attrs []attr     // scratch for list
}

// keyIs reports whether a raw attribute name is name; the tokenizer
// lower-cases A-Z only.
func keyIs(k []byte, name string) bool {
	if len(k) != len(name) {
		return false
	}
	for i, c := range k {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

// value returns the decoded value of the first attribute called name (the
// tokenizer drops later ones).
func (ta *tagAttrs) value(name string) (string, bool) {
	for _, a := range ta.spans {
		if keyIs(ta.raw[a.k0:a.k1], name) {
			return ta.decode(ta.raw[a.v0:a.v1]), true
		}
	}
	return "", false
}

// unique returns the spans the tokenizer keeps: the first of each name.
func (ta *tagAttrs) unique() []attrSpan {
	out := ta.uniq[:0]
	var seen map[string]bool
	for i, a := range ta.spans {
		k := ta.raw[a.k0:a.k1]
		dup := false
		if len(ta.spans) > 16 {
			// Many attributes (hostile input): a map, as the tokenizer does.
			if seen == nil {
				seen = make(map[string]bool, len(ta.spans))
			}
			key := asciiLowerString(k)
			dup = seen[key]
			seen[key] = true
		} else {
			for _, b := range ta.spans[:i] {
				if asciiEqualFold(ta.raw[b.k0:b.k1], k) {
					dup = true
					break
				}
			}
		}
		if !dup {
			out = append(out, a)
		}
	}
	ta.uniq = out
	return out
}

func asciiLowerString(b []byte) string {
	s := []byte(string(b))
	for i, c := range s {
		if 'A' <= c && c <= 'Z' {
			s[i] = c + 'a' - 'A'
		}
	}
	return string(s)
}

func asciiEqualFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// list returns the attributes as the tokenizer's TagAttr reads them: first
// of each name, names lower-cased, values decoded. The list is valid until
// the next call.
func (ta *tagAttrs) list() []attr {
	out := ta.attrs[:0]
	for _, a := range ta.unique() {
		out = append(out, attr{attrKey(ta.raw[a.k0:a.k1]), ta.decode(ta.raw[a.v0:a.v1])})
	}
	ta.attrs = out
	return out
}

// commonKeys are the attribute names trackers' tags carry most, which
// attrKey returns without allocating.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range strings.Fields(`src async defer type id class width height title style allow
		allowfullscreen frameborder loading referrerpolicy crossorigin nonce integrity`) {
		m[k] = k
	}
	return m
}()

// attrKey is a raw attribute name as the tokenizer reads it: NUL to
// U+FFFD, A-Z lower-cased.
func attrKey(k []byte) string {
	if bytes.IndexByte(k, 0) >= 0 {
		return asciiLowerString(bytes.ReplaceAll(k, []byte{0}, []byte("\ufffd")))
	}
	for _, c := range k {
		if 'A' <= c && c <= 'Z' {
			return asciiLowerString(k)
		}
	}
	if name, ok := commonKeys[string(k)]; ok {
		return name
	}
	return string(k)
}

// selfClosing reports whether the tokenizer reads the tag as self-closing:
// a '/' before the '>' that is not the end of the last attribute's value.
func (ta *tagAttrs) selfClosing() bool {
	n := len(ta.raw)
	if n < 2 || ta.raw[n-2] != '/' {
		return false
	}
	last, ok := ta.lastUnique()
	return !ok || n-2 != last.v1-1
}

// lastUnique returns the last attribute the tokenizer keeps.
func (ta *tagAttrs) lastUnique() (attrSpan, bool) {
	if len(ta.spans) > 16 {
		u := ta.unique() // not empty: the first attribute is always kept
		return u[len(u)-1], true
	}
outer:
	for i := len(ta.spans) - 1; i >= 0; i-- {
		a := ta.spans[i]
		for _, b := range ta.spans[:i] {
			if asciiEqualFold(ta.raw[b.k0:b.k1], ta.raw[a.k0:a.k1]) {
				continue outer
			}
		}
		return a, true
	}
	return attrSpan{}, false
}

// decode decodes a raw attribute value as the tokenizer's TagAttr does:
// NUL to U+FFFD, CR and CRLF to LF, then character references.
func (ta *tagAttrs) decode(v []byte) string {
	amp := bytes.IndexByte(v, '&') >= 0
	if bytes.IndexByte(v, 0) < 0 && bytes.IndexByte(v, '\r') < 0 {
		if !amp {
			return string(v)
		}
		ta.buf = unescapeAttr(ta.buf[:0], v)
		return string(ta.buf)
	}
	b := ta.buf[:0]
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case 0:
			b = append(b, "\ufffd"...)
		case '\r':
			if i+1 < len(v) && v[i+1] == '\n' {
				i++
			}
			b = append(b, '\n')
		default:
			b = append(b, c)
		}
	}
	n := len(b)
	b = unescapeAttr(b, b[:n])
	ta.buf = b
	return string(b[n:])
}

// unescapeAttr appends s to dst with its character references decoded as
// in an attribute value.
func unescapeAttr(dst, s []byte) []byte {
	for {
		i := bytes.IndexByte(s, '&')
		if i < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:i]...)
		s = s[i:]
		var n int
		dst, n = appendCharRef(dst, s)
		s = s[n:]
	}
}

// replacementTable maps the numeric references 0x80-0x9F to Windows-1252.
var replacementTable = [...]rune{
	'\u20AC', '\u0081', '\u201A', '\u0192', '\u201E', '\u2026', '\u2020', '\u2021',
	'\u02C6', '\u2030', '\u0160', '\u2039', '\u0152', '\u008D', '\u017D', '\u008F',
	'\u0090', '\u2018', '\u2019', '\u201C', '\u201D', '\u2022', '\u2013', '\u2014',
	'\u02DC', '\u2122', '\u0161', '\u203A', '\u0153', '\u009D', '\u017E', '\u0178',
}

// appendCharRef decodes the reference at the start of s (s[0] == '&') and
// reports how many bytes it took; a lone '&' stays.
func appendCharRef(dst, s []byte) ([]byte, int) {
	if len(s) <= 1 {
		return append(dst, '&'), 1
	}
	if s[1] == '#' {
		if len(s) <= 2 {
			return append(dst, '&'), 1
		}
		i := 2
		hex := false
		if s[i] == 'x' || s[i] == 'X' {
			hex = true
			i++
		}
		i0 := i
		x := rune(0)
		for i < len(s) {
			c := s[i]
			var d, mult rune
			switch {
			case hex && '0' <= c && c <= '9':
				d, mult = rune(c)-'0', 16
			case hex && 'a' <= c && c <= 'f':
				d, mult = rune(c)-'a'+10, 16
			case hex && 'A' <= c && c <= 'F':
				d, mult = rune(c)-'A'+10, 16
			case !hex && '0' <= c && c <= '9':
				d, mult = rune(c)-'0', 10
			default:
				goto done
			}
			if x <= 0x10FFFF {
				x = mult*x + d
			}
			i++
		}
	done:
		if i == i0 {
			return append(dst, '&'), 1
		}
		if i < len(s) && s[i] == ';' {
			i++
		}
		switch {
		case 0x80 <= x && x <= 0x9F:
			x = replacementTable[x-0x80]
		case x == 0 || (0xD800 <= x && x <= 0xDFFF) || x > 0x10FFFF:
			x = '\uFFFD'
		}
		return utf8.AppendRune(dst, x), i
	}
	i := 1
	for i < len(s) {
		c := s[i]
		i++
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if c != ';' {
			i--
		}
		break
	}
	name := s[1:i]
	if len(name) == 0 {
		return append(dst, '&'), 1
	}
	if name[len(name)-1] != ';' && i < len(s) && s[i] == '=' {
		// "&amp=" in an attribute is a literal, for query strings.
		return append(dst, '&'), 1
	}
	if r, ok := namedRef(name); ok {
		return append(dst, r...), i
	}
	return append(dst, '&'), 1
}

// namedRef looks a named reference up as the tokenizer does in attributes:
// the whole name or nothing. Names other than the few common in URLs are
// rare, so they ask the tokenizer itself rather than copy its table.
func namedRef(name []byte) (string, bool) {
	switch string(name) {
	case "amp", "amp;", "AMP", "AMP;":
		return "&", true
	case "lt", "lt;", "LT", "LT;":
		return "<", true
	case "gt", "gt;", "GT", "GT;":
		return ">", true
	case "quot", "quot;", "QUOT", "QUOT;":
		return `"`, true
	}
	lit := "&" + string(name)
	z := html.NewTokenizer(strings.NewReader(`<a x="` + lit + `">`))
	z.Next()
	_, v, _ := z.TagAttr()
	if string(v) == lit {
		return "", false
	}
	return string(v), true
}

// attrsEnd reads the attributes of a tag in their common shapes — bare,
// unquoted or key="value" (or 'value'), apart by white space or '/' — as
// scanTag would, only faster. t[i] is the white space, '/' or '>' after
// the tag's name. It returns the offset past the '>' that closes the tag,
// or 0 for any other shape, or when t ends first; scanTag reads those.
func attrsEnd(t []byte, i int) int {
	// The state between attributes (tsBeforeAttr).
	for i < len(t) {
		switch tagClass[t[i]] {
		case clGT:
			return i + 1
		case clSpace, clSlash:
			i++
			continue
		case clEq:
			// '=' starting a name, or after a name and white space.
			return 0
		}
		// A name (tsKey): anything up to white space, '/', '>' or '='.
		for i < len(t) && tagClass[t[i]] == 0 {
			i++
		}
		if i+1 >= len(t) || t[i] != '=' {
			// A bare attribute: white space, '/' and '>' after it read as
			// between attributes, except white space before '='.
			continue
		}
		i++
		switch q := t[i]; {
		case q == '"' || q == '\'':
			i = indexFrom(t, i+1, q) + 1
		case tagClass[q]&(clSpace|clGT) == 0:
			// Unquoted (tsUnquoted): up to white space or '>'.
			for i < len(t) && tagClass[t[i]]&(clSpace|clGT) == 0 {
				i++
			}
		default:
			return 0
		}
	}
	return 0
}
