package consentgate

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/consentgate/consentgate/module/internal/store"
)

const rightsSite = globalOpts + `
http://127.0.0.1:{{PORT}} {
	consent {
		site shop
		policy_version 3
		policy_url /privacy
	}
	handle /collect/* {
		privacy_filter ga4 {
			count_pageviews
		}
		reverse_proxy {{COLLECTOR}}
	}
	reverse_proxy {{UPSTREAM}}
}
`

// admin sends a request to the gateway's admin endpoint.
func (g *gateway) adminDo(method, path, body string) (int, []byte) {
	g.t.Helper()
	req, err := http.NewRequest(method, "http://"+g.admin+path, strings.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (g *gateway) adminJSON(method, path, body string, want int) map[string]any {
	g.t.Helper()
	status, b := g.adminDo(method, path, body)
	if status != want {
		g.t.Fatalf("%s %s: %d %s (want %d)", method, path, status, b, want)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		g.t.Fatalf("%s %s: %v: %s", method, path, err, b)
	}
	return out
}

type recordsAnswer struct {
	ConsentID string         `json:"consent_id"`
	Request   string         `json:"request"`
	Records   []store.Record `json:"records"`
}

func TestRecordsSelfService(t *testing.T) {
	up := newUpstream(t)
	col := newCollector(t)
	g := startGateway(t, rightsSite, map[string]string{"UPSTREAM": up.Listener.Addr().String(), "COLLECTOR": col.Listener.Addr().String(), "GLOBAL": ""})
	alice, bob := newClient(t), newClient(t)
	alice.postJSON(g.url("/_consent/state"), `{"granted":["analytics"]}`, "Accept-Language", "de-DE,de;q=0.9", "X-Forwarded-For", "198.51.100.7")
	aliceID := alice.postJSON(g.url("/_consent/state"), `{"all":true}`, "Accept-Language", "de", "X-Forwarded-For", "198.51.100.7").json(t).ID
	bobID := bob.postJSON(g.url("/_consent/state"), `{"none":true}`, "X-Forwarded-For", "203.0.113.5").json(t).ID

	// Alice downloads her records: hers only, with what she was shown.
	r := alice.get(g.url("/_consent/records"))
	if r.status != 200 || !strings.Contains(r.header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("download: %d %v %s", r.status, r.header, r.body)
	}
	var a recordsAnswer
	if err := json.Unmarshal([]byte(r.body), &a); err != nil {
		t.Fatal(err)
	}
	if a.ConsentID != aliceID || len(a.Records) != 2 || a.Request == "" {
		t.Fatalf("alice's records: %+v", a)
	}
	for _, rec := range a.Records {
		if rec.ID != aliceID || rec.Site != "shop" || rec.Lang != "de" || rec.Shown == "" || rec.IP != "198.51.0.0" || rec.Hash == "" {
			t.Fatalf("record: %+v", rec)
		}
	}
	snap, err := g.store().Policy(a.Records[1].Shown)
	if err != nil || !bytes.Contains(snap, []byte(`"policy_version":"3"`)) || !bytes.Contains(snap, []byte(`"lang":"de"`)) {
		t.Fatalf("policy snapshot: %s %v", snap, err)
	}

	// CSV, for spreadsheets.
	r = alice.get(g.url("/_consent/records?format=csv"))
	rows, err := csv.NewReader(strings.NewReader(r.body)).ReadAll()
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") || err != nil || len(rows) != 3 || rows[1][3] != aliceID {
		t.Fatalf("csv: %d %v %q", r.status, err, r.body)
	}

	// Bob sees only Bob; no cookie or a forged one sees nothing.
	r = bob.get(g.url("/_consent/records"))
	if strings.Contains(r.body, aliceID) || !strings.Contains(r.body, bobID) {
		t.Fatalf("bob's download: %s", r.body)
	}
	if r := newClient(t).get(g.url("/_consent/records")); r.status != 404 {
		t.Fatalf("no cookie: %d %s", r.status, r.body)
	}
	forged := newClient(t)
	if r := forged.get(g.url("/_consent/records"), "Cookie", "consentgate="+strings.Repeat("A", 60)); r.status != 404 {
		t.Fatalf("forged cookie: %d %s", r.status, r.body)
	}

	// An app without a cookie jar proves itself with the Consent-Token.
	app := newClient(t)
	app.c.Jar = nil
	tok := app.postJSON(g.url("/_consent/state"), `{"granted":["analytics"]}`, TokenHeader, "new").header.Get(TokenHeader)
	appAnswer := app.get(g.url("/_consent/records"), TokenHeader, tok)
	if appAnswer.status != 200 || strings.Contains(appAnswer.body, aliceID) || !strings.Contains(appAnswer.body, `"method":"api"`) {
		t.Fatalf("records by Consent-Token: %d %s", appAnswer.status, appAnswer.body)
	}

	// A cross-site erasure is refused and erases nothing.
	if r := alice.do(http.MethodDelete, g.url("/_consent/records"), "", "", "Origin", "https://evil.example"); r.status != 403 {
		t.Fatalf("cross-site erase: %d", r.status)
	}
	oldCookie := DefaultCookieName + "=" + alice.c.Jar.(*consentJar).c.Value
	r = alice.do(http.MethodDelete, g.url("/_consent/records"), "", "")
	var receipt struct {
		Receipt string `json:"receipt"`
		Erased  int    `json:"erased"`
	}
	if err := json.Unmarshal([]byte(r.body), &receipt); r.status != 200 || err != nil || len(receipt.Receipt) != 32 || receipt.Erased != 2 {
		t.Fatalf("erase: %d %s", r.status, r.body)
	}
	if c := r.setCookie(DefaultCookieName); c == nil || c.MaxAge >= 0 {
		t.Fatalf("consent cookie not cleared: %v", r.header["Set-Cookie"])
	}
	// The old token is dead: no records, no decision.
	replay := newClient(t)
	if r := replay.get(g.url("/_consent/records"), "Cookie", oldCookie); r.status != 404 {
		t.Fatalf("records after erasure: %d %s", r.status, r.body)
	}
	if st := replay.get(g.url("/_consent/state"), "Cookie", oldCookie).json(t); st.Decided {
		t.Fatalf("an erased visitor's token still decides: %+v", st)
	}
	if rs, _ := g.store().Records("shop", bobID); len(rs) != 1 {
		t.Fatalf("bob lost records: %d", len(rs))
	}
	if hits := grepDir(t, g.storage, aliceID); len(hits) > 0 {
		t.Fatalf("alice's consent id still in %v", hits)
	}
	if hits := grepDir(t, g.storage, "198.51.0.0"); len(hits) > 0 {
		t.Fatalf("alice's truncated IP still in %v", hits)
	}
	v := g.adminJSON(http.MethodGet, "/consent/verify?site=shop", "", 200)
	if v["ok"] != true {
		t.Fatalf("chain after erasure: %v", v)
	}
	req := g.adminJSON(http.MethodGet, "/consent/requests?status=completed", "", 200)
	if !strings.Contains(fmt.Sprint(req["requests"]), receipt.Receipt) {
		t.Fatalf("the erasure is not recorded as a request: %v", req)
	}
	if strings.Contains(fmt.Sprint(req), aliceID) {
		t.Fatalf("answered requests name the visitor: %v", req)
	}

	// The no-JS way: the settings page's form erases and shows the receipt.
	bob.get(g.url("/_consent/settings"))
	r = bob.do(http.MethodPost, g.url("/_consent/records"), "application/x-www-form-urlencoded", "action=erase")
	loc := r.header.Get("Location")
	if r.status != 303 || !strings.Contains(loc, "/_consent/settings?erased=") {
		t.Fatalf("form erase: %d %s %s", r.status, loc, r.body)
	}
	if page := bob.get(g.url(loc)); !strings.Contains(page.body, "<code>"+loc[len(loc)-32:]+"</code>") {
		t.Fatalf("the settings page does not show the receipt: %s", page.body)
	}
	if rs, _ := g.store().Records("shop", bobID); len(rs) != 0 {
		t.Fatalf("bob's records after the form erase: %d", len(rs))
	}
}

func TestAdminConsentAPI(t *testing.T) {
	up := newUpstream(t)
	col := newCollector(t)
	g := startGateway(t, rightsSite, map[string]string{"UPSTREAM": up.Listener.Addr().String(), "COLLECTOR": col.Listener.Addr().String(), "GLOBAL": "k_anonymity 2"})
	v := newClient(t)
	id := v.postJSON(g.url("/_consent/state"), `{"all":true}`, "X-Forwarded-For", "198.51.100.7").json(t).ID
	for range 3 {
		refuser := newClient(t)
		refuser.postJSON(g.url("/_consent/state"), `{"none":true}`)
		refuser.get(g.url("/"), "Cookie", "_fbp=fb.1.2.3")
	}

	// Look-up and correction.
	got := g.adminJSON(http.MethodGet, "/consent/records/shop/"+id, "", 200)
	if recs := got["records"].([]any); len(recs) != 1 || got["restricted"] != false {
		t.Fatalf("lookup: %v", got)
	}
	g.adminJSON(http.MethodPost, "/consent/correct", `{"site":"shop","id":"`+id+`","fields":{"country":"AT"}}`, 200)
	got = g.adminJSON(http.MethodGet, "/consent/records/shop/"+id, "", 200)
	if cur := got["current"].(map[string]any); cur["country"] != "AT" || len(got["records"].([]any)) != 2 {
		t.Fatalf("after correction: %v", got)
	}
	if st, b := g.adminDo(http.MethodPost, "/consent/correct", `{"site":"shop","id":"`+id+`","fields":{"granted":"x"}}`); st != 400 {
		t.Fatalf("correcting a choice: %d %s", st, b)
	}
	if st, _ := g.adminDo(http.MethodGet, "/consent/records/shop/"+strings.Repeat("0", 32), ""); st != 404 {
		t.Fatalf("unknown visitor: %d", st)
	}
	if st, _ := g.adminDo(http.MethodPost, "/consent/erase", `{"site":"shop","id":"../x"}`); st != 400 {
		t.Fatalf("bad id: %d", st)
	}

	// Restriction: the privacy filter drops the visitor's analytics.
	before := col.count()
	if v.get(g.url("/collect/g/collect?v=2&cid=1.2&en=page_view")); col.count() != before+1 {
		t.Fatal("beacon before restriction did not reach analytics")
	}
	before = col.count()
	g.adminJSON(http.MethodPost, "/consent/restrict", `{"site":"shop","id":"`+id+`","restrict":true,"note":"asked by mail"}`, 200)
	if r := v.get(g.url("/collect/g/collect?v=2&cid=1.2&en=page_view")); r.status != 204 || col.count() != before {
		t.Fatalf("restricted visitor's beacon: %d, collector got %d more", r.status, col.count()-before)
	}
	g.adminJSON(http.MethodPost, "/consent/restrict", `{"site":"shop","id":"`+id+`","restrict":false}`, 200)
	if v.get(g.url("/collect/g/collect?v=2&cid=1.2&en=page_view")); col.count() != before+1 {
		t.Fatal("beacon after lifting the restriction did not reach analytics")
	}

	// A request an operator must confirm: pending with its deadline, then
	// completed, which erases.
	pending := g.adminJSON(http.MethodPost, "/consent/requests", `{"type":"erasure","site":"shop","id":"`+id+`","note":"letter of 1 May"}`, 201)
	list := g.adminJSON(http.MethodGet, "/consent/requests?status=pending", "", 200)
	if reqs := list["requests"].([]any); len(reqs) != 1 || reqs[0].(map[string]any)["overdue"] != false || reqs[0].(map[string]any)["deadline"] == "" {
		t.Fatalf("pending: %v", list)
	}
	done := g.adminJSON(http.MethodPost, "/consent/requests/"+pending["id"].(string)+"/complete", "", 200)
	if done["erased"].(float64) != 2 {
		t.Fatalf("complete: %v", done)
	}
	if st, _ := g.adminDo(http.MethodPost, "/consent/requests/"+pending["id"].(string)+"/complete", ""); st != 409 {
		t.Fatalf("completing twice: %d", st)
	}

	// Export: JSON Lines of the whole chain.
	status, body := g.adminDo(http.MethodGet, "/consent/export?site=shop", "")
	lines := 0
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		var l struct {
			Site   string          `json:"site"`
			Seq    uint64          `json:"seq"`
			Hash   string          `json:"hash"`
			Record json.RawMessage `json:"record"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Site != "shop" || l.Hash == "" {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		lines++
	}
	if status != 200 || lines != 5 {
		t.Fatalf("export: %d, %d lines", status, lines)
	}

	// Verify, stats (k-anonymity), purge, backup, key rotation.
	if got := g.adminJSON(http.MethodGet, "/consent/verify", "", 200); got["ok"] != true {
		t.Fatalf("verify: %v", got)
	}
	stats := g.adminJSON(http.MethodGet, "/consent/stats?site=shop", "", 200)
	shared := g.adminJSON(http.MethodGet, "/consent/stats?site=shop&shareable=true", "", 200)
	if len(stats["cells"].([]any)) <= len(shared["cells"].([]any)) || shared["suppressed"].(float64) == 0 || shared["store"] != nil {
		t.Fatalf("k-anonymity did not suppress small cells:\n%v\n%v", stats, shared)
	}
	for _, c := range shared["cells"].([]any) {
		if c.(map[string]any)["count"].(float64) < 2 {
			t.Fatalf("a cell below k was shared: %v", c)
		}
	}
	for _, want := range []string{"marketing denied", "kind:pageviews", "field_pseudonymised analytics", "beacon_dropped restricted", "cookie_removed marketing"} {
		if !strings.Contains(fmt.Sprint(stats["cells"]), want) {
			t.Errorf("stats lack %q: %v", want, stats["cells"])
		}
	}
	if got := g.adminJSON(http.MethodPost, "/consent/purge", "", 200); got["compacted"] != true {
		t.Fatalf("purge: %v", got)
	}
	status, body = g.adminDo(http.MethodGet, "/consent/backup", "")
	if status != 200 || !bytes.HasPrefix(body, []byte("consentgate-backup-v1\n")) {
		t.Fatalf("backup: %d %.40q", status, body)
	}
	other := newClient(t)
	other.postJSON(g.url("/_consent/state"), `{"all":true}`)
	if got := g.adminJSON(http.MethodPost, "/consent/rotate-keys", "", 200); got["key_id"] == nil {
		t.Fatalf("rotate: %v", got)
	}
	if st := other.get(g.url("/_consent/state")).json(t); !st.Decided {
		t.Fatal("a token signed before the rotation no longer verifies")
	}
	if st, _ := g.adminDo(http.MethodGet, "/consent/nothing", ""); st != 404 {
		t.Fatalf("unknown endpoint: %d", st)
	}
	if st, _ := g.adminDo(http.MethodGet, "/consent/erase", ""); st != 405 {
		t.Fatalf("wrong method: %d", st)
	}

	// Metrics in Caddy's registry.
	_, metrics := g.adminDo(http.MethodGet, "/metrics", "")
	for _, want := range []string{
		`consentgate_decisions_total{category="marketing",choice="denied",regime="opt-in",site="shop"} 3`,
		`consentgate_dsr_total{site="shop",type="erasure"} 1`,
		`consentgate_dsr_overdue 0`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestEncryptedStoreThroughCaddy(t *testing.T) {
	up := newUpstream(t)
	col := newCollector(t)
	keyFile := filepath.Join(t.TempDir(), "store.key")
	if err := os.WriteFile(keyFile, bytes.Repeat([]byte{0x5a}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, rightsSite, map[string]string{"UPSTREAM": up.Listener.Addr().String(), "COLLECTOR": col.Listener.Addr().String(),
		"GLOBAL": "encryption_key_file " + keyFile})
	c := newClient(t)
	id := c.postJSON(g.url("/_consent/state"), `{"granted":["analytics"]}`, "X-Forwarded-For", "198.51.100.7").json(t).ID
	if !g.store().Encrypted() {
		t.Fatal("store not encrypted")
	}
	for _, plain := range []string{id, "198.51.0.0", `"granted"`, "analytics"} {
		if hits := grepDir(t, g.storage, plain); len(hits) > 0 {
			t.Fatalf("%q in plain text in %v", plain, hits)
		}
	}
	if st := c.get(g.url("/_consent/state")).json(t); !st.Decided {
		t.Fatal("decision lost")
	}
}

// TestBinaryKillAfterErasure kills a real process right after it
// acknowledged an erasure and a decision: after a restart the erasure
// holds (nothing of the visitor in the files, chain intact) and the
// decision is there.
func TestBinaryKillAfterErasure(t *testing.T) {
	e := newBinaryEnv(t)
	bin, dir, admin, storage, base, cfg := e.bin, e.dir, e.admin, e.storage, e.base, e.caddyfile("site shop")
	p := runBinary(t, bin, dir, cfg, admin)
	erased, kept := newClient(t), newClient(t)
	var erasedID string
	for range 3 {
		erasedID = erased.postJSON(base+"/_consent/state", `{"all":true}`).json(t).ID
	}
	if r := erased.do(http.MethodDelete, base+"/_consent/records", "", ""); r.status != 200 {
		t.Fatalf("erase: %d %s", r.status, r.body)
	}
	keptID := kept.postJSON(base+"/_consent/state", `{"none":true}`).json(t).ID
	p.stop(syscall.SIGKILL)

	s, err := store.Open(storage, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := s.Records("shop", erasedID)
	ks, _ := s.Records("shop", keptID)
	v, verr := s.Verify("shop")
	s.Close()
	if len(rs) != 0 || len(ks) != 1 || verr != nil || !v.OK || v.Tombstones != 3 {
		t.Fatalf("after SIGKILL: erased has %d, kept has %d, verify %+v %v", len(rs), len(ks), v, verr)
	}
	if hits := grepDir(t, storage, erasedID); len(hits) > 0 {
		t.Fatalf("erased id in %v after the crash", hits)
	}
	p = runBinary(t, bin, dir, cfg, admin)
	if st := kept.get(base + "/_consent/state").json(t); !st.Decided {
		t.Fatalf("decision lost: %+v", st)
	}
	p.stop(os.Interrupt)
}

func TestOverdueRequestsAreFlagged(t *testing.T) {
	up := newUpstream(t)
	col := newCollector(t)
	g := startGateway(t, rightsSite, map[string]string{"UPSTREAM": up.Listener.Addr().String(), "COLLECTOR": col.Listener.Addr().String(), "GLOBAL": ""})
	id := newClient(t).postJSON(g.url("/_consent/state"), `{"all":true}`).json(t).ID
	received := time.Now().Add(-31 * 24 * time.Hour).UTC()
	late := store.Request{ID: store.NewRequestID(received), Type: store.RequestErasure, Site: "shop", Subject: store.Subject("shop", id),
		ConsentID: id, Via: viaAdmin, Status: store.StatusPending, Received: received, Deadline: received.Add(store.RequestDeadline)}
	if err := g.store().PutRequest(late); err != nil {
		t.Fatal(err)
	}
	g.adminJSON(http.MethodPost, "/consent/requests", `{"type":"access","site":"shop","id":"`+id+`"}`, 201)
	got := g.adminJSON(http.MethodGet, "/consent/requests?status=overdue", "", 200)
	reqs := got["requests"].([]any)
	if got["overdue"].(float64) != 1 || len(reqs) != 1 || reqs[0].(map[string]any)["id"] != late.ID {
		t.Fatalf("overdue: %v", got)
	}
	if all := g.adminJSON(http.MethodGet, "/consent/requests?status=pending", "", 200); len(all["requests"].([]any)) != 2 {
		t.Fatalf("pending: %v", all)
	}
	if _, m := g.adminDo(http.MethodGet, "/metrics", ""); !strings.Contains(string(m), "consentgate_dsr_overdue 1") || !strings.Contains(string(m), "consentgate_dsr_pending 2") {
		t.Fatalf("overdue metric missing:\n%s", m)
	}
	// Completing the late request clears it.
	g.adminJSON(http.MethodPost, "/consent/requests/"+late.ID+"/complete", "", 200)
	if got := g.adminJSON(http.MethodGet, "/consent/requests?status=overdue", "", 200); got["overdue"].(float64) != 0 {
		t.Fatalf("after completing: %v", got)
	}
}

// TestTallyFlush: a flush (the stats API's, before it reads) does not
// return while another flush is still writing the counts it took, and
// counts the store refuses stay in the tally for the next flush.
func TestTallyFlush(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := &App{store: st, tally: new(tally)}
	const keys = 300
	key := func(i int) tallyKey {
		return tallyKey{"e", "shop", "2026-11-26", "cookie_removed", fmt.Sprint("c", i)}
	}
	for i := range keys {
		a.tally.add(key(i), uint64(i+1))
	}
	first := make(chan error, 1)
	go func() { first <- a.flushTally() }()
	// Wait until the first flush has taken the counts, then flush again.
	for {
		a.tally.mu.Lock()
		taken := a.tally.m == nil
		a.tally.mu.Unlock()
		if taken {
			break
		}
		time.Sleep(50 * time.Microsecond)
	}
	if err := a.flushTally(); err != nil {
		t.Fatal(err)
	}
	missing := 0
	for i := range keys {
		if n, err := st.Counter(key(i).counterKey()); err != nil || n != uint64(i+1) {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("the second flush returned with %d of %d counters not yet stored", missing, keys)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}

	// The store refuses (closed): the counts wait for the next flush.
	a.tally.add(key(0), 5)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.flushTally(); err == nil {
		t.Fatal("a flush into a closed store reported no error")
	}
	if a.tally.m[key(0)] != 5 {
		t.Fatalf("a refused count is lost: the tally holds %v", a.tally.m)
	}
	if a.store, err = store.Open(dir, store.Options{}); err != nil {
		t.Fatal(err)
	}
	defer a.store.Close()
	if err := a.flushTally(); err != nil {
		t.Fatal(err)
	}
	if n, err := a.store.Counter(key(0).counterKey()); err != nil || n != 1+5 {
		t.Fatalf("after the store came back: %d, %v; want 6", n, err)
	}
}
