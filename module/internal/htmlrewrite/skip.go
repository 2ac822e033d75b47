package htmlrewrite

import "math/bits"

// The fast path over the markup that does not matter. skipData reads a
// tag at a time, byte by byte; on dense markup (a tag every dozen bytes)
// that is most of the rewriter's time. skipWindows instead reads the
// input in windows of 64 bytes: one pass marks, in a 64-bit mask per
// class, where the bytes that can end a token are ('<', '>', quotes,
// white space, '/', '=' …), and each tag in the window is then read from
// the masks with a few bit operations. It follows the same states as
// scanTag, but only for the shapes tags almost always have — names ending
// in ' ', '/' or '>', attributes bare, unquoted or name="value" — and
// stops at any other, leaving it to skipData and scanTag.

// skipTables says, by a tag name's first byte and for each length below
// 16, whether the name may be one the rewriter acts on.
type skipTables struct {
	start [256]uint16 // a start tag that must stop the fast path
	res   [256]uint16 // a URL-loading start tag: stop if it may load from elsewhere
	end   [256]uint16 // an end tag that must stop the fast path (</head>, </iframe>)
	none  [256]uint16 // zeros: end tags load nothing (res of the end tags)
}

// skipTabs holds the tables before [0] and after [1] a <base href>, after
// which every URL-loading tag stops the fast path.
var skipTabs = makeSkipTables()

func makeSkipTables() (t [2]skipTables) {
	for e, name := range elemNames {
		if name == "" {
			continue
		}
		bit := uint16(1) << len(name)
		for _, c := range []byte{name[0], name[0] - ('a' - 'A')} {
			if elem(e).resource() {
				t[0].res[c] |= bit
			} else {
				t[0].start[c] |= bit
			}
			if elem(e) == elemHead || elem(e) == elemIframe {
				t[0].end[c] |= bit
			}
		}
	}
	t[1] = t[0]
	for c := range t[1].start {
		t[1].start[c] |= t[1].res[c]
		t[1].res[c] = 0
	}
	return t
}

// window holds the masks of 64 bytes of input: bit k is set when byte k
// is of the class.
type window struct {
	lt, gt uint64 // '<', '>'
	dq, sq uint64 // '"', '\''
	sp     uint64 // ' '
	del    uint64 // what ends a tag name: ' ', '/', '>' and bytes <= '\r'
	x      uint64 // what ends an attribute name: del, '=' and quotes
	u      uint64 // what may make a URL leave the page's origin: see mayMatter
}

// maskWindow computes the masks of p[:64] a byte at a time.
func maskWindow(p []byte, m *window) {
	p = p[:64]
	*m = window{}
	var sl uint64
	for k, c := range p {
		bit := uint64(1) << k
		switch c {
		case '<':
			m.lt |= bit
		case '>':
			m.gt |= bit
		case '"':
			m.dq |= bit
		case '\'':
			m.sq |= bit
		case ' ':
			m.sp |= bit
		case '/':
			sl |= bit
		case '=':
			m.x |= bit
		case '\\', '&', ':':
			m.u |= bit
		}
		if c <= '\r' {
			m.del |= bit
			m.u |= bit
		}
	}
	m.del |= m.sp | sl | m.gt
	m.x |= m.del | m.dq | m.sq
	m.u |= sl & (sl >> 1)
}

// Results of window.tag besides a tag's end.
const (
	tagStop = 0  // the tag needs skipData
	tagMore = -1 // the tag runs past the window
)

// skipWindows passes over text and the tags that need nothing from the
// rewriter from b[i], i in the data state, and returns where it stopped:
// at the '<' of markup it does not read, or in text with less than a
// window of input left.
func skipWindows(b []byte, i int, tab *skipTables) int {
	var m window
	w := i
	if len(b)-w < 64 {
		return w
	}
	maskWindow(b[w:w+64], &m)
	pos := 0
	for {
		t := bits.TrailingZeros64(m.lt >> pos << pos)
		if t > 60 {
			// Text to the window's end, or a tag too close to it: the
			// next window starts here.
			w += t
			if len(b)-w < 64 {
				return w
			}
			maskWindow(b[w:w+64], &m)
			pos = 0
			continue
		}
		end := m.tag(b[w:w+64], t, tab)
		switch {
		case end > 0:
			pos = end
		case end == tagMore && t > 0:
			w += t
			if len(b)-w < 64 {
				return w
			}
			maskWindow(b[w:w+64], &m)
			pos = 0
		default:
			return w + t
		}
	}
}

// tag reads the tag whose '<' is p[t], t <= 60, from the masks of p[:64].
// It returns the offset past its '>' when the tag needs nothing from the
// rewriter, tagStop when skipData must read it, or tagMore when it does
// not end in the window.
func (m *window) tag(p []byte, t int, tab *skipTables) int {
	p = p[:64]
	n := t + 1
	c := p[n]
	endTag := c == '/'
	if endTag {
		n++
		c = p[n]
	}
	if !isLetter(c) {
		return tagStop // a comment, doctype, bogus comment or text
	}
	d := m.del >> (n + 1)
	if d == 0 {
		return tagMore
	}
	e := n + 1 + bits.TrailingZeros64(d)
	res := false
	if l := e - n; l < 16 {
		switch {
		case endTag:
			if tab.end[c]>>l&1 != 0 {
				return tagStop
			}
		case tab.start[c]>>l&1 != 0:
			return tagStop
		default:
			res = tab.res[c]>>l&1 != 0
		}
	}
	var end int
	switch p[e] {
	case '>':
		end = e + 1
	case ' ', '/':
		end = m.attrs(p, e)
		if end <= 0 {
			return end
		}
	default:
		return tagStop // white space other than ' ', or a control byte
	}
	if res && m.u&(lowBits(end)&^lowBits(t)) != 0 {
		return tagStop
	}
	return end
}

// attrs reads a tag's attributes from p[e], the ' ' or '/' after its
// name, as scanTag does for the shapes it knows, and returns the offset
// past the tag's '>', tagStop or tagMore. Between quoted values a '>'
// ends the tag in every state, so the work is in telling whether a quote
// opens a value: only right after an '=' that ends an attribute name,
// which here must follow ' ', the tag name or a quoted value.
func (m *window) attrs(p []byte, e int) int {
	p = p[:64]
	// s: a byte after which the tag is between attributes, the name's end
	// or a closing quote.
	s := e
	for {
		if s >= 63 {
			return tagMore
		}
		gm := m.gt >> (s + 1)
		if gm == 0 {
			return tagMore
		}
		g := s + 1 + bits.TrailingZeros64(gm)
		qm := (m.dq | m.sq) & lowBits(g) &^ lowBits(s+1)
		if qm == 0 {
			return g + 1
		}
		q := bits.TrailingZeros64(qm)
		if p[q-1] != '=' {
			return tagStop
		}
		// The name before the '=': from the last byte that ends a name.
		r := 63 - bits.LeadingZeros64(m.x&lowBits(q-1))
		if r >= q-2 {
			return tagStop // no name: the '=' is one
		}
		if r != s {
			// White space before the name: the tag is between attributes
			// unless the last byte before it is an '=' (then the name is
			// an unquoted value).
			if p[r] != ' ' {
				return tagStop
			}
			k := 63 - bits.LeadingZeros64(^m.sp&lowBits(r))
			if c := p[k]; c == '=' || c <= '\r' {
				return tagStop
			}
		}
		if q >= 63 {
			return tagMore
		}
		km := m.dq
		if p[q] == '\'' {
			km = m.sq
		}
		cm := km >> (q + 1)
		if cm == 0 {
			return tagMore
		}
		s = q + 1 + bits.TrailingZeros64(cm)
	}
}

// lowBits returns a mask of the bits below n, n <= 64.
func lowBits(n int) uint64 { return 1<<n - 1 }

// useWindows: skipData goes through skipFast first. Only with vector
// instructions to make the masks is that faster than skipData alone.
var useWindows = haveVector
