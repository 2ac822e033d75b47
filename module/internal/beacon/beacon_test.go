package beacon

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// markEnv makes every action visible in the output.
type markEnv struct{}

func (markEnv) ID(name, v string) string { return "ID(" + name + ")" }
func (markEnv) IP(v string) string       { return "IP" }
func (markEnv) UA(v string) string       { return "UA" }
func (markEnv) Lang(v string) string     { return "LANG" }
func (markEnv) URL(v string) string      { return "URL" }
func (markEnv) Referrer(v string) string { return "REF" }
func (markEnv) Redact(v string) string {
	if _, err := strconv.ParseFloat(v, 64); err == nil && len(v) < 9 {
		return v // short numbers hold no phone or card number
	}
	return "RED(" + v + ")"
}

func TestGA4Query(t *testing.T) {
	in := "v=2&tid=G-ABC&cid=123.456&uid=user%40example.com&_uip=203.0.113.9&ul=de-ch&dl=https%3A%2F%2Fshop.example%2F%3Fq%3Dx&dr=https%3A%2F%2Fgoogle.com%2Fsearch&dt=Hello&en=page_view&ep.query=shoes&epn.value=3&up.email=a%40b.c&uafvl=Chrome&sr=1920x1080&unknown_thing=1"
	out, st, err := GA4().Query.RewriteQuery(in, markEnv{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := url.ParseQuery(out)
	want := map[string]string{
		"v": "2", "tid": "G-ABC", "cid": "ID(cid)", "uid": "ID(uid)", "_uip": "IP", "ul": "LANG",
		"dl": "URL", "dr": "REF", "dt": "RED(Hello)", "en": "page_view", "ep.query": "RED(shoes)",
		"epn.value": "3", "sr": "1920x1080",
	}
	for k, v := range want {
		if got.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, got.Get(k), v)
		}
	}
	for _, gone := range []string{"up.email", "uafvl", "unknown_thing"} {
		if got.Has(gone) {
			t.Errorf("%s not dropped", gone)
		}
	}
	if len(got) != len(want) || st.Pseudonymised != 2 || st.Dropped != 3 {
		t.Errorf("got %d fields, stats %+v", len(got), st)
	}
}

func TestMatomoQuery(t *testing.T) {
	in := "idsite=1&rec=1&_id=abcdef0123456789&cip=198.51.100.7&ua=Mozilla%2F5.0&lat=51.5&long=-0.12&city=London&country=gb&url=https%3A%2F%2Fshop%2F&urlref=https%3A%2F%2Fref%2Fx&action_name=Cart&search=secret&_cvar=%7B%7D&token_auth=t"
	out, _, err := Matomo().Query.RewriteQuery(in, markEnv{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := url.ParseQuery(out)
	for k, v := range map[string]string{"idsite": "1", "_id": "ID(_id)", "cip": "IP", "ua": "UA", "country": "GB", "url": "URL", "urlref": "REF", "action_name": "RED(Cart)"} {
		if got.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, got.Get(k), v)
		}
	}
	for _, gone := range []string{"lat", "long", "city", "search", "_cvar", "token_auth"} {
		if got.Has(gone) {
			t.Errorf("%s not dropped", gone)
		}
	}
}

// hexEnv pseudonymises like the privacy filter: 32 hex digits.
type hexEnv struct{ markEnv }

func (hexEnv) ID(name, v string) string { return "0123456789abcdef0123456789abcdef" }

func TestMatomoBulkAndShortIDs(t *testing.T) {
	in := `{"requests":["?idsite=1&rec=1&_id=abcdef0123456789&cid=0123456789abcdef&uid=jane&cip=198.51.100.7&lat=51.5",` +
		`"?idsite=1&rec=1&_id=abcdef0123456789&url=https%3A%2F%2Fshop%2F",{"not":"a query"},"idsite=2&token_auth=t"],` +
		`"token_auth":"secret","send_image":0}`
	out, st, err := Matomo().JSON.RewriteJSON([]byte(in), hexEnv{})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"requests":["?idsite=1\u0026rec=1\u0026_id=0123456789abcdef\u0026cid=0123456789abcdef\u0026uid=0123456789abcdef0123456789abcdef\u0026cip=IP",` +
		`"?idsite=1\u0026rec=1\u0026_id=0123456789abcdef\u0026url=URL","idsite=2"],"send_image":0}`
	if string(out) != want {
		t.Errorf("bulk:\n got %s\nwant %s", out, want)
	}
	if st.Pseudonymised != 4 || st.Dropped < 4 {
		t.Errorf("stats: %+v", st)
	}
	if _, _, err := Matomo().JSON.RewriteJSON([]byte(`{"requests":["?_id=%zz"]}`), hexEnv{}); err == nil {
		t.Error("a bulk request with invalid percent-encoding was accepted")
	}
}

func TestMalformedQuery(t *testing.T) {
	if _, _, err := GA4().Query.RewriteQuery("cid=%zz", markEnv{}); err == nil {
		t.Fatal("invalid percent-encoding accepted")
	}
}

func TestGA4MeasurementProtocolJSON(t *testing.T) {
	in := `{"client_id":"123.456","user_id":"u-1","ip_override":"203.0.113.9","user_properties":{"email":{"value":"a@b.c"}},
	"events":[{"name":"purchase","params":{"page_location":"https://shop/?email=a@b.c","page_title":"Order for a@b.c","session_id":42,"engagement_time_msec":100,"value":9.5,"items":[{"item_name":"Shoe"}]}}],"extra":1}`
	out, _, err := GA4().JSON.RewriteJSON([]byte(in), markEnv{})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got["client_id"] != "ID(client_id)" || got["user_id"] != "ID(user_id)" || got["ip_override"] != "IP" {
		t.Errorf("ids/ip: %s", out)
	}
	if _, ok := got["user_properties"]; ok {
		t.Error("user_properties kept")
	}
	if _, ok := got["extra"]; ok {
		t.Error("unknown field kept")
	}
	ev := got["events"].([]any)[0].(map[string]any)
	params := ev["params"].(map[string]any)
	if ev["name"] != "purchase" || params["page_location"] != "URL" || params["page_title"] != "RED(Order for a@b.c)" || params["session_id"] != "ID(events[].params.session_id)" {
		t.Errorf("event: %s", out)
	}
	if params["engagement_time_msec"] != float64(100) || params["value"] != float64(9.5) {
		t.Errorf("numbers: %s", out)
	}
}

func TestJSONKeysCannotPoseAsPaths(t *testing.T) {
	out, _, err := GA4().JSON.RewriteJSON([]byte(`{"events[].name":"a@b.c","consent.x":"y","events":[{"params":{"phone":77012345678,"qty":2}}]}`), markEnv{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "a@b.c") || strings.Contains(string(out), "consent.x") || strings.Contains(string(out), "77012345678") || !strings.Contains(string(out), `"qty":2`) {
		t.Errorf("got %s", out)
	}
}

func TestPlausibleAndUmami(t *testing.T) {
	out, _, err := Plausible().JSON.RewriteJSON([]byte(`{"n":"pageview","u":"https://site/x?email=a","d":"site","r":"https://ref/y","p":{"author":"Bob"},"evil":"x"}`), markEnv{})
	if err != nil || string(out) != `{"d":"site","n":"pageview","p":{"author":"RED(Bob)"},"r":"REF","u":"URL"}` {
		t.Errorf("plausible: %s %v", out, err)
	}
	out, _, err = Umami().JSON.RewriteJSON([]byte(`{"type":"event","payload":{"website":"w1","url":"/x","referrer":"https://r/","title":"T","language":"en-US","screen":"1x1","data":{"k":"v"},"ip":"1.2.3.4"}}`), markEnv{})
	if err != nil || string(out) != `{"payload":{"data":{"k":"RED(v)"},"language":"LANG","referrer":"REF","screen":"1x1","title":"RED(T)","url":"URL","website":"w1"},"type":"event"}` {
		t.Errorf("umami: %s %v", out, err)
	}
}

func TestJSONLimits(t *testing.T) {
	deep := strings.Repeat(`{"a":`, MaxJSONDepth+5) + "1" + strings.Repeat("}", MaxJSONDepth+5)
	for name, body := range map[string]string{"deep": deep, "broken": `{"client_id":`, "trailing": `{} {}`, "empty": ``} {
		if _, _, err := GA4().JSON.RewriteJSON([]byte(body), markEnv{}); err == nil {
			t.Errorf("%s JSON accepted", name)
		}
	}
}

func TestFieldsWithOverrides(t *testing.T) {
	f := GA4().Query.With([]Rule{{"ep.*", Drop}, {"sr", Drop}}, Keep)
	if f.Action("ep.x") != Drop || f.Action("sr") != Drop || f.Action("cid") != ID || f.Action("whatever") != Keep {
		t.Error("overrides not applied in front")
	}
	if _, err := ParseAction("explode"); err == nil {
		t.Error("unknown action accepted")
	}
}

func TestForPath(t *testing.T) {
	for path, want := range map[string]string{"/g/collect": "ga4", "/mp/collect": "ga4", "/matomo.php": "matomo", "/js/piwik.php": "matomo", "/api/event": "plausible", "/api/send": "umami", "/watch/123": "yandex_metrica", "/x": ""} {
		if got := ForPath(path); got != want {
			t.Errorf("ForPath(%q) = %q, want %q", path, got, want)
		}
	}
}

// rewriteQueryReference is RewriteQuery as first written: every value
// decoded, every rewritten pair escaped with url.QueryEscape.
func (f Fields) rewriteQueryReference(raw string, env Env) (string, Stats, error) {
	var st Stats
	var b strings.Builder
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
		value, err := url.QueryUnescape(v)
		if err != nil {
			return "", st, fmt.Errorf("malformed query: %w", err)
		}
		for i := 0; i < len(name); i++ {
			if name[i] < 0x20 || name[i] == 0x7f {
				return "", st, fmt.Errorf("malformed query: control character in field name %q", truncate(name))
			}
		}
		a := f.Action(name)
		nv := Apply(a, name, value, env)
		switch {
		case nv == "":
			st.Dropped++
			continue
		case a == ID:
			st.Pseudonymised++
		case nv != value:
			st.Changed++
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		if nv == value && a == Keep {
			b.WriteString(pair)
			continue
		}
		b.WriteString(url.QueryEscape(name))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(nv))
	}
	return b.String(), st, nil
}

func FuzzRewriteQuery(f *testing.F) {
	f.Add("cid=1&_uip=1.2.3.4&dl=http%3A%2F%2Fx")
	f.Add("a=%zz")
	f.Add("&&==;;")
	f.Add("v=%zz&tid=a+b%20c&en=%&unknown=%zz&up.x=%4")
	f.Add("tid=&v&=x&sr=1920%C3%97&dt=caf%C3%A9+%E2%82%AC&ep.a%20b=x%00y")
	f.Fuzz(func(t *testing.T, q string) {
		out, st, err := GA4().Query.RewriteQuery(q, markEnv{})
		// Passing kept values on undecoded and escaping in place give
		// what decoding and url.QueryEscape gave.
		wout, wst, werr := GA4().Query.rewriteQueryReference(q, markEnv{})
		if out != wout || st != wst || fmt.Sprint(err) != fmt.Sprint(werr) {
			t.Fatalf("RewriteQuery(%q) = %q, %+v, %v; the reference gives %q, %+v, %v", q, out, st, err, wout, wst, werr)
		}
		var b strings.Builder
		if writeQueryEscaped(&b, q); b.String() != url.QueryEscape(q) {
			t.Fatalf("writeQueryEscaped(%q) = %q, url.QueryEscape %q", q, b.String(), url.QueryEscape(q))
		}
		if err != nil {
			return
		}
		vals, perr := url.ParseQuery(out)
		if perr != nil {
			t.Fatalf("output not a valid query: %q", out)
		}
		for k, vs := range vals {
			a := GA4().Query.Action(k)
			for _, v := range vs {
				if a == ID && !strings.HasPrefix(v, "ID(") {
					t.Fatalf("identifier %s passed through: %q", k, v)
				}
			}
		}
	})
}

func FuzzRewriteJSON(f *testing.F) {
	f.Add(`{"client_id":"1","events":[{"name":"x","params":{"a":"b"}}]}`)
	f.Add(`[1,2,{"client_id":3}]`)
	f.Add(`{"requests":["?idsite=1&_id=abc&cip=1.2.3.4","?x=%zz",7,{"a":"b"}],"token_auth":"t"}`)
	f.Fuzz(func(t *testing.T, body string) {
		// Matomo's bulk requests: every query inside is rewritten, none
		// passes as sent.
		if out, _, err := Matomo().JSON.RewriteJSON([]byte(body), markEnv{}); err == nil {
			var bulk struct{ Requests []string }
			if !json.Valid(out) {
				t.Fatalf("invalid JSON out: %q", out)
			}
			if json.Unmarshal(out, &bulk) == nil {
				for _, r := range bulk.Requests {
					q, perr := url.ParseQuery(strings.TrimPrefix(r, "?"))
					if perr != nil {
						t.Fatalf("bulk request out is not a query: %q", r)
					}
					for k, vs := range q {
						if a := Matomo().Query.Action(k); (a == ID || a == ShortID) && !strings.HasPrefix(vs[0], "ID(") {
							t.Fatalf("identifier %s passed through: %q", k, r)
						}
					}
				}
			}
		}
		out, _, err := GA4().JSON.RewriteJSON([]byte(body), markEnv{})
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON out: %q", out)
		}
		var root map[string]any
		if json.Unmarshal(out, &root) == nil {
			if v, ok := root["client_id"]; ok && !strings.HasPrefix(fmt.Sprint(v), "ID(") {
				t.Fatalf("client_id passed through: %s", out)
			}
		}
	})
}
