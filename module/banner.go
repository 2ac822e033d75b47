package consentgate

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"go.uber.org/zap"
	"golang.org/x/text/language"

	"github.com/consentgate/consentgate/module/internal/htmlrewrite"
	"github.com/consentgate/consentgate/module/internal/policy"
	"github.com/consentgate/consentgate/static"
)

// bannerAssets are the embedded banner files and translations, loaded once
// per process.
type bannerAssets struct {
	js, css  static.Asset
	strings  map[string]map[string]string
	matcher  language.Matcher
	langs    []string
	settings *template.Template
}

var (
	assetsOnce sync.Once
	assets     *bannerAssets
	assetsErr  error
)

func loadAssets() (*bannerAssets, error) {
	assetsOnce.Do(func() {
		a := new(bannerAssets)
		if a.js, assetsErr = static.HashedAsset("banner.js"); assetsErr != nil {
			return
		}
		if a.css, assetsErr = static.HashedAsset("banner.css"); assetsErr != nil {
			return
		}
		if a.strings, assetsErr = static.Translations(); assetsErr != nil {
			return
		}
		a.langs = append(a.langs, "en")
		for l := range a.strings {
			if l != "en" {
				a.langs = append(a.langs, l)
			}
		}
		tags := make([]language.Tag, len(a.langs))
		for i, l := range a.langs {
			tags[i] = language.Make(l)
		}
		a.matcher = language.NewMatcher(tags)
		a.settings, assetsErr = template.ParseFS(static.FS, "settings.html")
		assets = a
	})
	return assets, assetsErr
}

// setupBanner prepares what the banner, the HTML rewriting and the
// settings page need.
func (h *Handler) setupBanner() error {
	a, err := loadAssets()
	if err != nil {
		return fmt.Errorf("loading banner assets: %w", err)
	}
	h.assets = a
	if h.Lang != "" {
		if _, ok := a.strings[h.Lang]; !ok {
			return fmt.Errorf("lang %q: no translation (have %s)", h.Lang, strings.Join(a.langs, ", "))
		}
	}
	for lang, texts := range h.Texts {
		if _, ok := a.strings[lang]; !ok && lang != "*" {
			return fmt.Errorf("text: no translation %q to override", lang)
		}
		for k := range texts {
			if _, ok := a.strings["en"][k]; !ok {
				return fmt.Errorf("text: unknown string %q", k)
			}
		}
	}
	catalog := policy.Catalog()
	h.hosts = policy.NewHostIndex(h.Services, catalog)
	h.inline = policy.NewInlineIndex(h.Services, catalog)
	return nil
}

func (h *Handler) bannerOn() bool { return h.Banner == nil || *h.Banner }

// language picks the banner language: the site's fixed lang, else the
// page's lang attribute, else the Accept-Language header, else English.
func (h *Handler) language(pageLang string, r *http.Request) string {
	if h.Lang != "" {
		return h.Lang
	}
	a := h.assets
	if pageLang != "" {
		primary, _, _ := strings.Cut(strings.ToLower(pageLang), "-")
		if _, ok := a.strings[primary]; ok {
			return primary
		}
	}
	if al := r.Header.Get("Accept-Language"); al != "" {
		tags, _, err := language.ParseAcceptLanguage(al)
		if err == nil && len(tags) > 0 {
			_, i, conf := a.matcher.Match(tags...)
			if conf != language.No {
				return a.langs[i]
			}
		}
	}
	return "en"
}

// texts returns the strings of lang with the site's overrides applied.
func (h *Handler) texts(lang string) map[string]string {
	base := h.assets.strings[lang]
	if len(h.Texts) == 0 {
		return base
	}
	out := make(map[string]string, len(base))
	for k, v := range base {
		out[k] = v
	}
	for _, l := range []string{"*", lang} {
		for k, v := range h.Texts[l] {
			out[k] = v
		}
	}
	return out
}

type bannerCategory struct {
	Name        string          `json:"name"`
	Title       string          `json:"title"`
	Description string          `json:"description"`
	Required    bool            `json:"required"`
	Sale        bool            `json:"sale"`
	Granted     bool            `json:"-"`
	Services    []bannerService `json:"-"`
}

type bannerService struct {
	Name     string `json:"name"`
	Title    string `json:"title"`
	Category string `json:"category"`
	Purpose  string `json:"purpose"`
}

// bannerConfig is the banner's configuration without the visitor's part
// (state, show, reconsent), which injection adds.
type bannerConfig struct {
	API         string            `json:"api"`
	Categories  []bannerCategory  `json:"categories"`
	Services    []bannerService   `json:"services"`
	PolicyURL   string            `json:"policy_url"`
	SettingsURL string            `json:"settings_url"`
	Lang        string            `json:"lang"`
	Dir         string            `json:"dir"`
	Strings     map[string]string `json:"strings"`
	// ConsentMode maps Google Consent Mode's consent types to categories
	// for banner.js (consentModeCategories).
	ConsentMode map[string]string `json:"consent_mode"`
}

// categoriesFor localises the site's categories (built-in ones from the
// translation, custom ones from the config) with their services.
func (h *Handler) categoriesFor(t map[string]string, d *Decision) []bannerCategory {
	out := make([]bannerCategory, 0, len(h.Categories))
	for i, c := range h.Categories {
		bc := bannerCategory{Name: c.Name, Title: c.Name, Description: c.Description, Required: c.Required, Sale: c.SaleOrSharing, Granted: d.Granted.Has(i)}
		if v := t["cat_"+c.Name]; v != "" {
			bc.Title = v
			if desc := t["cat_"+c.Name+"_desc"]; desc != "" {
				bc.Description = desc
			}
		}
		for _, s := range h.Services {
			if s.Category == c.Name {
				bc.Services = append(bc.Services, bannerService{Name: s.Name, Title: orDefault(s.Title, s.Name), Category: s.Category, Purpose: s.Purpose})
			}
		}
		out = append(out, bc)
	}
	return out
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// injection is the markup inserted into a page: the stylesheet, the
// visitor's state and strings as JSON (not executed, so no CSP nonce is
// needed), and the deferred script. Everything but the visitor's state is
// the same for every page in a language, so it is encoded once. A visitor
// who has decided gets only what reopening the settings needs (bannerLite);
// banner.js fetches the rest from the config endpoint when they do.
func (h *Handler) injection(pageLang string, r *http.Request, d *Decision) []byte {
	lang := h.language(pageLang, r)
	tail := h.injectionTail(lang)
	if tail == nil {
		return nil
	}
	rest := tail.rest
	if d.Decided {
		rest = tail.lite
	}
	b := make([]byte, 0, len(tail.head)+len(rest)+320)
	b = append(b, tail.head...)
	b = append(b, `{"state":`...)
	b = appendState(b, d)
	b = append(b, `,"show":`...)
	b = strconv.AppendBool(b, !d.Decided)
	b = append(b, `,"reconsent":`...)
	b = strconv.AppendBool(b, !d.Decided && !d.previous.IsZero())
	b = append(b, rest...)
	return b
}

// injectionParts is the per-language constant part of the injection: the
// markup before the config object, and the config's remaining fields
// (from its first comma) with the markup after it, in full (rest) and for
// a visitor who has decided (lite). config is the full config as the
// config endpoint serves it, under the name configName.
type injectionParts struct {
	head, rest, lite []byte
	config           []byte
	configName, etag string
}

// bannerLite is what a decided visitor's page carries: enough for the
// "Cookie settings" button, get(), saving a change and Consent Mode
// updates. ConfigURL is where banner.js fetches the full bannerConfig when
// the settings open or the page has held-back embeds to label.
type bannerLite struct {
	API         string               `json:"api"`
	Categories  []bannerCategoryName `json:"categories"`
	Lang        string               `json:"lang"`
	Dir         string               `json:"dir"`
	Strings     map[string]string    `json:"strings"`
	ConsentMode map[string]string    `json:"consent_mode"`
	ConfigURL   string               `json:"config_url"`
}

// bannerCategoryName is a category as has() in banner.js needs it.
type bannerCategoryName struct {
	Name     string `json:"name"`
	Required bool   `json:"required,omitempty"`
}

// liteStrings are the strings banner.js uses before the settings open:
// the reopen button and the save status.
var liteStrings = []string{"reopen", "saved", "error"}

func (h *Handler) injectionTail(lang string) *injectionParts {
	if v, ok := h.injections.Load(lang); ok {
		return v.(*injectionParts)
	}
	t := h.texts(lang)
	cats := h.categoriesFor(t, &Decision{})
	services := []bannerService{}
	for _, c := range cats {
		services = append(services, c.Services...)
	}
	dir := orDefault(t["dir"], "ltr")
	cfg := bannerConfig{
		API: h.APIPrefix, Categories: cats, Services: services,
		PolicyURL: h.PolicyURL, SettingsURL: h.APIPrefix + "settings",
		Lang: lang, Dir: dir, Strings: t,
		ConsentMode: consentModeCategories,
	}
	js, err := json.Marshal(cfg)
	if err != nil || len(js) < 2 {
		h.logger.Error("encoding banner config", zap.Error(err))
		return nil
	}
	sum := sha256.Sum256(js)
	hash := hex.EncodeToString(sum[:])[:12]
	p := &injectionParts{config: js, configName: "config." + lang + "." + hash + ".json", etag: `"` + hash + `"`}

	lite := bannerLite{
		API: h.APIPrefix, Lang: lang, Dir: dir, Strings: make(map[string]string, len(liteStrings)),
		ConsentMode: consentModeCategories, ConfigURL: h.APIPrefix + p.configName,
	}
	for _, c := range cats {
		lite.Categories = append(lite.Categories, bannerCategoryName{Name: c.Name, Required: c.Required})
	}
	for _, k := range liteStrings {
		lite.Strings[k] = t[k]
	}
	ljs, err := json.Marshal(lite)
	if err != nil || len(ljs) < 2 {
		h.logger.Error("encoding banner config", zap.Error(err))
		return nil
	}

	p.head = []byte(`<link rel="stylesheet" href="` + h.APIPrefix + h.assets.css.Name +
		`"><script type="application/json" id="consentgate-config">`)
	// json.Marshal escapes <, > and &, so the JSON cannot close the element.
	script := `</script><script src="` + h.APIPrefix + h.assets.js.Name + `" defer></script>`
	p.rest = append(append([]byte(","), js[1:]...), script...)
	p.lite = append(append([]byte(","), ljs[1:]...), script...)
	v, _ := h.injections.LoadOrStore(lang, p)
	return v.(*injectionParts)
}

// serveConfig serves the full banner config of a language, which a
// decided visitor's page links to: config.<lang>.<hash>.json. It holds no
// visitor data, so any cache may keep it; under its current hash it is
// immutable, under an old one (a page from before a reload) it is the
// current config, revalidated each time.
func (h *Handler) serveConfig(w http.ResponseWriter, r *http.Request, name string) bool {
	rest, ok := strings.CutPrefix(name, "config.")
	if !ok {
		return false
	}
	rest, ok = strings.CutSuffix(rest, ".json")
	if !ok {
		return false
	}
	lang, _, _ := strings.Cut(rest, ".")
	if _, known := h.assets.strings[lang]; !known {
		return false
	}
	p := h.injectionTail(lang)
	if p == nil {
		return false
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	if name == p.configName {
		hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hdr.Set("Cache-Control", "public, no-cache")
	}
	hdr.Set("ETag", p.etag)
	hdr.Del("Vary")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(p.config))
	return true
}

// consentModeTypes maps the consent types of Google Consent Mode v2 to
// the category that grants them; security_storage is always granted. The
// early snippet and banner.js (through the config's consent_mode) both map
// from this one table.
var consentModeTypes = [...]struct{ name, category string }{
	{"ad_storage", policy.Marketing},
	{"ad_user_data", policy.Marketing},
	{"ad_personalization", policy.Marketing},
	{"analytics_storage", policy.Analytics},
	{"functionality_storage", policy.Preferences},
	{"personalization_storage", policy.Preferences},
	{"security_storage", ""},
}

// consentModeCategories is consentModeTypes as banner.js reads it.
var consentModeCategories = func() map[string]string {
	m := make(map[string]string, len(consentModeTypes))
	for _, t := range consentModeTypes {
		m[t.name] = t.category
	}
	return m
}()

// consentModeDefault is the inline script the rewriter puts right after
// <head>. It queues Google Consent Mode's "consent default" with the
// visitor's state before the page's own gtag('js')/gtag('config'), which
// would otherwise run before the deferred banner.js and leave consent
// unset. Like gtag() it pushes an arguments object (Google's tag ignores
// arrays); it defines no gtag, and sets __consentgateGCM so banner.js
// sends only updates. Categories are granted as banner.js grants them:
// required ones always, undefined ones never.
func consentModeDefault(d *Decision) []byte {
	b := make([]byte, 0, 384)
	b = append(b, `<script>window.dataLayer=window.dataLayer||[];(function(){dataLayer.push(arguments)})('consent','default',{`...)
	for i, t := range consentModeTypes {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, t.name...)
		if t.category == "" || d.Has(t.category) {
			b = append(b, ":'granted'"...)
		} else {
			b = append(b, ":'denied'"...)
		}
	}
	return append(b, `});window.__consentgateGCM=1</script>`...)
}

// consentModeDefaultFor is consentModeDefault(d), which depends only on
// the granted set: made once per set (a site has few), shared read-only
// by the pages.
func (h *Handler) consentModeDefaultFor(d *Decision) []byte {
	if v, ok := h.consentModes.Load(d.Granted); ok {
		return v.([]byte)
	}
	b := consentModeDefault(d)
	h.consentModes.Store(d.Granted, b)
	return b
}

// serveAsset serves the banner files under their hashed names, cached for
// a year (the name changes with the content).
func (h *Handler) serveAsset(w http.ResponseWriter, r *http.Request, name string) bool {
	for _, a := range []static.Asset{h.assets.js, h.assets.css} {
		if name != a.Name {
			continue
		}
		w.Header().Set("Content-Type", a.ContentType)
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		w.Header().Set("ETag", a.ETag)
		w.Header().Del("Vary")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.Body))
		return true
	}
	return false
}

type settingsPage struct {
	Lang, Dir, API, Return, PolicyURL      string
	T                                      map[string]string
	Categories                             []bannerCategory
	Decided, Reconsent, GPC                bool
	ID, PolicyVersion                      string
	Issued, IssuedISO, Expires, ExpiresISO string
	RecordsURL, EraseURL, Erased           string
}

// serveSettings renders the settings page: a plain form that works
// without JavaScript.
func (h *Handler) serveSettings(w http.ResponseWriter, r *http.Request, d *Decision) error {
	lang := h.language("", r)
	t := h.texts(lang)
	p := settingsPage{
		Lang: lang, Dir: orDefault(t["dir"], "ltr"), API: h.APIPrefix, Return: h.APIPrefix + "settings",
		PolicyURL: h.PolicyURL, T: t, Categories: h.categoriesFor(t, d), Decided: d.Decided,
		Reconsent: !d.Decided && !d.previous.IsZero(), GPC: d.GPC,
		ID: d.IDString(), PolicyVersion: d.PolicyVersion,
	}
	if _, ok := visitorID(d); ok {
		p.RecordsURL, p.EraseURL = h.APIPrefix+"records", h.APIPrefix+"records"
	}
	if e := r.URL.Query().Get("erased"); len(e) == 32 && strings.Trim(e, "0123456789abcdef") == "" {
		p.Erased = e
	}
	if d.Decided {
		p.Issued, p.IssuedISO = d.Issued.UTC().Format("2006-01-02 15:04 UTC"), d.Issued.UTC().Format(time.RFC3339)
		p.Expires, p.ExpiresISO = d.Expires.UTC().Format("2006-01-02"), d.Expires.UTC().Format(time.RFC3339)
	}
	var buf bytes.Buffer
	if err := h.assets.settings.Execute(&buf, p); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Language", lang)
	w.Header().Set("Vary", "Cookie, Accept-Language")
	_, err := w.Write(buf.Bytes())
	return err
}

// htmlPolicy adapts a visitor's decision to the HTML rewriter.
type htmlPolicy struct {
	h *Handler
	r *http.Request
	d *Decision
	// early is the Consent Mode default, nil with the banner off.
	early []byte
}

func (p htmlPolicy) Refused(category string) bool {
	i, ok := p.h.site.index[category]
	return !ok || !p.d.Granted.Has(i)
}

func (p htmlPolicy) ClassifyURL(u *url.URL) (htmlrewrite.Classification, bool) {
	if s := p.h.hosts.Lookup(u.Host, u.Path); s != nil {
		return htmlrewrite.Classification{Category: s.Category, Service: orDefault(s.Title, s.Name)}, true
	}
	return htmlrewrite.Classification{}, false
}

func (p htmlPolicy) ClassifyInline(code []byte) (htmlrewrite.Classification, bool) {
	if s := p.h.inline.Lookup(code); s != nil {
		return htmlrewrite.Classification{Category: s.Category, Service: orDefault(s.Title, s.Name)}, true
	}
	return htmlrewrite.Classification{}, false
}

func (p htmlPolicy) Inject(lang string) []byte {
	if !p.h.bannerOn() {
		return nil
	}
	return p.h.injection(lang, p.r, p.d)
}

func (p htmlPolicy) InjectEarly() []byte { return p.early }

// InjectUnderBase is Inject on a page whose <base href> is base: unless
// that is this very origin, the banner's URLs (its files, its API, the
// config and settings pages) are made absolute, or they would follow the
// base elsewhere (even "//host/…" takes the base's scheme).
func (p htmlPolicy) InjectUnderBase(lang, base string) []byte {
	b := p.Inject(lang)
	origin := p.origin()
	if strings.HasPrefix(base, origin+"/") {
		return b
	}
	return bytes.ReplaceAll(b, []byte(`"`+p.h.APIPrefix), []byte(`"`+origin+p.h.APIPrefix))
}

// DocumentURL is the page's URL as the browser asked for it, against
// which the rewriter resolves relative URLs and <base href>.
func (p htmlPolicy) DocumentURL() string { return p.origin() + p.r.URL.EscapedPath() }

// origin is the page's scheme and host: the gateway is the edge, so the
// connection tells the scheme.
func (p htmlPolicy) origin() string {
	if p.r.TLS != nil {
		return "https://" + strings.ToLower(p.r.Host)
	}
	return "http://" + strings.ToLower(p.r.Host)
}

// htmlStream rewrites a response body on its way to the client. A body
// that is not compressed is rewritten in the handler's goroutine, within
// each Write (htmlWriter); a compressed body must be read to be decoded, so its
// rewriter runs in a goroutine of its own and is fed through a pipe.
// Either way nothing is buffered beyond one token.
type htmlStream struct {
	// mu is held by whoever writes to the client: the handler's calls
	// and the flush timer (htmlWriter), or the rewriter goroutine. The
	// handler's Header calls take it too (responseWriter.Header), so
	// that no write to the client's writer races with them.
	mu sync.Mutex
	// pw takes the body the handler writes; closing it ends the body.
	pw interface {
		io.Writer
		Close() error
		CloseWithError(error) error
	}
	// done receives the rewrite's result once pw is closed, when the
	// rewriter runs in a goroutine of its own (see wait).
	done chan error
	// flush is set when the handler flushes.
	flush flushRequest
	// writer is pw when the rewriter runs in the handler's goroutine.
	writer htmlWriter
}

// flushRequest passes the handler's flushes on: at once when the rewriter
// runs in the handler's goroutine, or else when the rewriter goroutine,
// then the only writer to the client, has consumed what came before and
// next waits for input.
type flushRequest struct {
	atomic.Bool
	now *htmlWriter
}

func (f *flushRequest) Store(v bool) {
	if f.now != nil {
		if v {
			f.now.flush()
		}
		return
	}
	f.Bool.Store(v)
}

// htmlWriter rewrites a body as the handler writes it, into bw. What a
// Write leaves in bw goes to the client when bw is full, when the handler
// flushes, at the end, or flushDelay after it was written, whichever
// comes first: a body already in flight (reverse_proxy's writes follow
// one another at once) leaves in a few large chunks, not one or two per
// write, while a page whose upstream stalls still streams.
type htmlWriter struct {
	rw *responseWriter
	s  *htmlStream
	hw htmlrewrite.Writer
	bw *bufio.Writer

	// out is bw's destination: the client's writer, whose header waits
	// for the first bytes of body.
	out deferredHeader

	timer   *time.Timer
	pending bool  // the timer is set for output in bw
	err     error // the first error writing, or the rewriter's panic
	done    bool
}

// deferredHeader holds a response's header back until the first bytes of
// its body are written, so that a rewritten page that ends before its
// first flush (most pages: bw holds 64 KiB) is sent with its exact
// Content-Length instead of in chunks, and one whose upstream body breaks
// before that can still be answered with an error.
type deferredHeader struct {
	w      http.ResponseWriter
	status int
	sent   bool
}

func (d *deferredHeader) Write(p []byte) (int, error) {
	d.send()
	return d.w.Write(p)
}

func (d *deferredHeader) send() {
	if !d.sent {
		d.sent = true
		d.w.WriteHeader(d.status)
	}
}

// flushDelay is the longest rewritten output waits in bw for more.
const flushDelay = 2 * time.Millisecond

func (w *htmlWriter) Write(p []byte) (n int, err error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	switch {
	case w.err != nil:
		return 0, w.err
	case w.done:
		return 0, io.ErrClosedPipe
	}
	defer w.recover(&err)
	if _, err = w.hw.Write(p); err != nil {
		w.err = err
		return 0, err
	}
	// The timer only sends output once the header has gone (timedFlush).
	if w.out.sent && w.bw.Buffered() > 0 && !w.pending {
		w.pending = true
		if w.timer == nil {
			w.timer = time.AfterFunc(flushDelay, w.timedFlush)
		} else {
			w.timer.Reset(flushDelay)
		}
	}
	return len(p), nil
}

// recover turns a panic of the rewriter (or of the client's writer) into
// an error that ends the response, as a failed write to the client would.
func (w *htmlWriter) recover(err *error) {
	if p := recover(); p != nil {
		w.err = fmt.Errorf("html rewriter panic: %v", p)
		*err = w.err
	}
}

// timedFlush sends what has waited flushDelay in bw — once the header
// has gone: the header is written in the handler's goroutine only (the
// first bytes of a page whose upstream stalls before then wait for more,
// for the end, or for a flush).
func (w *htmlWriter) timedFlush() {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	var err error
	defer w.recover(&err)
	w.pending = false
	if !w.done && w.err == nil && w.out.sent {
		w.err = w.bw.Flush()
	}
}

// flush is the handler's flush: bw, then the client's connection.
func (w *htmlWriter) flush() {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.done || w.err != nil {
		return
	}
	w.out.send()
	if w.err = w.bw.Flush(); w.err == nil {
		_ = http.NewResponseController(w.rw.ResponseWriter).Flush()
	}
}

func (w *htmlWriter) Close() error { return w.CloseWithError(nil) }

// CloseWithError ends the body: unless writing has failed, what is left
// of it is rewritten as its end and sent. done receives the first error
// writing, or else cause.
func (w *htmlWriter) CloseWithError(cause error) (err error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.done {
		return nil
	}
	w.done = true
	if w.timer != nil {
		w.timer.Stop()
	}
	counted := false
	defer func() {
		if !counted {
			w.rw.h.countHeld(w.rw.d.SiteID, w.hw.Stats())
		}
		w.bw.Reset(nil)
		htmlWriters.Put(w.bw)
		if w.err == nil {
			w.err = cause
		}
	}()
	if w.err == nil {
		defer w.recover(&err)
		switch {
		case cause != nil && !w.out.sent:
			// Nothing has left yet: send nothing, so that the handler's
			// error is answered as an error, not as a cut page.
			w.err = cause
		default:
			if w.err = w.hw.Close(); w.err != nil {
				break
			}
			// Counted before the page's last bytes leave, so that a
			// client holding the whole page sees it in the metrics.
			w.rw.h.countHeld(w.rw.d.SiteID, w.hw.Stats())
			counted = true
			if !w.out.sent {
				w.rw.ResponseWriter.Header().Set("Content-Length", strconv.Itoa(w.bw.Buffered()))
				w.out.send()
			}
			w.err = w.bw.Flush()
		}
	}
	return nil
}

// flushingReader feeds the rewriter goroutine: each time it asks for more
// input, everything rewritten so far goes to the client writer (so the
// page streams), and to the network too when the handler asked for a
// flush.
type flushingReader struct {
	r   io.Reader
	bw  *bufio.Writer
	out http.ResponseWriter
	s   *htmlStream
}

func (f *flushingReader) Read(p []byte) (int, error) {
	if f.bw.Buffered() > 0 {
		if err := f.bw.Flush(); err != nil {
			return 0, err
		}
	}
	if f.s.flush.Swap(false) {
		f.s.mu.Lock()
		_ = http.NewResponseController(f.out).Flush()
		f.s.mu.Unlock()
	}
	return f.r.Read(p)
}

// lockedWriter writes to the client's writer under the stream's lock.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// shouldRewrite reports whether a response is an HTML page the handler
// may rewrite: a full 200 answer to GET, text/html, not partial, with an
// encoding it can read. A page it cannot read is logged, once per
// encoding: its scripts and embeds are not held back.
func (h *Handler) shouldRewrite(r *http.Request, status int, hdr http.Header) bool {
	if !isHTMLPage(r, status, hdr) {
		return false
	}
	switch enc := strings.ToLower(strings.TrimSpace(hdr.Get("Content-Encoding"))); {
	case enc == "" || enc == "identity" || decoderFor(enc) != nil:
		return true
	default:
		if _, seen := h.unreadable.LoadOrStore(enc, true); !seen {
			h.logger.Warn("HTML page in an encoding the consent handler cannot read passes as it is, its trackers not held back; let the upstream answer with identity",
				zap.String("content_encoding", enc))
		}
		return false
	}
}

// isHTMLPage reports whether a response is a full 200 answer to GET
// with an HTML body.
func isHTMLPage(r *http.Request, status int, hdr http.Header) bool {
	if r.Method != http.MethodGet || status != http.StatusOK || hdr.Get("Content-Range") != "" {
		return false
	}
	// The media type as mime.ParseMediaType reads it, but parameters
	// that do not parse do not matter: a browser renders the page anyway.
	mt, _, _ := strings.Cut(hdr.Get("Content-Type"), ";")
	return strings.EqualFold(strings.TrimSpace(mt), "text/html")
}

// decoderFor returns how to read a page sent with the Content-Encoding
// enc, for the encodings browsers accept (gzip, deflate, br, zstd), or nil.
// The handler asks the upstream for identity, but an upstream may compress
// anyway; a page in an encoding the handler cannot read (and no browser
// asked for) passes as it is, with a warning.
func decoderFor(enc string) func(io.Reader) (io.ReadCloser, error) {
	switch enc {
	case "gzip", "x-gzip":
		return func(r io.Reader) (io.ReadCloser, error) { return gzip.NewReader(r) }
	case "deflate":
		return newDeflateReader
	case "br":
		return func(r io.Reader) (io.ReadCloser, error) { return io.NopCloser(brotli.NewReader(r)), nil }
	case "zstd":
		return func(r io.Reader) (io.ReadCloser, error) {
			// A window as large as RFC 8878 lets HTTP senders use.
			d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(8<<20))
			if err != nil {
				return nil, err
			}
			return d.IOReadCloser(), nil
		}
	}
	return nil
}

// newDeflateReader reads HTTP's "deflate": zlib data, or raw deflate as
// some servers send it (told apart by the zlib header's check bits).
func newDeflateReader(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReader(r)
	if h, err := br.Peek(2); err == nil && h[0]&0x0f == 8 && (uint16(h[0])<<8|uint16(h[1]))%31 == 0 {
		return zlib.NewReader(br)
	}
	return flate.NewReader(br), nil
}

// startHTML sets up the rewriting of an HTML body. It reports whether it
// sends the header itself, with the body's first bytes.
func (rw *responseWriter) startHTML(status int) (deferred bool) {
	hdr := rw.Header()
	decode := decoderFor(strings.ToLower(strings.TrimSpace(hdr.Get("Content-Encoding"))))
	hdr.Del("Content-Encoding")
	hdr.Del("Content-Length")
	// The page now depends on the visitor's consent: no validators that
	// would let a cache answer 304 with a page rewritten for an earlier
	// state, and no shared caching. (no-cache, not no-store, keeps the
	// back/forward cache.)
	hdr.Del("ETag")
	hdr.Del("Last-Modified")
	hdr.Set("Cache-Control", "private, no-cache")
	hdr.Add("Vary", "Cookie")
	// Cookies of refused categories that the browser still holds (set by
	// a script before, or outside, the gateway's reach) are expired with
	// the page.
	if len(rw.refused) > 0 {
		domain := cookieDomain(rw.r)
		var expired []string
		for _, name := range rw.refused {
			expired = appendExpired(expired, name, domain)
		}
		hdr["Set-Cookie"] = append(hdr["Set-Cookie"], expired...)
	}
	switch rw.h.CSP {
	case "enforce":
		hdr.Add("Content-Security-Policy", rw.h.contentSecurityPolicy(rw.d))
	case "report":
		hdr.Add("Content-Security-Policy-Report-Only", rw.h.contentSecurityPolicy(rw.d))
	}
	s := new(htmlStream)
	out := rw.ResponseWriter
	policy := htmlPolicy{h: rw.h, r: rw.r, d: rw.d}
	if rw.h.bannerOn() {
		policy.early = rw.h.consentModeDefaultFor(rw.d)
	}
	// Gather the rewriter's output for the client's writer, so the page
	// leaves in a few large chunks rather than one per token changed or
	// per write. It is larger than reverse_proxy's 32 KiB writes.
	bw := htmlWriters.Get().(*bufio.Writer)
	rw.html = s
	if decode == nil {
		w := &s.writer
		w.rw, w.s, w.bw = rw, s, bw
		w.out = deferredHeader{w: out, status: status}
		bw.Reset(&w.out)
		w.hw.Reset(bw, policy)
		s.pw, s.flush.now = w, w
		return true
	}
	bw.Reset(lockedWriter{&s.mu, out})
	s.done = make(chan error, 1)
	pr, pw := io.Pipe()
	s.pw = pw
	go func() {
		var src io.Reader = &flushingReader{r: pr, bw: bw, out: out, s: s}
		var err error
		defer func() {
			// The rewriter runs outside Caddy's per-request recovery: a
			// panic must end this response, not the process.
			if p := recover(); p != nil {
				err = fmt.Errorf("html rewriter panic: %v", p)
				pr.CloseWithError(err)
				s.done <- err
			}
		}()
		var zr io.ReadCloser
		if zr, err = decode(src); err == nil {
			var st htmlrewrite.Stats
			st, err = htmlrewrite.Rewrite(bw, zr, policy)
			// Counted before the page's last bytes leave.
			rw.h.countHeld(rw.d.SiteID, st)
			if ferr := bw.Flush(); err == nil {
				err = ferr
			}
			zr.Close()
		}
		bw.Reset(nil)
		htmlWriters.Put(bw)
		// Drain what the handler still writes so it never blocks.
		pr.CloseWithError(err)
		s.done <- err
	}()
	return false
}

// wait returns the rewrite's result once pw is closed: from the rewriter
// goroutine, or, when the rewrite ran in the handler's goroutine, from the
// writer itself (closing it has finished the rewrite).
func (s *htmlStream) wait() error {
	if s.done != nil {
		return <-s.done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writer.err
}

// htmlWriters are the rewriters' client buffers.
var htmlWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// errAborted ends a rewrite whose handler gave up mid-body.
var errAborted = errors.New("response aborted")

// abortHTML stops a rewriter still waiting for body (after a panic).
func (rw *responseWriter) abortHTML() {
	if s := rw.html; s != nil {
		s.pw.CloseWithError(errAborted)
		s.wait()
		rw.html = nil
	}
}

// finish ends a rewritten body and waits for the rewriter; a body cut short
// by an error is not finished as if it were whole.
func (rw *responseWriter) finish(handlerErr error) error {
	if rw.html == nil {
		return nil
	}
	if handlerErr != nil {
		rw.html.pw.CloseWithError(errAborted)
	} else {
		rw.html.pw.Close()
	}
	err := rw.html.wait()
	rw.html = nil
	if err != nil && !errors.Is(err, io.ErrClosedPipe) && !errors.Is(err, errAborted) {
		return fmt.Errorf("rewriting html: %w", err)
	}
	return nil
}

// cspDirectives are the fetch directives the per-visitor policy governs.
var cspDirectives = []string{"script-src", "connect-src", "img-src", "frame-src"}

// contentSecurityPolicy builds the visitor's policy: 'self', the site's
// CSPSources and the hosts of services in granted categories. Hosts of
// refused services are simply not in it.
func (h *Handler) contentSecurityPolicy(d *Decision) string {
	var allowed []string
	seen := map[string]bool{}
	add := func(src string) {
		if !seen[src] {
			seen[src] = true
			allowed = append(allowed, src)
		}
	}
	for _, src := range h.CSPSources {
		add(src)
	}
	for _, list := range [][]policy.Service{h.Services, policy.Catalog()} {
		for _, s := range list {
			i, ok := h.site.index[s.Category]
			if !ok || !d.Granted.Has(i) {
				continue
			}
			for _, host := range s.Hosts {
				host, _, _ = strings.Cut(host, "/")
				add("https://" + host)
				add("https://*." + host)
			}
		}
	}
	var b strings.Builder
	for i, dir := range cspDirectives {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(dir)
		b.WriteString(" 'self'")
		switch dir {
		case "script-src":
			// Inline scripts stay as the site wrote them; refused ones are
			// already inert (type="text/plain"). This also allows the
			// Consent Mode default (consentModeDefault): its hash must not
			// be added, as browsers ignore 'unsafe-inline' in a list with a
			// hash or nonce, which would block every inline script of the
			// site.
			b.WriteString(" 'unsafe-inline'")
		case "img-src":
			b.WriteString(" data: blob:")
		case "frame-src":
			b.WriteString(" about:")
		}
		for _, src := range allowed {
			b.WriteByte(' ')
			b.WriteString(src)
		}
	}
	return b.String()
}

// Interface guards
var (
	_ htmlrewrite.Policy        = htmlPolicy{}
	_ htmlrewrite.EarlyInjector = htmlPolicy{}
)
