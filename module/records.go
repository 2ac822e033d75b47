package consentgate

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/consentgate/consentgate/module/internal/store"
)

// visitorID is the consent ID a request proves it holds: the signed
// cookie's (or Consent-Token's) ID, also when that decision expired by a
// policy change. Without a valid token there is no visitor to serve.
func visitorID(d *Decision) (string, bool) {
	switch {
	case d.Decided:
		return d.ID.String(), true
	case !d.previous.IsZero():
		return d.previous.String(), true
	}
	return "", false
}

// serveRecords is GET (download), DELETE (erase) and form POST
// (action=erase) of /_consent/records: a visitor's own records, found by
// their signed token, so nobody reaches another visitor's.
func (h *Handler) serveRecords(w http.ResponseWriter, r *http.Request, d *Decision) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return h.downloadRecords(w, r, d)
	case http.MethodDelete:
		return h.eraseRecords(w, r, d, false)
	case http.MethodPost:
		if err := checkSameOrigin(r); err != nil {
			return err
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			return errorf(http.StatusUnsupportedMediaType, "content type must be application/x-www-form-urlencoded")
		}
		if err := r.ParseForm(); err != nil {
			return errorf(http.StatusBadRequest, "malformed form: %v", err)
		}
		if r.PostForm.Get("action") != "erase" {
			return errorf(http.StatusBadRequest, "action must be erase")
		}
		return h.eraseRecords(w, r, d, true)
	}
	w.Header().Set("Allow", "GET, HEAD, POST, DELETE")
	return errorf(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
}

// recordColumns are the CSV export's columns.
var recordColumns = []string{"seq", "time", "site", "consent_id", "method", "policy_version", "shown", "lang",
	"granted", "denied", "regime", "country", "ip", "gpc", "dnt", "corrects", "correction", "hash"}

func (h *Handler) downloadRecords(w http.ResponseWriter, r *http.Request, d *Decision) error {
	id, ok := visitorID(d)
	if !ok {
		return errorf(http.StatusNotFound, "no consent records: this browser holds no consent cookie")
	}
	format := r.URL.Query().Get("format")
	if format != "" && format != "json" && format != "csv" {
		return errorf(http.StatusBadRequest, "format must be json or csv")
	}
	if err := h.checkRate(w, r); err != nil {
		return err
	}
	rs, req, err := h.app.visitorRecords(d.SiteID, id, store.RequestAccess, viaSelfService)
	if errors.Is(err, errNoRecords) {
		return errorf(http.StatusNotFound, "%v", err)
	}
	if err != nil {
		h.logger.Error("reading consent records", zap.Error(err))
		return errorf(http.StatusServiceUnavailable, "consent records unavailable")
	}
	name := "consent-records-" + d.SiteID + "-" + time.Now().UTC().Format("20060102")
	w.Header().Set("X-Consent-Request", req.ID)
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+safeFilename(name)+`.csv"`)
		w.WriteHeader(http.StatusOK)
		return writeRecordsCSV(w, rs)
	}
	w.Header().Set("Content-Disposition", `attachment; filename="`+safeFilename(name)+`.json"`)
	writeJSON(w, http.StatusOK, map[string]any{"site": d.SiteID, "consent_id": id, "request": req.ID, "records": rs})
	return nil
}

func safeFilename(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// writeRecordsCSV writes records as CSV (formula-like cells are quoted
// with a leading apostrophe so spreadsheets do not run them).
func writeRecordsCSV(w http.ResponseWriter, rs []store.Record) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(recordColumns); err != nil {
		return err
	}
	for _, rec := range rs {
		corr := ""
		if len(rec.Correction) > 0 {
			b, _ := json.Marshal(rec.Correction)
			corr = string(b)
		}
		row := []string{
			strconv.FormatUint(rec.Seq, 10), rec.Time.UTC().Format(time.RFC3339), rec.Site, rec.ID, rec.Method,
			rec.PolicyVersion, rec.Shown, rec.Lang, strings.Join(rec.Granted, " "), strings.Join(rec.Denied, " "),
			rec.Regime, rec.Country, rec.IP, strconv.FormatBool(rec.GPC), strconv.FormatBool(rec.DNT),
			strconv.FormatUint(rec.Corrects, 10), corr, rec.Hash,
		}
		for i, c := range row {
			if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
				row[i] = "'" + c
			}
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// eraseRecords erases the visitor's records, answers a receipt and clears
// the consent cookie.
func (h *Handler) eraseRecords(w http.ResponseWriter, r *http.Request, d *Decision, form bool) error {
	if !form {
		if err := checkSameOrigin(r); err != nil {
			return err
		}
	}
	id, ok := visitorID(d)
	if !ok {
		return errorf(http.StatusNotFound, "no consent records: this browser holds no consent cookie")
	}
	if err := h.checkRate(w, r); err != nil {
		return err
	}
	req, n, err := h.app.eraseVisitor(store.Request{Site: d.SiteID, ConsentID: id, Via: viaSelfService})
	if errors.Is(err, errNoRecords) {
		return errorf(http.StatusNotFound, "%v", err)
	}
	if err != nil {
		h.logger.Error("erasing consent records", zap.Error(err))
		return errorf(http.StatusServiceUnavailable, "erasure failed; nothing was confirmed, try again")
	}
	http.SetCookie(w, h.consentCookie(r, "", -1))
	for _, c := range h.expiredCookies(r, h.site.required) {
		w.Header().Add("Set-Cookie", c)
	}
	if form {
		http.Redirect(w, r, h.APIPrefix+"settings?erased="+url.QueryEscape(req.ID), http.StatusSeeOther)
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]any{"receipt": req.ID, "time": req.Completed, "erased": n})
	return nil
}

// shownCache remembers the hash of the policy snapshot per language.
type shownCache struct {
	mu sync.Mutex
	m  map[string]string
}

// policySnapshot is what a visitor was shown: the policy version and URL,
// the categories and services with their localised descriptions, and the
// banner's strings in their language.
type policySnapshot struct {
	Site          string            `json:"site"`
	PolicyVersion string            `json:"policy_version"`
	PolicyURL     string            `json:"policy_url,omitempty"`
	Lang          string            `json:"lang"`
	Categories    []bannerCategory  `json:"categories"`
	Strings       map[string]string `json:"strings,omitempty"`
}

// shown stores (once) the snapshot of what visitors in lang are shown and
// returns its hash, for the decision record.
func (h *Handler) shown(site, lang string) string {
	key := site + "\x00" + lang
	h.shownHashes.mu.Lock()
	defer h.shownHashes.mu.Unlock()
	if v, ok := h.shownHashes.m[key]; ok {
		return v
	}
	snap := policySnapshot{Site: site, PolicyVersion: h.PolicyVersion, PolicyURL: h.PolicyURL, Lang: lang}
	var t map[string]string
	if h.assets != nil {
		t = h.texts(lang)
		snap.Strings = t
	}
	snap.Categories = h.categoriesFor(t, &Decision{})
	raw, err := json.Marshal(snap)
	if err != nil {
		return ""
	}
	hash, err := h.app.store.PutPolicy(raw)
	if err != nil {
		h.logger.Error("storing policy snapshot", zap.Error(err))
		return ""
	}
	if h.shownHashes.m == nil {
		h.shownHashes.m = make(map[string]string)
	}
	if len(h.shownHashes.m) < 1024 {
		h.shownHashes.m[key] = hash
	}
	return hash
}

// recordLang is the language a decision was made in: the banner's, as it
// posted it, else the one the request would be shown.
func (h *Handler) recordLang(r *http.Request) string {
	if h.assets == nil {
		return ""
	}
	if l := r.URL.Query().Get("lang"); l != "" {
		if _, ok := h.assets.strings[l]; ok {
			return l
		}
	}
	return h.language("", r)
}
