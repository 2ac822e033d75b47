// Package beacon knows where analytics formats keep their data — in URL
// queries, form bodies and JSON bodies — and rewrites each field by what it
// is: identifiers pseudonymised, IPs truncated, user agents generalised,
// URLs cleaned, free text redacted, and anything unknown dropped.
package beacon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// Action is what happens to a field.
type Action int

// Actions, from the safest down.
const (
	// Drop removes the field.
	Drop Action = iota
	// Keep passes the field unchanged (counters, flags, versions).
	Keep
	// ID replaces an identifier with a pseudonym (or drops it).
	ID
	// IP truncates an IP address.
	IP
	// UA generalises a user agent.
	UA
	// Lang reduces a language tag to its primary language.
	Lang
	// URL cleans a URL (denied parameters, click ids, PII).
	URL
	// Referrer cuts a URL to its origin.
	Referrer
	// Redact removes e-mail addresses, phone and card numbers from text.
	Redact
	// Country keeps a country code, upper-cased, and nothing finer.
	Country
	// ShortID is ID for formats that take 16 hex digits (Matomo's visitor
	// IDs): the first 16 digits of the pseudonym.
	ShortID
	// Query rewrites a JSON string that holds a URL query, such as one of
	// Matomo's bulk requests, field by field with JSONRules.Queries.
	Query
)

// shortIDLen is the length of a ShortID pseudonym.
const shortIDLen = 16

var actionNames = map[string]Action{
	"drop": Drop, "keep": Keep, "hash": ID, "truncate_ip": IP, "generalize_ua": UA,
	"language": Lang, "clean_url": URL, "referrer": Referrer, "redact": Redact, "coarsen_geo": Country,
}

// ParseAction parses a Caddyfile action name.
func ParseAction(s string) (Action, error) {
	if a, ok := actionNames[s]; ok {
		return a, nil
	}
	names := make([]string, 0, len(actionNames))
	for n := range actionNames {
		names = append(names, n)
	}
	return Drop, fmt.Errorf("unknown action %q (want one of %s)", s, strings.Join(names, ", "))
}

// Env applies actions to values; the privacy filter implements it with the
// visitor's decision, keys and the UA parser. An empty result drops the
// field.
type Env interface {
	ID(name, value string) string
	IP(value string) string
	UA(value string) string
	Lang(value string) string
	URL(value string) string
	Referrer(value string) string
	Redact(value string) string
}

// Apply runs one action on a value.
func Apply(a Action, name, value string, env Env) string {
	switch a {
	case Keep:
		return value
	case ID:
		return env.ID(name, value)
	case ShortID:
		v := env.ID(name, value)
		return v[:min(len(v), shortIDLen)]
	case IP:
		return env.IP(value)
	case UA:
		return env.UA(value)
	case Lang:
		return env.Lang(value)
	case URL:
		return env.URL(value)
	case Referrer:
		return env.Referrer(value)
	case Redact:
		return env.Redact(value)
	case Country:
		v := strings.ToUpper(strings.TrimSpace(value))
		if len(v) == 2 && v[0] >= 'A' && v[0] <= 'Z' && v[1] >= 'A' && v[1] <= 'Z' {
			return v
		}
	}
	return ""
}

// Rule maps a field name, or a prefix ending in '*', to an action.
type Rule struct {
	Field  string
	Action Action
}

// Fields is an ordered rule list: exact names first, then prefixes.
type Fields struct {
	exact    map[string]Action
	prefixes []Rule
	// Unknown is the action for fields no rule names; Drop by default
	// (an allow-list).
	Unknown Action
}

// NewFields compiles rules.
func NewFields(rules []Rule, unknown Action) Fields {
	f := Fields{exact: make(map[string]Action), Unknown: unknown}
	for _, r := range rules {
		if p, ok := strings.CutSuffix(r.Field, "*"); ok {
			f.prefixes = append(f.prefixes, Rule{p, r.Action})
			continue
		}
		f.exact[r.Field] = r.Action
	}
	return f
}

// Known reports whether the rules cover anything at all (a profile
// without query rules takes no query).
func (f Fields) Known() bool { return len(f.exact) > 0 || len(f.prefixes) > 0 || f.Unknown != Drop }

// With returns f with rules added in front and a new Unknown action.
func (f Fields) With(rules []Rule, unknown Action) Fields {
	out := Fields{exact: make(map[string]Action, len(f.exact)+len(rules)), Unknown: unknown}
	for k, v := range f.exact {
		out.exact[k] = v
	}
	var front []Rule
	for _, r := range rules {
		if p, ok := strings.CutSuffix(r.Field, "*"); ok {
			front = append(front, Rule{p, r.Action})
			continue
		}
		out.exact[r.Field] = r.Action
	}
	out.prefixes = append(front, f.prefixes...)
	return out
}

// Action returns the action for a field name.
func (f Fields) Action(name string) Action {
	if a, ok := f.exact[name]; ok {
		return a
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(name, p.Field) {
			return p.Action
		}
	}
	return f.Unknown
}

// Stats counts what a rewrite did, for proof of enforcement.
type Stats struct {
	Dropped, Pseudonymised, Changed int
}

// RewriteQuery rewrites a URL query (or a form body) field by field,
// keeping the fields' order. It parses strictly: invalid percent-encoding,
// semicolons and control characters in names are errors, never a
// pass-through.
func (f Fields) RewriteQuery(raw string, env Env) (string, Stats, error) {
	var st Stats
	var b strings.Builder
	b.Grow(len(raw))
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		if strings.IndexByte(pair, ';') >= 0 {
			return "", st, fmt.Errorf("malformed query: semicolon in %q", truncate(pair))
		}
		k, v, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			return "", st, fmt.Errorf("malformed query: %w", err)
		}
		a := f.Action(name)
		value := v
		if a == Drop || a == Keep {
			// The value is passed on as sent or not at all: check it
			// without decoding a copy.
			if !validQueryEscapes(v) {
				_, err = url.QueryUnescape(v)
			}
		} else {
			value, err = url.QueryUnescape(v)
		}
		if err != nil {
			return "", st, fmt.Errorf("malformed query: %w", err)
		}
		for i := 0; i < len(name); i++ {
			if name[i] < 0x20 || name[i] == 0x7f {
				return "", st, fmt.Errorf("malformed query: control character in field name %q", truncate(name))
			}
		}
		nv := value
		if a != Keep {
			nv = Apply(a, name, value, env)
		}
		switch {
		case nv == "":
			st.Dropped++
			continue
		case a == ID || a == ShortID:
			st.Pseudonymised++
		case nv != value:
			st.Changed++
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		if nv == value && a == Keep {
			// Unchanged: keep the sender's own encoding.
			b.WriteString(pair)
			continue
		}
		writeQueryEscaped(&b, name)
		b.WriteByte('=')
		writeQueryEscaped(&b, nv)
	}
	return b.String(), st, nil
}

// validQueryEscapes reports whether url.QueryUnescape accepts s: every
// '%' starts a %XX escape.
func validQueryEscapes(s string) bool {
	for i := strings.IndexByte(s, '%'); i >= 0; i = strings.IndexByte(s, '%') {
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return false
		}
		s = s[i+3:]
	}
	return true
}

// writeQueryEscaped writes url.QueryEscape(s) to b without making the
// escaped string first.
func writeQueryEscaped(b *strings.Builder, s string) {
	const hex = "0123456789ABCDEF"
	plain := 0 // s[plain:i] needs no escaping
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved[c] {
			continue
		}
		b.WriteString(s[plain:i])
		plain = i + 1
		if c == ' ' {
			b.WriteByte('+')
			continue
		}
		b.Write([]byte{'%', hex[c>>4], hex[c&15]})
	}
	b.WriteString(s[plain:])
}

// unreserved marks the bytes url.QueryEscape writes as they are.
var unreserved = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~'
	}
	return t
}()

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// MaxJSONDepth bounds nesting in JSON bodies.
const MaxJSONDepth = 32

// JSONRules map dotted paths to actions. A path names object keys from the
// root, with "[]" for any array element and "*" for any key: for example
// "client_id", "events[].params.*", "user_properties".
type JSONRules struct {
	Fields
	// Queries rewrite the strings whose action is Query (a profile's own
	// query rules, for Matomo's bulk requests).
	Queries Fields
}

// RewriteJSON rewrites a JSON body; values whose path no rule names follow
// Unknown (dropped by default). Malformed or too deeply nested JSON is an
// error.
func (j JSONRules) RewriteJSON(body []byte, env Env) ([]byte, Stats, error) {
	var st Stats
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, st, fmt.Errorf("malformed JSON: %w", err)
	}
	if dec.More() {
		return nil, st, fmt.Errorf("malformed JSON: trailing data")
	}
	out, keep, err := j.walk(v, "", 0, env, &st)
	if err != nil {
		return nil, st, err
	}
	if !keep {
		out = map[string]any{}
	}
	b, err := json.Marshal(out)
	return b, st, err
}

func (j JSONRules) walk(v any, path string, depth int, env Env, st *Stats) (any, bool, error) {
	if depth > MaxJSONDepth {
		return nil, false, fmt.Errorf("JSON nested deeper than %d levels", MaxJSONDepth)
	}
	switch x := v.(type) {
	case map[string]any:
		if path != "" {
			// A container where a rule expects a value (an identifier sent
			// as an object, say) is dropped whole.
			if a, ok := j.exact[path]; ok && a != Keep {
				st.Dropped++
				return nil, false, nil
			}
		}
		out := make(map[string]any, len(x))
		for k, child := range x {
			if k == "" || strings.ContainsAny(k, ".[]*") {
				// Such a key could pose as another path ("events[].name").
				st.Dropped++
				continue
			}
			p := k
			if path != "" {
				p = path + "." + k
			}
			nv, keep, err := j.walk(child, p, depth+1, env, st)
			if err != nil {
				return nil, false, err
			}
			if keep {
				out[k] = nv
			}
		}
		return out, true, nil
	case []any:
		if a, ok := j.exact[path]; ok && a != Keep {
			st.Dropped++
			return nil, false, nil
		}
		out := make([]any, 0, len(x))
		for _, child := range x {
			nv, keep, err := j.walk(child, path+"[]", depth+1, env, st)
			if err != nil {
				return nil, false, err
			}
			if keep {
				out = append(out, nv)
			}
		}
		return out, true, nil
	}
	a := j.action(path)
	switch x := v.(type) {
	case string:
		if a == Query {
			return j.rewriteQueryString(x, env, st)
		}
		nv := Apply(a, path, x, env)
		if nv == "" {
			st.Dropped++
			return nil, false, nil
		}
		if a == ID || a == ShortID {
			st.Pseudonymised++
		}
		return nv, true, nil
	case json.Number, bool, nil:
		if a == Keep {
			return x, true, nil
		}
		if a == Redact {
			// A long number may be a phone or card number.
			if n, ok := x.(json.Number); ok && env.Redact(n.String()) != n.String() {
				st.Dropped++
				return nil, false, nil
			}
			return x, true, nil
		}
		if (a == ID || a == ShortID) && x != nil {
			// Numeric identifiers become pseudonyms too.
			nv := Apply(a, path, fmt.Sprint(x), env)
			if nv == "" {
				st.Dropped++
				return nil, false, nil
			}
			st.Pseudonymised++
			return nv, true, nil
		}
		st.Dropped++
		return nil, false, nil
	}
	return nil, false, nil
}

// rewriteQueryString rewrites a query held in a JSON string ("?idsite=1&
// _id=…", as in Matomo's bulk requests) with the Queries rules. A malformed
// query is an error, as in a URL.
func (j JSONRules) rewriteQueryString(s string, env Env, st *Stats) (any, bool, error) {
	raw, mark := strings.CutPrefix(s, "?")
	q, qst, err := j.Queries.RewriteQuery(raw, env)
	st.Dropped += qst.Dropped
	st.Pseudonymised += qst.Pseudonymised
	st.Changed += qst.Changed
	if err != nil {
		return nil, false, err
	}
	if q == "" {
		st.Dropped++
		return nil, false, nil
	}
	if mark {
		q = "?" + q
	}
	return q, true, nil
}

// action looks a JSON path up, trying "*" in place of the last key.
func (j JSONRules) action(path string) Action {
	if a, ok := j.exact[path]; ok {
		return a
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		if a, ok := j.exact[path[:i]+".*"]; ok {
			return a
		}
	}
	for _, p := range j.prefixes {
		if strings.HasPrefix(path, p.Field) {
			return p.Action
		}
	}
	return j.Unknown
}
