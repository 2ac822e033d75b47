package consentgate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/consentgate/consentgate/module/internal/store"
)

// Integration tests run a real Caddy, in this process, loaded from a real
// Caddyfile, in front of real upstream servers on 127.0.0.1. Caddy's
// running config is process-wide, so these tests do not run in parallel.

var caddyMu sync.Mutex

var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// freePort returns a port free now and never handed out before in this
// process, so two listeners of one test never get the same port.
func freePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !ports[p] {
			ports[p] = true
			return p
		}
	}
}

// upstream is a backend that records the cookies it receives and sets the
// cookies a typical site sets.
type upstream struct {
	*httptest.Server
	mu      sync.Mutex
	cookies []string // Cookie header of each request
	headers []http.Header
}

func newUpstream(t testing.TB, setCookies ...string) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.cookies = append(u.cookies, strings.Join(r.Header.Values("Cookie"), "; "))
		u.headers = append(u.headers, r.Header.Clone())
		u.mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/.well-known/") {
			http.NotFound(w, r)
			return
		}
		for _, c := range setCookies {
			w.Header().Add("Set-Cookie", c)
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "upstream says hi")
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) lastCookie() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.cookies) == 0 {
		return "<no request>"
	}
	return u.cookies[len(u.cookies)-1]
}

func (u *upstream) lastHeader() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.headers) == 0 {
		return nil
	}
	return u.headers[len(u.headers)-1]
}

// gateway is a running Caddy with the consent modules.
type gateway struct {
	t       testing.TB
	admin   string
	port    int
	storage string
	vars    map[string]string
}

// startGateway loads caddyfile after replacing {{ADMIN}}, {{PORT}},
// {{STORAGE}} and any extra {{KEY}} from vars. The config is unloaded when
// the test ends.
func startGateway(t testing.TB, caddyfile string, vars map[string]string) *gateway {
	t.Helper()
	caddyMu.Lock()
	t.Cleanup(caddyMu.Unlock)
	g := &gateway{
		t:       t,
		admin:   fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		port:    freePort(t),
		storage: filepath.Join(t.TempDir(), "store"),
		vars:    vars,
	}
	if s, ok := vars["STORAGE"]; ok {
		g.storage = s
	}
	t.Setenv("XDG_DATA_HOME", filepath.Join(t.TempDir(), "data"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(t.TempDir(), "config"))
	g.load(caddyfile)
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
	return g
}

func (g *gateway) render(caddyfile string) []byte {
	r := strings.NewReplacer("{{ADMIN}}", g.admin, "{{PORT}}", fmt.Sprint(g.port), "{{STORAGE}}", g.storage)
	out := r.Replace(caddyfile)
	for k, v := range g.vars {
		out = strings.ReplaceAll(out, "{{"+k+"}}", v)
	}
	return []byte(out)
}

func adapt(t testing.TB, caddyfile []byte) []byte {
	t.Helper()
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(caddyfile, map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfile)
	}
	for _, w := range warnings {
		t.Logf("adapt warning: %s", w.String())
	}
	return cfg
}

// load adapts and loads a config directly (as `caddy run` does).
func (g *gateway) load(caddyfile string) {
	g.t.Helper()
	if err := caddy.Load(adapt(g.t, g.render(caddyfile)), true); err != nil {
		g.t.Fatalf("loading config: %v", err)
	}
	g.settle()
}

// reload posts a changed config to the admin API's /load, as `caddy
// reload` does, and returns the answer's status and body.
func (g *gateway) reload(caddyfile string) (int, string) {
	g.t.Helper()
	cfg := adapt(g.t, g.render(caddyfile))
	req, _ := http.NewRequest(http.MethodPost, "http://"+g.admin+"/load", bytes.NewReader(cfg))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cache-Control", "must-revalidate")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("posting /load: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		g.settle()
	}
	return resp.StatusCode, string(body)
}

// settle waits until the site answers steadily after a config change: the
// listener is shared between the old and the new server, and for a moment
// the old one, shutting down, may still take and drop a connection.
func (g *gateway) settle() {
	g.t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	ok := 0
	for i := 0; i < 400 && ok < 5; i++ {
		resp, err := c.Get(g.url("/.well-known/consentgate-settle"))
		if err != nil {
			ok = 0
			continue
		}
		resp.Body.Close()
		ok++
	}
	if ok < 5 {
		g.t.Fatalf("site did not settle after a config change")
	}
}

func (g *gateway) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", g.port, path) }

// app returns the running consent app.
func (g *gateway) app() *App {
	g.t.Helper()
	ctx := caddy.ActiveContext()
	a, err := ctx.App("consent")
	if err != nil {
		g.t.Fatal(err)
	}
	return a.(*App)
}

func (g *gateway) store() *store.Store { return g.app().Store() }

func (g *gateway) countRecords() int {
	g.t.Helper()
	n, err := g.store().CountRecords("")
	if err != nil {
		g.t.Fatal(err)
	}
	return n
}

// client is a visitor: a browser-like client with its own cookie jar that
// does not follow redirects.
type client struct {
	t   testing.TB
	c   *http.Client
	hdr http.Header
}

func newClient(t testing.TB) *client {
	return &client{t: t, hdr: http.Header{}, c: &http.Client{
		// No keep-alive: reloads and restarts close server connections, and
		// a reused connection would make the next request fail spuriously.
		Transport:     &http.Transport{DisableKeepAlives: true},
		Jar:           &consentJar{},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// consentJar keeps only the consent cookie, so tests control exactly which
// other cookies a request carries.
type consentJar struct {
	mu sync.Mutex
	c  *http.Cookie
}

func (j *consentJar) SetCookies(_ *url.URL, cookies []*http.Cookie) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, c := range cookies {
		if c.Name != DefaultCookieName {
			continue
		}
		if c.MaxAge < 0 || c.Value == "" {
			j.c = nil
			continue
		}
		j.c = &http.Cookie{Name: c.Name, Value: c.Value}
	}
}

func (j *consentJar) Cookies(*url.URL) []*http.Cookie {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.c == nil {
		return nil
	}
	return []*http.Cookie{j.c}
}

type result struct {
	status int
	header http.Header
	body   string
}

func (r result) json(t testing.TB) State {
	t.Helper()
	var s State
	if err := json.Unmarshal([]byte(r.body), &s); err != nil {
		t.Fatalf("decoding state %q: %v", r.body, err)
	}
	return s
}

func (r result) setCookie(name string) *http.Cookie {
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (c *client) do(method, url, contentType, body string, hdr ...string) result {
	c.t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range c.hdr {
		req.Header[k] = v
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (c *client) get(url string, hdr ...string) result {
	return c.do(http.MethodGet, url, "", "", hdr...)
}

func (c *client) postJSON(url, body string, hdr ...string) result {
	return c.do(http.MethodPost, url, "application/json", body, hdr...)
}

// grepDir reports the files under dir whose bytes contain needle.
func grepDir(t testing.TB, dir, needle string) []string {
	t.Helper()
	var hits []string
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(needle)) {
			hits = append(hits, p)
		}
		return nil
	})
	return hits
}

// caddy_Stop stops the running config (a process restart, minus the exit).
func caddy_Stop() error { return caddy.Stop() }

// caddyHandler returns the consent handler provisioned in the running
// config (for white-box checks).
func caddyHandler(t testing.TB, g *gateway) *Handler {
	t.Helper()
	h := &Handler{}
	ctx, cancel := caddy.NewContext(caddy.ActiveContext())
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	return h
}

func caddyCtxForTest() caddy.Context {
	ctx, _ := caddy.NewContext(caddy.Context{Context: context.Background()})
	return ctx
}

func caddyLoad(cfg []byte) error { return caddy.Load(cfg, true) }
