package consentgate

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/consentgate/consentgate/module/internal/store"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves the consent records on Caddy's admin endpoint (local by
// default; Caddy's admin access controls apply):
//
//	GET  /consent/records/<site>/<id>     a visitor's records (access)
//	GET  /consent/export?site=&from=&to=&id=  JSON Lines, streamed
//	POST /consent/correct   {"site","id","seq","fields":{"country":"AT"}}
//	POST /consent/restrict  {"site","id","restrict":true,"note"}
//	POST /consent/erase     {"site","id"}
//	GET  /consent/requests?status=pending|overdue|all
//	POST /consent/requests  {"type","site","id","note","fields"}  (pending, 30-day deadline)
//	POST /consent/requests/<rid>/complete | /reject
//	GET  /consent/verify?site=
//	GET  /consent/stats?site=&from=&to=&shareable=true
//	POST /consent/purge
//	GET  /consent/backup
//	POST /consent/rotate-keys
type adminAPI struct {
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.consent",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Provision keeps the logger; the app is found per request (admin modules
// are provisioned before apps and must not create one).
func (a *adminAPI) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	return nil
}

// Routes returns the admin routes.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/consent/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

func apiErr(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

func (a *adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	app := activeApp.Load()
	if app == nil {
		return apiErr(http.StatusServiceUnavailable, "the consent app is not running in this configuration")
	}
	path := strings.Trim(strings.TrimPrefix(r.URL.Path, "/consent/"), "/")
	parts := strings.Split(path, "/")
	want := func(method string) error {
		if r.Method != method {
			w.Header().Set("Allow", method)
			return apiErr(http.StatusMethodNotAllowed, "method %s not allowed; use %s", r.Method, method)
		}
		return nil
	}
	var err error
	switch {
	case parts[0] == "records" && len(parts) == 3:
		if err = want(http.MethodGet); err == nil {
			err = a.lookup(w, app, parts[1], parts[2])
		}
	case path == "export":
		if err = want(http.MethodGet); err == nil {
			err = a.export(w, r, app)
		}
	case path == "correct", path == "restrict", path == "erase":
		if err = want(http.MethodPost); err == nil {
			err = a.act(w, r, app, path)
		}
	case path == "requests":
		switch r.Method {
		case http.MethodGet:
			err = a.listRequests(w, r, app)
		case http.MethodPost:
			err = a.newRequest(w, r, app)
		default:
			w.Header().Set("Allow", "GET, POST")
			err = apiErr(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
		}
	case parts[0] == "requests" && len(parts) == 3 && (parts[2] == "complete" || parts[2] == "reject"):
		if err = want(http.MethodPost); err == nil {
			err = a.answerRequest(w, r, app, parts[1], parts[2] == "complete")
		}
	case path == "verify":
		if err = want(http.MethodGet); err == nil {
			err = a.verify(w, r, app)
		}
	case path == "stats":
		if err = want(http.MethodGet); err == nil {
			err = a.stats(w, r, app)
		}
	case path == "purge":
		if err = want(http.MethodPost); err == nil {
			var res store.PurgeResult
			if res, err = app.store.Purge(app.clock()); err == nil {
				a.logger.Info("consent store purged", zap.Int("deleted", res.Deleted))
				writeJSON(w, http.StatusOK, res)
			}
		}
	case path == "backup":
		if err = want(http.MethodGet); err == nil {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Disposition", `attachment; filename="consentgate-`+time.Now().UTC().Format("20060102T150405Z")+`.backup"`)
			err = app.store.Backup(w, app.encKey)
		}
	case path == "rotate-keys":
		if err = want(http.MethodPost); err == nil {
			k, rerr := app.RotateKey()
			if rerr != nil {
				return apiErr(http.StatusConflict, "%v", rerr)
			}
			a.logger.Info("consent signing key rotated", zap.Uint32("key_id", k.ID))
			writeJSON(w, http.StatusOK, map[string]any{"key_id": k.ID})
		}
	default:
		return apiErr(http.StatusNotFound, "no consent admin endpoint %s", r.URL.Path)
	}
	if errors.Is(err, errNoRecords) {
		return apiErr(http.StatusNotFound, "%v", err)
	}
	var apiE caddy.APIError
	if err != nil && !errors.As(err, &apiE) {
		return apiErr(http.StatusInternalServerError, "%v", err)
	}
	return err
}

func validSiteID(site, id string) error {
	if site == "" || strings.ContainsAny(site, "/\x00") {
		return apiErr(http.StatusBadRequest, "a site is required")
	}
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return apiErr(http.StatusBadRequest, "a consent id is 32 lower-case hex digits")
	}
	return nil
}

func (a *adminAPI) lookup(w http.ResponseWriter, app *App, site, id string) error {
	if err := validSiteID(site, id); err != nil {
		return err
	}
	rs, req, err := app.visitorRecords(site, id, store.RequestAccess, viaAdmin)
	if err != nil {
		return err
	}
	cur, _ := app.store.Current(site, id)
	writeJSON(w, http.StatusOK, map[string]any{
		"site": site, "id": id, "request": req.ID, "records": rs, "current": cur,
		"restricted": app.sets.isRestricted(site, id),
	})
	return nil
}

// exportLine is one line of a JSON Lines export.
type exportLine struct {
	Site string `json:"site"`
	store.Entry
}

func parseDay(s string, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return t, apiErr(http.StatusBadRequest, "dates are YYYY-MM-DD or RFC 3339, not %q", s)
	}
	if end {
		t = t.Add(24 * time.Hour) // "to" is inclusive of its day
	}
	return t, nil
}

// export streams records as JSON Lines: one chain entry per line, in
// chain order, flushed as it goes, so memory stays flat for any size.
func (a *adminAPI) export(w http.ResponseWriter, r *http.Request, app *App) error {
	q := r.URL.Query()
	site, id := q.Get("site"), q.Get("id")
	from, err := parseDay(q.Get("from"), false)
	if err != nil {
		return err
	}
	to, err := parseDay(q.Get("to"), true)
	if err != nil {
		return err
	}
	if id != "" {
		// One visitor's export is a data-subject request.
		if err := validSiteID(site, id); err != nil {
			return err
		}
		rs, _, err := app.visitorRecords(site, id, store.RequestExport, viaAdmin)
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		for _, rec := range rs {
			if err := enc.Encode(rec); err != nil {
				return err
			}
		}
		return nil
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	flusher, _ := w.(http.Flusher)
	n := 0
	err = app.store.Export(site, from, to, func(s string, e store.Entry) error {
		line, err := json.Marshal(exportLine{Site: s, Entry: e})
		if err != nil {
			return err
		}
		if _, err := bw.Write(append(line, '\n')); err != nil {
			return err
		}
		n++
		if n%4096 == 0 && flusher != nil {
			if err := bw.Flush(); err != nil {
				return err
			}
			flusher.Flush()
		}
		return nil
	})
	if err != nil {
		// The status is sent; a broken last line tells the reader.
		_, _ = io.WriteString(bw, `{"error":"export interrupted"}`+"\n")
		_ = bw.Flush()
		a.logger.Error("exporting consent records", zap.Error(err))
		return nil
	}
	return bw.Flush()
}

// action is the body of correct, restrict and erase.
type action struct {
	Site     string            `json:"site"`
	ID       string            `json:"id"`
	Seq      uint64            `json:"seq,omitempty"`
	Fields   map[string]string `json:"fields,omitempty"`
	Restrict *bool             `json:"restrict,omitempty"`
	Note     string            `json:"note,omitempty"`
	Type     string            `json:"type,omitempty"`
}

func decodeAction(r *http.Request) (action, error) {
	var in action
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return in, apiErr(http.StatusBadRequest, "malformed request body: %v", err)
	}
	return in, validSiteID(in.Site, in.ID)
}

func (a *adminAPI) act(w http.ResponseWriter, r *http.Request, app *App, what string) error {
	in, err := decodeAction(r)
	if err != nil {
		return err
	}
	req := store.Request{Site: in.Site, ConsentID: in.ID, Via: viaAdmin, Note: in.Note, Fields: in.Fields}
	result, err := a.perform(app, what, req, in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, result)
	return nil
}

// perform carries out a correction, restriction or erasure.
func (a *adminAPI) perform(app *App, what string, req store.Request, in action) (any, error) {
	switch what {
	case "correct", store.RequestCorrection:
		if len(in.Fields) == 0 {
			return nil, apiErr(http.StatusBadRequest, "fields to correct are required, e.g. {\"country\":\"AT\"}")
		}
		req.Fields = in.Fields
		req, c, err := app.correctVisitor(req, in.Seq)
		if err != nil && !errors.Is(err, errNoRecords) && !errors.Is(err, store.ErrNotFound) {
			return nil, apiErr(http.StatusBadRequest, "%v", err)
		}
		if err != nil {
			return nil, err
		}
		return map[string]any{"request": req, "correction": c}, nil
	case "restrict", store.RequestRestriction:
		on := in.Restrict == nil || *in.Restrict
		req, err := app.restrictVisitor(req, on)
		if err != nil {
			return nil, err
		}
		return map[string]any{"request": req, "restricted": on}, nil
	case "erase", store.RequestErasure:
		req, n, err := app.eraseVisitor(req)
		if err != nil {
			return nil, err
		}
		return map[string]any{"request": req, "receipt": req.ID, "erased": n}, nil
	case store.RequestAccess, store.RequestExport:
		rs, req, err := app.visitorRecords(req.Site, req.ConsentID, what, req.Via)
		if err != nil {
			return nil, err
		}
		return map[string]any{"request": req, "records": rs}, nil
	}
	return nil, apiErr(http.StatusBadRequest, "unknown request type %q", what)
}

// requestView adds the overdue flag to a request.
type requestView struct {
	store.Request
	Overdue bool `json:"overdue"`
}

func (a *adminAPI) listRequests(w http.ResponseWriter, r *http.Request, app *App) error {
	status := r.URL.Query().Get("status")
	if status == "" {
		status = "all"
	}
	switch status {
	case "all", store.StatusPending, "overdue", store.StatusCompleted, store.StatusRejected:
	default:
		return apiErr(http.StatusBadRequest, "status must be all, pending, overdue, completed or rejected")
	}
	now := app.clock()
	out := []requestView{}
	overdue := 0
	err := app.store.Requests(func(req store.Request) error {
		v := requestView{Request: req, Overdue: req.Overdue(now)}
		if v.Overdue {
			overdue++
		}
		if status == "all" || req.Status == status || (status == "overdue" && v.Overdue) {
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	app.metrics.overdue.Set(float64(overdue))
	writeJSON(w, http.StatusOK, map[string]any{"requests": out, "overdue": overdue})
	return nil
}

// newRequest records a request an operator must confirm (the visitor
// asked by mail, say): it is pending with a 30-day deadline.
func (a *adminAPI) newRequest(w http.ResponseWriter, r *http.Request, app *App) error {
	in, err := decodeAction(r)
	if err != nil {
		return err
	}
	switch in.Type {
	case store.RequestAccess, store.RequestExport, store.RequestCorrection, store.RequestRestriction, store.RequestErasure:
	default:
		return apiErr(http.StatusBadRequest, "type must be access, export, correction, restriction or erasure")
	}
	now := app.clock().UTC()
	req := store.Request{
		ID: store.NewRequestID(now), Type: in.Type, Site: in.Site, Subject: store.Subject(in.Site, in.ID),
		ConsentID: in.ID, Via: viaAdmin, Note: in.Note, Fields: in.Fields, Status: store.StatusPending,
		Received: now, Deadline: now.Add(store.RequestDeadline),
	}
	if err := app.store.PutRequest(req); err != nil {
		return err
	}
	if _, _, err := app.checkRequests(); err != nil {
		a.logger.Error("checking data-subject requests", zap.Error(err))
	}
	writeJSON(w, http.StatusCreated, req)
	return nil
}

// answerRequest completes (carrying it out) or rejects a pending request.
func (a *adminAPI) answerRequest(w http.ResponseWriter, r *http.Request, app *App, rid string, complete bool) error {
	req, err := app.store.GetRequest(rid)
	if errors.Is(err, store.ErrNotFound) {
		return apiErr(http.StatusNotFound, "no request %s", rid)
	}
	if err != nil {
		return err
	}
	if req.Status != store.StatusPending {
		return apiErr(http.StatusConflict, "request %s is already %s", rid, req.Status)
	}
	var body struct {
		Note     string `json:"note"`
		Restrict *bool  `json:"restrict"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			return apiErr(http.StatusBadRequest, "malformed request body: %v", err)
		}
	}
	if body.Note != "" {
		req.Note = strings.TrimSpace(req.Note + "\n" + body.Note)
	}
	if !complete {
		now := app.clock().UTC()
		req.Status, req.Completed, req.Result = store.StatusRejected, &now, "rejected"
		if err := app.store.PutRequest(req); err != nil {
			return err
		}
		_, _, _ = app.checkRequests()
		writeJSON(w, http.StatusOK, map[string]any{"request": req})
		return nil
	}
	result, err := a.perform(app, req.Type, req, action{Site: req.Site, ID: req.ConsentID, Fields: req.Fields, Restrict: body.Restrict})
	if err != nil {
		return err
	}
	if _, _, err := app.checkRequests(); err != nil {
		a.logger.Error("checking data-subject requests", zap.Error(err))
	}
	writeJSON(w, http.StatusOK, result)
	return nil
}

func (a *adminAPI) verify(w http.ResponseWriter, r *http.Request, app *App) error {
	sites := []string{r.URL.Query().Get("site")}
	if sites[0] == "" {
		var err error
		if sites, err = app.store.Sites(); err != nil {
			return err
		}
	}
	out := []store.Verification{}
	ok := true
	for _, s := range sites {
		v, err := app.store.Verify(s)
		if errors.Is(err, store.ErrNotFound) {
			return apiErr(http.StatusNotFound, "%v", err)
		}
		if err != nil {
			return err
		}
		if !v.OK {
			ok = false
			a.logger.Error("consent record chain broken", zap.String("site", s),
				zap.Uint64("seq", v.Problem.Seq), zap.String("kind", v.Problem.Kind), zap.String("detail", v.Problem.Detail))
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": ok, "sites": out})
	return nil
}

// stats serves the aggregate counts. With shareable=true (for sharing
// outside the company) cells below k are suppressed and store details
// left out.
func (a *adminAPI) stats(w http.ResponseWriter, r *http.Request, app *App) error {
	q := r.URL.Query()
	shareable, _ := strconv.ParseBool(q.Get("shareable"))
	for _, d := range []string{q.Get("from"), q.Get("to")} {
		if d != "" {
			if _, err := time.Parse("2006-01-02", d); err != nil {
				return apiErr(http.StatusBadRequest, "dates are YYYY-MM-DD, not %q", d)
			}
		}
	}
	// Counts held in memory since the last flush are included.
	if err := app.flushTally(); err != nil {
		return err
	}
	cells, err := app.store.Stats(q.Get("site"), q.Get("from"), q.Get("to"))
	if err != nil {
		return err
	}
	k := app.kAnonymity()
	suppressed := 0
	if shareable {
		kept := cells[:0]
		for _, c := range cells {
			if c.Count < uint64(k) {
				suppressed++
				continue
			}
			kept = append(kept, c)
		}
		cells = kept
		writeJSON(w, http.StatusOK, map[string]any{"k": k, "suppressed": suppressed, "cells": cells})
		return nil
	}
	usage, err := app.store.Usage(app.clock())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"store": usage, "k": k, "cells": cells})
	return nil
}

// Interface guards
var (
	_ caddy.AdminRouter = (*adminAPI)(nil)
	_ caddy.Provisioner = (*adminAPI)(nil)
)
