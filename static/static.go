// Package static exports ConsentGate's static files as an embedded file
// system: the banner script and styles, their translations, the no-JS
// settings page template and the demo website.
package static

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// FS holds the static files.
//
//go:embed demo i18n banner.js banner.css settings.html
var FS embed.FS

// Asset is an embedded file served under a content-hashed name.
type Asset struct {
	// Name is the hashed file name, e.g. "banner.3f2a9c1b.js".
	Name        string
	ContentType string
	Body        []byte
	ETag        string
}

// HashedAsset loads name ("banner.js") and names it by its content hash.
func HashedAsset(name string) (Asset, error) {
	body, err := FS.ReadFile(name)
	if err != nil {
		return Asset{}, err
	}
	sum := sha256.Sum256(body)
	h := hex.EncodeToString(sum[:])[:12]
	ext := path.Ext(name)
	ct := "application/octet-stream"
	switch ext {
	case ".js":
		ct = "text/javascript; charset=utf-8"
	case ".css":
		ct = "text/css; charset=utf-8"
	}
	return Asset{Name: strings.TrimSuffix(name, ext) + "." + h + ext, ContentType: ct, Body: body, ETag: `"` + h + `"`}, nil
}

// Translations returns the banner strings by language code; every
// language has every key of English (missing keys fall back to English).
func Translations() (map[string]map[string]string, error) {
	out := make(map[string]map[string]string)
	entries, err := fs.ReadDir(FS, "i18n")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := FS.ReadFile("i18n/" + e.Name())
		if err != nil {
			return nil, err
		}
		var m map[string]string
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("translation %s: %w", e.Name(), err)
		}
		out[strings.TrimSuffix(e.Name(), ".json")] = m
	}
	en, ok := out["en"]
	if !ok {
		return nil, fmt.Errorf("translation en.json missing")
	}
	for _, m := range out {
		for k, v := range en {
			if m[k] == "" {
				m[k] = v
			}
		}
	}
	return out, nil
}
