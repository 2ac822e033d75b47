// Package cookies scans Cookie and Set-Cookie header values without
// allocating, tolerating the malformed input browsers and scripts produce.
package cookies

import "strings"

// Pair is one cookie of a Cookie header.
type Pair struct {
	Name  string
	Value string
	// Raw is the pair exactly as sent (trimmed), for rebuilding the header.
	Raw string
}

// Scanner walks the pairs of a Cookie header value.
type Scanner struct {
	rest string
}

// NewScanner returns a scanner over one Cookie header value.
func NewScanner(header string) Scanner { return Scanner{rest: header} }

// Next returns the next pair. Segments without a name (";;", "=x") are
// returned with an empty Name so the caller can decide what to do with them;
// a segment without '=' is a name with an empty value, as browsers send it.
func (s *Scanner) Next() (Pair, bool) {
	for s.rest != "" {
		var part string
		if i := strings.IndexByte(s.rest, ';'); i >= 0 {
			part, s.rest = s.rest[:i], s.rest[i+1:]
		} else {
			part, s.rest = s.rest, ""
		}
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, value := part, ""
		if i := strings.IndexByte(part, '='); i >= 0 {
			name, value = strings.TrimSpace(part[:i]), strings.TrimSpace(part[i+1:])
		}
		return Pair{Name: name, Value: value, Raw: part}, true
	}
	return Pair{}, false
}

// Get returns the value of the first cookie called name in a Cookie header,
// with surrounding double quotes removed.
func Get(header, name string) (string, bool) {
	sc := NewScanner(header)
	for {
		p, ok := sc.Next()
		if !ok {
			return "", false
		}
		if p.Name == name {
			v := p.Value
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
}

// SetCookieName returns the cookie name of a Set-Cookie header value, or ""
// when it has none (a malformed header, which callers should drop).
func SetCookieName(line string) string {
	i := strings.IndexByte(line, '=')
	if i < 0 {
		return ""
	}
	name := strings.TrimSpace(line[:i])
	if strings.IndexByte(name, ';') >= 0 {
		return ""
	}
	return name
}
