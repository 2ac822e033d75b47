package consentgate

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/consentgate/consentgate/module/internal/geo/geotest"
)

// matrixSite puts every profile behind one gateway, each under its own
// prefix, in front of one recording collector. The placeholders go to the
// collector too, so that they are checked like the rest.
const matrixSite = `
(collector) {
	reverse_proxy {{UPSTREAM}} {
		header_up X-Visitor {http.privacy.visitor}
		header_up X-UA-Family {http.ua.family}
		header_up X-UA-OS {http.ua.os}
		header_up X-UA-Device {http.ua.device}
		header_up X-Region {http.geo.region}
	}
}

http://127.0.0.1:{{PORT}} {
	consent
	handle_path /ga4/* {
		privacy_filter ga4
		import collector
	}
	handle_path /matomo/* {
		privacy_filter matomo
		import collector
	}
	handle_path /plausible/* {
		privacy_filter plausible
		import collector
	}
	handle_path /umami/* {
		privacy_filter umami
		import collector
	}
	handle_path /yandex/* {
		privacy_filter yandex_metrica
		import collector
	}
	handle_path /generic/* {
		privacy_filter generic {
			field uid hash
			field ip truncate_ip
			field ua generalize_ua
			field page clean_url
			field ref referrer
			field note redact
			field event keep
			field user.id hash
			field user.ip truncate_ip
			field user.agent generalize_ua
		}
		import collector
	}
	respond "site"
}
`

// What a visitor's browser and tracker send that must never reach
// analytics, besides the client's address and the consent's own ID.
const (
	matrixGA4ClientID = "1187654321.1712345678"
	matrixUserID      = "user-4f2a9c"
	matrixMatomoID    = "a1b2c3d4e5f60718"
	matrixYandexUID   = "1712345678123456789"
	matrixUmamiID     = "umami-distinct-4f2a9c"
	matrixGenericID   = "gen-user-4f2a9c"
	matrixTokenAuth   = "0123abcdtoken"
	matrixCookies     = "_ga=GA1.1." + matrixGA4ClientID + "; _ga_MATRIX=GS1.1.1712345678.1.1.1712345679.0.0.0; " +
		"_pk_id.1.1fff=" + matrixMatomoID + ".1712345678.; _ym_uid=" + matrixYandexUID + "; _ym_d=1712345678; session=sess-4f2a9c"
	matrixPage = "https://shop.example/shop/p?color=red&email=jane%40example.com&gclid=CLICK123"
)

// matrixForbidden are found nowhere in what the collector receives: client
// IDs, the session cookie, the full User-Agent and its distinctive version
// tokens, search terms and e-mail, click IDs and credentials.
var matrixForbidden = []string{
	"1187654321", "1712345678", matrixUserID, matrixMatomoID, matrixUmamiID, matrixGenericID, "sess-4f2a9c",
	chromeUA, "6367.91", "537.36", "Win64", "jane", "CLICK123", matrixTokenAuth, "_ga=", "_pk_id", "_ym_",
	"umami-session-token-8c1d",
}

// matrixVisitor is one visitor (with or without analytics consent) coming
// from one address.
type matrixVisitor struct {
	c         *client
	consented bool
	addr      netip.Addr
	ip        string   // as the proxy in front of the gateway writes it
	forms     []string // the same address as clients write it into fields
	next      int      // the next form to use, in turn
	country   string
	region    string
	truncated string // what the collector may see instead
	forbidden []string
}

// form returns the next way of writing the address, in turn.
func (v *matrixVisitor) form() string {
	f := v.forms[v.next%len(v.forms)]
	v.next++
	return f
}

// queryForm returns the next way of writing the address, encoded for a
// query in turn as url.QueryEscape does or with every byte escaped.
func (v *matrixVisitor) queryForm() string {
	if v.next%2 == 0 {
		return qe(v.form())
	}
	return percentAll(v.form())
}

// jsonIP writes the address as a JSON string with its dots or colons
// escaped ("203\u002e0\u002e…"), which a JSON decoder reads as the address.
func (v *matrixVisitor) jsonIP() string {
	s := strings.ReplaceAll(v.ip, ".", `\u002e`)
	return `"` + strings.ReplaceAll(s, ":", `\u003a`) + `"`
}

// percentAll percent-encodes every byte of s.
func percentAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}

func newMatrixVisitor(g *gateway, c *client, consented bool, ip string) *matrixVisitor {
	v := &matrixVisitor{c: c, consented: consented, addr: netip.MustParseAddr(ip), ip: ip}
	if v.addr.Is4() {
		v.forms = []string{ip, "::ffff:" + ip, ip + ":4711", "::FFFF:" + ip, " " + ip + " "}
		v.country, v.region, v.truncated = "DE", "BE", "203.0.0.0"
	} else {
		v.forms = []string{ip, "2001:0db8:0001:0002:0000:0000:0000:0077", "[" + ip + "]", "[" + ip + "]:4711",
			ip + "%eth0", strings.ToUpper(ip), "2001:db8:1:2:0:0:0:77"}
		v.country, v.truncated = "KZ", "2001:db8::"
	}
	v.forbidden = append(append([]string(nil), matrixForbidden...), v.forms...)
	v.forbidden = append(v.forbidden, percentAll(ip))
	v.forbidden = append(v.forbidden, base64.StdEncoding.EncodeToString([]byte(ip)), base64.RawURLEncoding.EncodeToString([]byte(ip)))
	if consented {
		// The consent's own ID and token outlive no consent but must
		// not reach analytics either.
		v.forbidden = append(v.forbidden, c.get(g.url("/_consent/state")).json(c.t).ID)
		for _, k := range c.c.Jar.Cookies(nil) {
			v.forbidden = append(v.forbidden, k.Value)
		}
	}
	return v
}

// headers are what a browser behind a CDN or proxy sends: the address in
// every header that carries one (and in one no list names, and one written
// with underscores), the full UA and its Client Hints, and the trackers'
// cookies.
func (v *matrixVisitor) headers() []string {
	fwd := "for=" + v.ip
	if v.addr.Is6() {
		fwd = `for="[` + v.ip + `]:4711";proto=https`
	}
	return []string{
		"User-Agent", chromeUA,
		"X-Forwarded-For", v.ip, "X-Real-IP", v.ip, "True-Client-IP", v.ip, "CF-Connecting-IP", v.ip,
		"Client-IP", v.ip, "X-Client-IP", v.ip, "X-Cluster-Client-IP", v.ip, "Fastly-Client-IP", v.ip,
		"Forwarded", fwd, "X-Original-Forwarded-For", v.ip, "X_Forwarded_For", v.ip,
		"X-Umami-Cache", "umami-session-token-8c1d",
		"Accept-Language", "de-DE,de;q=0.9,en;q=0.8",
		"Referer", "https://shop.example/shop/p?email=jane%40example.com",
		"Sec-CH-UA", `"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"`,
		"Sec-CH-UA-Full-Version-List", `"Chromium";v="124.0.6367.91", "Google Chrome";v="124.0.6367.91"`,
		"Sec-CH-UA-Platform", `"Windows"`, "Sec-CH-UA-Platform-Version", `"15.0.0"`, "Sec-CH-UA-Mobile", "?0",
		"Cookie", matrixCookies,
	}
}

// matrixRequest is one beacon as a tracker sends it.
type matrixRequest struct {
	method, path, ctype, body string
}

// matrixCase is one request shape of one profile and what must survive it.
type matrixCase struct {
	name  string
	build func(v *matrixVisitor) matrixRequest
	// check looks at what arrived and returns the visitor's pseudonym.
	check func(t *testing.T, h hit, v *matrixVisitor) string
}

var qe = url.QueryEscape

var matrixCases = []matrixCase{
	{
		name: "ga4/g-collect",
		build: func(v *matrixVisitor) matrixRequest {
			q := "v=2&tid=G-MATRIX&gtm=45je&_p=123&cid=" + matrixGA4ClientID + "&uid=" + matrixUserID + "&sid=1712345678" +
				"&_uip=" + v.queryForm() + "&uip=" + v.queryForm() + "&ul=de-de&sr=1920x1080&en=page_view" +
				"&dl=" + qe(matrixPage+"&ip="+v.ip) + "&dr=" + qe("https://www.google.com/search?q=jane") +
				"&dt=" + qe("Shoes for "+v.ip) + "&ep.visitor_ip=" + qe(v.ip) + "&up.ip=" + qe(v.ip) +
				"&uafvl=" + qe("Chromium;124.0.6367.91|Google Chrome;124.0.6367.91")
			return matrixRequest{http.MethodGet, "/ga4/g/collect?" + q, "", ""}
		},
		check: func(t *testing.T, h hit, v *matrixVisitor) string {
			q := hitQuery(t, h)
			wantQuery(t, q, map[string]string{"tid": "G-MATRIX", "en": "page_view", "ul": "de", "_uip": v.truncated, "uip": v.truncated, "dr": "https://www.google.com"})
			wantPage(t, q.Get("dl"))
			return wantPseudonym(t, "cid", q.Get("cid"), 32)
		},
	},
	{
		name: "ga4/g-collect batch",
		build: func(v *matrixVisitor) matrixRequest {
			line := func(en, ip string) string {
				return "v=2&tid=G-MATRIX&cid=" + matrixGA4ClientID + "&_uip=" + ip + "&en=" + en + "&dl=" + qe(matrixPage)
			}
			body := line("scroll", v.queryForm()) + "\n" + line("click", v.queryForm()) +
				"&ep.link=" + qe("https://shop.example/out?from="+v.ip)
			return matrixRequest{http.MethodPost, "/ga4/g/collect?v=2&tid=G-MATRIX", "text/plain;charset=UTF-8", body}
		},
		check: func(t *testing.T, h hit, v *matrixVisitor) string {
			lines := strings.Split(h.body, "\n")
			if len(lines) != 2 {
				t.Fatalf("batch: %d lines: %q", len(lines), h.body)
			}
			var ids []string
			for _, l := range lines {
				q, err := url.ParseQuery(l)
				if err != nil {
					t.Fatalf("batch line %q: %v", l, err)
				}
				wantQuery(t, q, map[string]string{"tid": "G-MATRIX", "_uip": v.truncated})
				wantPage(t, q.Get("dl"))
				ids = append(ids, wantPseudonym(t, "cid", q.Get("cid"), 32))
			}
			if ids[0] != ids[1] {
				t.Errorf("one visitor, two pseudonyms in a batch: %v", ids)
			}
			return ids[0]
		},
	},
	{
		name: "ga4/mp-collect",
		build: func(v *matrixVisitor) matrixRequest {
			body := `{"client_id":"` + matrixGA4ClientID + `","user_id":"` + matrixUserID + `","ip_override":` + v.jsonIP() +
				`,"user_agent":` + strconv.Quote(chromeUA) + `,"user_location":{"city":"Berlin","country_id":"DE"},` +
				`"device":{"category":"desktop","model":"Pixel 8"},"user_properties":{"ip":{"value":"` + v.ip + `"}},` +
				`"events":[{"name":"page_view","params":{"page_location":"` + matrixPage + `&ip=` + v.ip + `",` +
				`"page_referrer":"https://www.google.com/search?q=jane","page_title":"Shoes","session_id":"1712345678",` +
				`"engagement_time_msec":100,"visitor":` + v.jsonIP() + `}},{"name":"scroll","params":{"percent_scrolled":90}}]}`
			return matrixRequest{http.MethodPost, "/ga4/mp/collect?measurement_id=G-MATRIX&api_secret=mp-secret", "application/json", body}
		},
		check: func(t *testing.T, h hit, v *matrixVisitor) string {
			wantQuery(t, hitQuery(t, h), map[string]string{"measurement_id": "G-MATRIX", "api_secret": "mp-secret"})
			var body struct {
				ClientID   string `json:"client_id"`
				IPOverride string `json:"ip_override"`
				UserAgent  string `json:"user_agent"`
				Events     []struct {
					Name   string         `json:"name"`
					Params map[string]any `json:"params"`
				} `json:"events"`
			}
			if err := json.Unmarshal([]byte(h.body), &body); err != nil {
				t.Fatalf("body %q: %v", h.body, err)
			}
			if body.IPOverride != v.truncated || body.UserAgent != "Chrome/124 (Windows; desktop)" || len(body.Events) != 2 || body.Events[0].Name != "page_view" {
				t.Errorf("body: %s", h.body)
			}
			if len(body.Events) > 0 {
				loc, _ := body.Events[0].Params["page_location"].(string)
				wantPage(t, loc)
			}
			return wantPseudonym(t, "client_id", body.ClientID, 32)
		},
	},
	{
		name: "matomo/query",
		build: func(v *matrixVisitor) matrixRequest {
			return matrixRequest{http.MethodGet, "/matomo/matomo.php?" + matomoHit(v, "Shoes for "+v.ip), "", ""}
		},
		check: checkMatomoHit(func(h hit) string { return h.uri[strings.IndexByte(h.uri, '?')+1:] }),
	},
	{
		name: "matomo/form",
		build: func(v *matrixVisitor) matrixRequest {
			return matrixRequest{http.MethodPost, "/matomo/matomo.php", "application/x-www-form-urlencoded", matomoHit(v, "Cart")}
		},
		check: checkMatomoHit(func(h hit) string { return h.body }),
	},
	{
		name: "matomo/bulk",
		build: func(v *matrixVisitor) matrixRequest {
			reqs, _ := json.Marshal([]string{"?" + matomoHit(v, "Shoes"), "?" + matomoHit(v, "Video") + "&e_c=Video&e_a=Play&e_n=" + qe(v.ip)})
			body := `{"requests":` + string(reqs) + `,"token_auth":"` + matrixTokenAuth + `","send_image":0}`
			// matomo.js posts its bulk requests as a form.
			return matrixRequest{http.MethodPost, "/matomo/matomo.php", "application/x-www-form-urlencoded; charset=UTF-8", body}
		},
		check: func(t *testing.T, h hit, v *matrixVisitor) string {
			var body struct {
				Requests []string `json:"requests"`
			}
			if err := json.Unmarshal([]byte(h.body), &body); err != nil || len(body.Requests) != 2 {
				t.Fatalf("bulk body %q: %v", h.body, err)
			}
			var ids []string
			for _, r := range body.Requests {
				ids = append(ids, checkMatomoHit(func(hit) string { return strings.TrimPrefix(r, "?") })(t, h, v))
			}
			if ids[0] != ids[1] {
				t.Errorf("one visitor, two pseudonyms in a bulk request: %v", ids)
			}
			return ids[0]
		},
	},
	{
		name: "plausible",
		build: func(v *matrixVisitor) matrixRequest {
			body := `{"n":"pageview","u":"` + matrixPage + `&ip=` + v.ip + `","d":"shop.example","r":"https://www.google.com/search?q=jane",` +
				`"w":1920,"h":0,"p":{"visitor_ip":` + v.jsonIP() + `,"plan":"pro"}}`
			// Plausible's script posts JSON as text/plain.
			return matrixRequest{http.MethodPost, "/plausible/api/event", "text/plain", body}
		},
		check: func(t *testing.T, h hit, v *matrixVisitor) string {
			var body map[string]any
			if err := json.Unmarshal([]byte(h.body), &body); err != nil {
				t.Fatalf("body %q: %v", h.body, err)
			}
			u, _ := body["u"].(string)
			wantPage(t, u)
			if body["n"] != "pageview" || body["d"] != "shop.example" || body["r"] != "https://www.google.com" {
				t.Errorf("body: %s", h.body)
			}
			// Plausible counts visitors by address and UA: the pseudonym
			// is the filter's placeholder.
			return wantPseudonym(t, "X-Visitor", h.header.Get("X-Visitor"), 32)
		},
	},
	{
		name: "umami",
		build: func(v *matrixVisitor) matrixRequest {
			body := `{"type":"event","payload":{"website":"5a1e0c1e-site","hostname":"shop.example","screen":"1920x1080",` +
				`"language":"de-DE","url":"/shop/p?color=red&email=jane%40example.com&gclid=CLICK123&ip=` + v.ip + `","referrer":"https://www.google.com/search?q=jane",` +
				`"title":"Shoes","name":"signup","data":{"ip":` + v.jsonIP() + `,"plan":"pro"},"id":"` + matrixUmamiID + `"}}`
			return matrixRequest{http.MethodPost, "/umami/api/send", "application/json", body}
		},
		check: func(t *testing.T, h hit, v *matrixVisitor) string {
			var body struct {
				Type    string         `json:"type"`
				Payload map[string]any `json:"payload"`
			}
			if err := json.Unmarshal([]byte(h.body), &body); err != nil {
				t.Fatalf("body %q: %v", h.body, err)
			}
			p := body.Payload
			if body.Type != "event" || p["website"] != "5a1e0c1e-site" || p["language"] != "de" || p["referrer"] != "https://www.google.com" {
				t.Errorf("body: %s", h.body)
			}
			page, _ := p["url"].(string)
			wantPage(t, page)
			if data, _ := p["data"].(map[string]any); data["plan"] != "pro" {
				t.Errorf("event data lost: %s", h.body)
			}
			id, _ := p["id"].(string)
			return wantPseudonym(t, "payload.id", id, 32)
		},
	},
	{
		name: "yandex_metrica",
		build: func(v *matrixVisitor) matrixRequest {
			info := "pv:1:vf:7kq2:fp:980:fu:0:en:utf-8:la:de-DE:v:1234:cn:1:dp:0:ls:" + matrixYandexUID +
				":hid:83712:z:60:i:20240405:et:1712345678:c:1:rn:42:rqn:3:u:" + matrixYandexUID + ":w:1920x1080:s:1920x1080x24:sk:1"
			q := "wmode=7&page-url=" + qe(matrixPage+"&ip="+v.ip) + "&page-ref=" + qe("https://www.google.com/search?q=jane") +
				"&charset=utf-8&ut=noindex&t=" + qe("Shoes for "+v.ip) + "&browser-info=" + qe(info) +
				"&site-info=" + qe(`{"ip":"`+v.ip+`","plan":"pro"}`)
			return matrixRequest{http.MethodGet, "/yandex/watch/12345678?" + q, "", ""}
		},
		check: func(t *testing.T, h hit, v *matrixVisitor) string {
			q := hitQuery(t, h)
			wantQuery(t, q, map[string]string{"wmode": "7", "charset": "utf-8", "page-ref": "https://www.google.com"})
			wantPage(t, q.Get("page-url"))
			if !strings.HasPrefix(h.uri, "/watch/12345678?") {
				t.Errorf("counter path lost: %s", h.uri)
			}
			return wantPseudonym(t, "X-Visitor", h.header.Get("X-Visitor"), 32)
		},
	},
	{
		name: "generic/query",
		build: func(v *matrixVisitor) matrixRequest {
			q := "uid=" + matrixGenericID + "&ip=" + v.queryForm() + "&ua=" + qe(chromeUA) + "&page=" + qe(matrixPage) +
				"&ref=" + qe("https://www.google.com/search?q=jane") + "&note=" + qe("hello from "+v.ip) + "&event=view&device_id=" + matrixUserID
			return matrixRequest{http.MethodGet, "/generic/collect?" + q, "", ""}
		},
		check: func(t *testing.T, h hit, v *matrixVisitor) string {
			q := hitQuery(t, h)
			wantQuery(t, q, map[string]string{"event": "view", "ip": v.truncated, "ua": "Chrome/124 (Windows; desktop)", "ref": "https://www.google.com"})
			wantPage(t, q.Get("page"))
			if q.Has("device_id") {
				t.Errorf("a field no rule names passed: %s", h.uri)
			}
			return wantPseudonym(t, "uid", q.Get("uid"), 32)
		},
	},
	{
		name: "generic/json",
		build: func(v *matrixVisitor) matrixRequest {
			body := `{"user":{"id":"` + matrixGenericID + `","ip":` + strconv.Quote(v.form()) + `,"agent":` + strconv.Quote(chromeUA) + `},` +
				`"event":"view","page":"` + matrixPage + `","note":"hello from ` + v.ip + `","extra":{"ip":"` + v.ip + `"}}`
			return matrixRequest{http.MethodPost, "/generic/collect", "application/json", body}
		},
		check: func(t *testing.T, h hit, v *matrixVisitor) string {
			var body struct {
				User  map[string]string `json:"user"`
				Event string            `json:"event"`
				Page  string            `json:"page"`
				Extra map[string]any    `json:"extra"`
			}
			if err := json.Unmarshal([]byte(h.body), &body); err != nil {
				t.Fatalf("body %q: %v", h.body, err)
			}
			if body.Event != "view" || body.User["ip"] != v.truncated || body.User["agent"] != "Chrome/124 (Windows; desktop)" || len(body.Extra) != 0 {
				t.Errorf("body: %s", h.body)
			}
			wantPage(t, body.Page)
			return wantPseudonym(t, "user.id", body.User["id"], 32)
		},
	},
}

// matomoHit is one Matomo tracking request as matomo.js sends it.
func matomoHit(v *matrixVisitor, action string) string {
	return "idsite=1&rec=1&apiv=1&r=482913&_id=" + matrixMatomoID + "&cid=" + matrixMatomoID + "&uid=" + matrixUserID +
		"&_idts=1712345678&_viewts=1712345678&cip=" + v.queryForm() + "&ua=" + qe(chromeUA) + "&lang=" + qe("de-DE,de;q=0.9") +
		"&url=" + qe(matrixPage+"&ip="+v.ip) + "&urlref=" + qe("https://www.google.com/search?q=jane") +
		"&action_name=" + qe(action) + "&dimension1=" + qe(v.ip) + "&lat=52.5200&long=13.4050&city=Berlin&res=1920x1080&pv_id=Xy12Ab" +
		"&token_auth=" + matrixTokenAuth
}

// checkMatomoHit checks one Matomo request, taken from the hit by query.
func checkMatomoHit(query func(hit) string) func(t *testing.T, h hit, v *matrixVisitor) string {
	return func(t *testing.T, h hit, v *matrixVisitor) string {
		q, err := url.ParseQuery(query(h))
		if err != nil {
			t.Fatalf("matomo request %q: %v", query(h), err)
		}
		wantQuery(t, q, map[string]string{"idsite": "1", "rec": "1", "pv_id": "Xy12Ab", "cip": v.truncated,
			"ua": "Chrome/124 (Windows; desktop)", "lang": "de", "urlref": "https://www.google.com"})
		for _, gone := range []string{"lat", "long", "city", "_idts", "_viewts", "token_auth"} {
			if q.Has(gone) {
				t.Errorf("%s reached analytics: %v", gone, q)
			}
		}
		wantPage(t, q.Get("url"))
		// Matomo takes 16 hex digits as a visitor ID.
		wantPseudonym(t, "cid", q.Get("cid"), 16)
		wantPseudonym(t, "uid", q.Get("uid"), 32)
		return wantPseudonym(t, "_id", q.Get("_id"), 16)
	}
}

func hitQuery(t *testing.T, h hit) url.Values {
	t.Helper()
	_, raw, _ := strings.Cut(h.uri, "?")
	q, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatalf("query %q: %v", raw, err)
	}
	return q
}

func wantQuery(t *testing.T, q url.Values, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := q.Get(k); got != v {
			t.Errorf("%s = %q, want %q (query %v)", k, got, v, q)
		}
	}
}

// wantPage checks that the page survived, cleaned: its path and harmless
// parameters stay, the e-mail and the click ID go.
func wantPage(t *testing.T, page string) {
	t.Helper()
	if !strings.Contains(page, "/shop/p") || !strings.Contains(page, "color=red") || strings.Contains(page, "email") || strings.Contains(page, "gclid") {
		t.Errorf("page = %q, want the cleaned shop page", page)
	}
}

var hexPseudonym = regexp.MustCompile(`^[0-9a-f]+$`)

// wantPseudonym checks that a visitor field is a keyed pseudonym of n hex
// digits and returns it.
func wantPseudonym(t *testing.T, field, v string, n int) string {
	t.Helper()
	if len(v) != n || !hexPseudonym.MatchString(v) {
		t.Errorf("%s = %q, want a pseudonym of %d hex digits", field, v, n)
	}
	return v
}

// TestPrivacyFilterLeakMatrix sends every profile's request shapes (GA4
// /g/collect query and batch, /mp/collect JSON; Matomo query, form and
// bulk; Plausible; Umami; Yandex Metrica; generic rules over a query and
// JSON) through a real Caddy to a recording collector, for a visitor with
// and one without analytics consent, each from an IPv4 and an IPv6 address
// given by the proxy in front. The address is also in every client-address
// header and, written every way a client might (IPv4-mapped, with a port,
// bracketed, with a zone, expanded, upper case, percent-encoded, JSON
// escapes), in the profiles' IP fields, URLs, titles and free-form
// properties. Everything the collector got (method, URI, headers, body) is
// searched, plain and decoded, for the address, the User-Agent and its
// version tokens, the client IDs and cookies and the consent's own ID; and
// what analytics need must arrive: a pseudonymous visitor (the same for
// one consent from either address, unlinkable without consent), the
// truncated address, the country and region, the generalised browser, the
// cleaned page.
func TestPrivacyFilterLeakMatrix(t *testing.T) {
	db := filepath.Join(t.TempDir(), "geo.mmdb")
	geotest.Write(t, db, map[string]geotest.Entry{"203.0.113.0/24": {Country: "DE", Region: "BE", Full: true}, "2001:db8::/32": {Country: "KZ"}})
	col := newCollector(t)
	g := startGateway(t, globalOpts+matrixSite, map[string]string{"UPSTREAM": col.Listener.Addr().String(), "GLOBAL": "geoip " + db})

	pseudonyms := map[string]map[bool][]string{} // case → consented → one per address
	for _, consented := range []bool{false, true} {
		c := newClient(t)
		if consented {
			c.postJSON(g.url("/_consent/state"), `{"granted":["analytics"]}`)
		}
		for _, ip := range []string{"203.0.113.77", "2001:db8:1:2::77"} {
			v := newMatrixVisitor(g, c, consented, ip)
			for _, tc := range matrixCases {
				who := "without consent"
				if consented {
					who = "with consent"
				}
				t.Run(who+"/"+ip+"/"+tc.name, func(t *testing.T) {
					req := tc.build(v)
					before := col.count()
					r := c.do(req.method, g.url(req.path), req.ctype, req.body, v.headers()...)
					if r.status != http.StatusNoContent || col.count() != before+1 {
						t.Fatalf("%s %s: %d %s; the collector got %d hits", req.method, req.path, r.status, r.body, col.count()-before)
					}
					h := col.last(t)
					checkNoLeak(t, h, v)
					checkMatrixHeaders(t, h, v)
					p := tc.check(t, h, v)
					if pseudonyms[tc.name] == nil {
						pseudonyms[tc.name] = map[bool][]string{}
					}
					pseudonyms[tc.name][consented] = append(pseudonyms[tc.name][consented], p)
				})
			}
		}
	}
	for name, byConsent := range pseudonyms {
		if ids := byConsent[true]; len(ids) == 2 && ids[0] != ids[1] {
			t.Errorf("%s: one consent, two pseudonyms from two addresses: %v", name, ids)
		}
		if ids := byConsent[false]; len(ids) == 2 && ids[0] == ids[1] {
			t.Errorf("%s: without consent, two addresses share the daily pseudonym %v", name, ids)
		}
		if byConsent[true] != nil && byConsent[false] != nil && byConsent[true][0] == byConsent[false][0] {
			t.Errorf("%s: the consented pseudonym is the daily one", name)
		}
	}
}

// checkMatrixHeaders checks the headers every profile's hits carry.
func checkMatrixHeaders(t *testing.T, h hit, v *matrixVisitor) {
	t.Helper()
	want := map[string]string{
		"User-Agent": "Chrome/124 (Windows; desktop)", "X-Forwarded-For": v.truncated,
		"X-Geo-Country": v.country, "X-Geo-Region": v.region, "X-Region": v.region,
		"X-Ua-Family": "Chrome 124", "X-Ua-Os": "Windows", "X-Ua-Device": "desktop",
		"Accept-Language": "de", "Referer": "https://shop.example/",
		"Sec-Ch-Ua": `"Chrome";v="124"`, "Sec-Ch-Ua-Platform": `"Windows"`,
		"Cookie": "", "Sec-Ch-Ua-Full-Version-List": "", "Sec-Ch-Ua-Platform-Version": "",
	}
	for k, w := range want {
		if got := strings.Join(h.header.Values(k), ", "); got != w {
			t.Errorf("header %s = %q, want %q", k, got, w)
		}
	}
	wantPseudonym(t, "X-Visitor", h.header.Get("X-Visitor"), 32)
}

// checkNoLeak searches everything the collector got, as sent and decoded
// (percent-encoding up to three levels, JSON escapes), for the client's
// address written any way net/netip reads it, and for the visitor's
// forbidden strings.
func checkNoLeak(t *testing.T, h hit, v *matrixVisitor) {
	t.Helper()
	all := h.everything() + "\nRemote: " + h.remote
	for _, view := range decodedViews(all) {
		for _, f := range v.forbidden {
			if f != "" && strings.Contains(strings.ToLower(view), strings.ToLower(f)) {
				t.Errorf("%q reached analytics:\n%s", f, all)
			}
		}
		if a, ok := findAddr(view, v.addr); ok {
			t.Errorf("the client address reached analytics as %q:\n%s", a, all)
		}
	}
}

// decodedViews returns s and its decoded forms.
func decodedViews(s string) []string {
	views := []string{s}
	cur := s
	for range 3 {
		next := percentDecodeLoose(cur)
		if next == cur {
			break
		}
		views = append(views, next)
		cur = next
	}
	for _, v := range views {
		if u := jsonUnescapeLoose(v); u != v {
			views = append(views, u, percentDecodeLoose(u))
		}
	}
	return views
}

// percentDecodeLoose decodes the valid %XX escapes of s and '+', leaving
// anything else as it is.
func percentDecodeLoose(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '%' && i+2 < len(s) && isHexByte(s[i+1]) && isHexByte(s[i+2]):
			n, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b.WriteByte(byte(n))
			i += 2
		case s[i] == '+':
			b.WriteByte(' ')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

var jsonEscape = regexp.MustCompile(`\\u[0-9a-fA-F]{4}|\\/`)

// jsonUnescapeLoose decodes \u escapes (four hex digits) and \/ wherever
// they are.
func jsonUnescapeLoose(s string) string {
	return jsonEscape.ReplaceAllStringFunc(s, func(m string) string {
		if m == `\/` {
			return "/"
		}
		n, _ := strconv.ParseUint(m[2:], 16, 32)
		return string(rune(n))
	})
}

func isHexByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

var addrRun = regexp.MustCompile(`[0-9A-Fa-f:.]{3,}`)

// findAddr reports a written form of addr in s: any run of hex digits,
// colons and dots that net/netip reads (with a port, or trimmed of
// trailing dots and colons) as addr or as addr mapped into IPv6.
func findAddr(s string, addr netip.Addr) (string, bool) {
	for _, run := range addrRun.FindAllString(s, -1) {
		for _, cand := range []string{run, strings.TrimRight(run, ".:"), strings.TrimRight(run, ".")} {
			a, err := netip.ParseAddr(cand)
			if err != nil {
				ap, perr := netip.ParseAddrPort(cand)
				if perr != nil {
					continue
				}
				a = ap.Addr()
			}
			if a.Unmap().WithZone("") == addr {
				return run, true
			}
		}
	}
	return "", false
}

// TestFindAddr checks the matrix's own address finder.
func TestFindAddr(t *testing.T) {
	v4, v6 := netip.MustParseAddr("203.0.113.77"), netip.MustParseAddr("2001:db8:1:2::77")
	for _, s := range []string{"x 203.0.113.77.", "::ffff:203.0.113.77", "for=203.0.113.77:4711", "ip=203.0.113.77&"} {
		if _, ok := findAddr(s, v4); !ok {
			t.Errorf("%q not found", s)
		}
	}
	for _, s := range []string{"[2001:db8:1:2::77]:4711", "2001:0DB8:0001:0002:0000:0000:0000:0077", "2001:db8:1:2::77%eth0", "2001:db8:1:2::77:"} {
		if _, ok := findAddr(s, v6); !ok {
			t.Errorf("%q not found", s)
		}
	}
	for _, s := range []string{"203.0.0.0", "203.0.113.7", "2001:db8::", "2001:db8:1:2::7"} {
		if _, ok := findAddr(s, v4); ok {
			t.Errorf("%q found", s)
		}
		if _, ok := findAddr(s, v6); ok {
			t.Errorf("%q found", s)
		}
	}
	views := decodedViews(`{"a":"203\u002e0\u002e113\u002e77","b":"` + percentAll(percentAll("2001:db8:1:2::77")) + `"}`)
	found4, found6 := false, false
	for _, view := range views {
		_, ok := findAddr(view, v4)
		found4 = found4 || ok
		_, ok = findAddr(view, v6)
		found6 = found6 || ok
	}
	if !found4 || !found6 {
		t.Errorf("escaped addresses not found: %v %v", found4, found6)
	}
}
