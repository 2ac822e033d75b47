package policy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// Service is a tool that sets cookies or loads resources for a purpose.
type Service struct {
	// Name identifies the service, e.g. "google-analytics".
	Name string `json:"name"`
	// Title is the human-readable name shown to visitors.
	Title string `json:"title,omitempty"`
	// Category is the name of the category the service belongs to.
	Category string `json:"category"`
	// Purpose explains to visitors what the service does.
	Purpose string `json:"purpose,omitempty"`
	// Cookies are the names or glob patterns ('*' matches any run of
	// characters) of the cookies the service sets.
	Cookies []string `json:"cookies,omitempty"`
	// Hosts are the hosts the service loads scripts, frames or pixels
	// from, optionally with a path prefix ("www.google.com/maps"); a host
	// also covers its subdomains.
	Hosts []string `json:"hosts,omitempty"`
	// Inline are byte strings that identify the service's inline scripts.
	Inline []string `json:"inline,omitempty"`
}

// Catalog returns the built-in services: widely used trackers whose cookies
// are classified without any configuration.
func Catalog() []Service {
	return []Service{
		{
			Name: "google-analytics", Title: "Google Analytics", Category: Analytics,
			Purpose: "Measures visits and how the site is used.",
			Cookies: []string{"_ga", "_ga_*", "_gid", "_gat", "_gat_*", "__utma", "__utmb", "__utmc", "__utmt", "__utmt_*", "__utmz", "__utmv", "AMP_TOKEN", "_gac_*"},
			Hosts:   []string{"google-analytics.com", "www.google-analytics.com", "region1.google-analytics.com", "analytics.google.com"},
			Inline:  []string{"google-analytics.com/analytics.js", "googletagmanager.com/gtag/js", "gtag('config'", "gtag(\"config\""},
		},
		{
			Name: "google-tag-manager", Title: "Google Tag Manager", Category: Analytics,
			Purpose: "Loads and manages measurement tags.",
			Cookies: []string{"_dc_gtm_*", "_gtmeec"},
			Hosts:   []string{"googletagmanager.com", "www.googletagmanager.com"},
			Inline:  []string{"googletagmanager.com/gtm.js"},
		},
		{
			Name: "google-ads", Title: "Google Ads", Category: Marketing,
			Purpose: "Measures ad conversions and shows personalised ads.",
			Cookies: []string{"_gcl_au", "_gcl_aw", "_gcl_dc", "_gcl_gb", "_gcl_gs", "_gcl_ha", "_gcl_*", "IDE", "DSID", "test_cookie", "__gads", "__gpi", "__gsas", "FLC", "AID", "TAID", "FPAU", "FPGCLAW", "FPGCLDC", "NID", "1P_JAR"},
			Hosts:   []string{"googleadservices.com", "www.googleadservices.com", "googlesyndication.com", "pagead2.googlesyndication.com", "doubleclick.net", "stats.g.doubleclick.net", "googleads.g.doubleclick.net", "ad.doubleclick.net"},
		},
		{
			Name: "meta-pixel", Title: "Meta Pixel", Category: Marketing,
			Purpose: "Measures ad conversions and builds audiences on Facebook and Instagram.",
			Cookies: []string{"_fbp", "_fbc", "fr", "tr"},
			Hosts:   []string{"connect.facebook.net", "facebook.com", "www.facebook.com"},
			Inline:  []string{"connect.facebook.net", "fbq("},
		},
		{
			Name: "yandex-metrica", Title: "Yandex Metrica", Category: Analytics,
			Purpose: "Measures visits and records sessions.",
			Cookies: []string{"_ym_uid", "_ym_d", "_ym_isad", "_ym_visorc", "_ym_hostIndex", "_ym_*", "yandexuid", "ymex", "yabs-sid", "yuidss", "i"},
			Hosts:   []string{"mc.yandex.ru", "mc.yandex.com", "mc.yandex.kz", "mc.webvisor.org"},
			Inline:  []string{"mc.yandex.ru/metrika", "mc.yandex.com/metrika"},
		},
		{
			Name: "hotjar", Title: "Hotjar", Category: Analytics,
			Purpose: "Records heatmaps and sessions to understand usability.",
			Cookies: []string{"_hjSessionUser_*", "_hjSession_*", "_hjid", "_hjFirstSeen", "_hjAbsoluteSessionInProgress", "_hjIncludedInSessionSample*", "_hjIncludedInPageviewSample", "_hjTLDTest", "_hjLocalStorageTest", "_hjSessionStorageTest", "_hj*"},
			Hosts:   []string{"static.hotjar.com", "script.hotjar.com", "vars.hotjar.com", "in.hotjar.com", "content.hotjar.io"},
			Inline:  []string{"static.hotjar.com", "hotjar.com/c/hotjar"},
		},
		{
			Name: "microsoft-clarity", Title: "Microsoft Clarity", Category: Analytics,
			Purpose: "Records heatmaps and sessions.",
			Cookies: []string{"_clck", "_clsk", "CLID", "ANONCHK", "SM", "MR"},
			Hosts:   []string{"www.clarity.ms", "clarity.ms", "c.clarity.ms"},
			Inline:  []string{"clarity.ms/tag"},
		},
		{
			Name: "microsoft-ads", Title: "Microsoft Advertising", Category: Marketing,
			Purpose: "Measures ad conversions for Bing ads.",
			Cookies: []string{"_uetsid", "_uetvid", "_uetmsclkid", "MUID"},
			Hosts:   []string{"bat.bing.com"},
			Inline:  []string{"bat.bing.com/bat.js"},
		},
		{
			Name: "matomo", Title: "Matomo", Category: Analytics,
			Purpose: "Measures visits and how the site is used.",
			Cookies: []string{"_pk_id.*", "_pk_ses.*", "_pk_ref.*", "_pk_cvar.*", "_pk_hsr.*", "_pk_testcookie*", "MATOMO_SESSID", "PIWIK_SESSID"},
			Inline:  []string{"_paq.push(", "matomo.js", "piwik.js"},
		},
		{
			Name: "mixpanel", Title: "Mixpanel", Category: Analytics,
			Purpose: "Measures product usage and events.",
			Cookies: []string{"mp_*_mixpanel", "mp_*"},
			Hosts:   []string{"cdn.mxpnl.com", "api.mixpanel.com", "api-js.mixpanel.com", "cdn4.mxpnl.com"},
			Inline:  []string{"mixpanel.init(", "cdn.mxpnl.com"},
		},
		{
			Name: "hubspot", Title: "HubSpot", Category: Marketing,
			Purpose: "Tracks visitors for marketing automation and CRM.",
			Cookies: []string{"__hstc", "hubspotutk", "__hssc", "__hssrc", "messagesUtk", "__hs_*", "__cf_bm_hs"},
			Hosts:   []string{"js.hs-scripts.com", "js.hs-analytics.net", "track.hubspot.com", "js.hsforms.net", "js.usemessages.com"},
			Inline:  []string{"js.hs-scripts.com", "js.hs-analytics.net"},
		},
		{
			Name: "linkedin-insight", Title: "LinkedIn Insight Tag", Category: Marketing,
			Purpose: "Measures ad conversions and builds audiences on LinkedIn.",
			Cookies: []string{"li_fat_id", "li_sugr", "bcookie", "bscookie", "lidc", "UserMatchHistory", "AnalyticsSyncHistory", "li_gc", "lms_ads", "lms_analytics", "_guid"},
			Hosts:   []string{"snap.licdn.com", "px.ads.linkedin.com", "dc.ads.linkedin.com"},
			Inline:  []string{"_linkedin_partner_id", "snap.licdn.com"},
		},
		{
			Name: "tiktok-pixel", Title: "TikTok Pixel", Category: Marketing,
			Purpose: "Measures ad conversions and builds audiences on TikTok.",
			Cookies: []string{"_ttp", "_tt_enable_cookie", "ttcsid", "ttcsid_*", "tt_appInfo", "tt_sessionId", "tt_pixel_session_index"},
			Hosts:   []string{"analytics.tiktok.com"},
			Inline:  []string{"analytics.tiktok.com", "ttq.load("},
		},
		{
			Name: "x-pixel", Title: "X (Twitter) Pixel", Category: Marketing,
			Purpose: "Measures ad conversions on X.",
			Cookies: []string{"personalization_id", "muc_ads", "guest_id_ads", "guest_id_marketing"},
			Hosts:   []string{"static.ads-twitter.com", "analytics.twitter.com", "t.co"},
			Inline:  []string{"static.ads-twitter.com", "twq("},
		},
		{
			Name: "youtube", Title: "YouTube", Category: Marketing,
			Purpose: "Shows embedded videos; sets cookies to track viewing and personalise ads.",
			Cookies: []string{"YSC", "VISITOR_INFO1_LIVE", "VISITOR_PRIVACY_METADATA", "__Secure-YEC"},
			Hosts:   []string{"youtube.com", "youtube-nocookie.com", "youtu.be"},
		},
		{
			Name: "vimeo", Title: "Vimeo", Category: Marketing,
			Purpose: "Shows embedded videos and measures viewing.",
			Cookies: []string{"vuid"},
			Hosts:   []string{"player.vimeo.com", "vimeo.com"},
		},
		{
			Name: "instagram", Title: "Instagram", Category: Marketing,
			Purpose: "Shows embedded posts; Meta may track you across sites.",
			Hosts:   []string{"instagram.com", "cdninstagram.com"},
		},
		{
			Name: "x-embed", Title: "X (Twitter)", Category: Marketing,
			Purpose: "Shows embedded posts and timelines.",
			Hosts:   []string{"platform.twitter.com", "twitter.com", "x.com", "syndication.twitter.com"},
		},
		{
			Name: "tiktok-embed", Title: "TikTok", Category: Marketing,
			Purpose: "Shows embedded videos.",
			Hosts:   []string{"www.tiktok.com/embed", "tiktok.com/embed"},
		},
		{
			Name: "google-maps", Title: "Google Maps", Category: Preferences,
			Purpose: "Shows interactive maps.",
			Hosts:   []string{"www.google.com/maps", "maps.google.com", "maps.googleapis.com"},
		},
	}
}

// CookieRule assigns cookies matching Pattern to Category.
type CookieRule struct {
	// Pattern is a cookie name or a glob pattern with '*'.
	Pattern string `json:"pattern"`
	// Category is the name of the category the cookies belong to.
	Category string `json:"category"`
}

// Unclassified is the index Classify returns for a cookie no rule covers.
const Unclassified = -1

// Orphan is the index Classify returns for a cookie whose rule names a
// category the site does not define; such cookies can never be granted.
const Orphan = -2

type rule struct {
	pattern  string
	category int
	service  string
}

// Classifier maps cookie names to category indexes. It is immutable once
// built and safe for concurrent use.
type Classifier struct {
	// tiers[0] holds the site's cookie rules, tiers[1] its services'
	// cookies, tiers[2] the catalog: an earlier tier wins, even with a
	// pattern over an exact name.
	tiers [3]ruleSet
}

type ruleSet struct {
	exact    map[string]rule
	patterns []rule
}

func (rs *ruleSet) lookup(name string) (rule, bool) {
	if r, ok := rs.exact[name]; ok {
		return r, true
	}
	for _, r := range rs.patterns {
		if Glob(r.pattern, name) {
			return r, true
		}
	}
	return rule{}, false
}

// NewClassifier builds a classifier for a site's categories: the site's own
// cookie rules first, then its services, then the built-in catalog, so the
// site overrides the catalog by name or pattern. Catalog rules whose
// category the site does not define classify as Orphan.
func NewClassifier(categories []Category, site []CookieRule, services []Service, catalog []Service) (*Classifier, error) {
	index := make(map[string]int, len(categories))
	for i, c := range categories {
		index[c.Name] = i
	}
	c := &Classifier{}
	for i := range c.tiers {
		c.tiers[i].exact = make(map[string]rule)
	}
	add := func(tier int, pattern, category, service string) error {
		rs := &c.tiers[tier]
		strict := tier < 2
		if pattern == "" || strings.ContainsAny(pattern, " ;=,\t\"") {
			return fmt.Errorf("invalid cookie pattern %q", pattern)
		}
		i, ok := index[category]
		if !ok {
			if strict {
				return fmt.Errorf("cookie %q: unknown category %q", pattern, category)
			}
			i = Orphan
		}
		r := rule{pattern: pattern, category: i, service: service}
		if !strings.Contains(pattern, "*") {
			if _, dup := rs.exact[pattern]; !dup {
				rs.exact[pattern] = r
			}
			return nil
		}
		rs.patterns = append(rs.patterns, r)
		return nil
	}
	for _, r := range site {
		if err := add(0, r.Pattern, r.Category, ""); err != nil {
			return nil, err
		}
	}
	for _, s := range services {
		for _, p := range s.Cookies {
			if err := add(1, p, s.Category, s.Name); err != nil {
				return nil, fmt.Errorf("service %s: %w", s.Name, err)
			}
		}
	}
	for _, s := range catalog {
		for _, p := range s.Cookies {
			if err := add(2, p, s.Category, s.Name); err != nil {
				return nil, fmt.Errorf("catalog service %s: %w", s.Name, err)
			}
		}
	}
	return c, nil
}

// Classify returns the category index of a cookie name (Unclassified or
// Orphan when it has none) and the service it belongs to, if known. Site
// rules win over the catalog; within each, exact names win over patterns and
// among patterns the first added wins.
func (c *Classifier) Classify(name string) (int, string) {
	for i := range c.tiers {
		if r, ok := c.tiers[i].lookup(name); ok {
			return r.category, r.service
		}
	}
	return Unclassified, ""
}

// Glob reports whether name matches pattern, where '*' matches any run of
// characters (including none) and every other byte matches itself.
func Glob(pattern, name string) bool {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		return pattern == name
	}
	prefix := pattern[:star]
	if !strings.HasPrefix(name, prefix) {
		return false
	}
	name = name[len(prefix):]
	rest := pattern[star+1:]
	for {
		next := strings.IndexByte(rest, '*')
		if next < 0 {
			return strings.HasSuffix(name, rest)
		}
		seg := rest[:next]
		i := strings.Index(name, seg)
		if i < 0 {
			return false
		}
		name = name[i+len(seg):]
		rest = rest[next+1:]
	}
}

// HostIndex finds the service a URL belongs to by host (and subdomain) and
// optional path prefix.
type HostIndex struct {
	hosts map[string][]hostRule
}

type hostRule struct {
	path    string
	service *Service
}

// NewHostIndex indexes the hosts of services; earlier services win.
func NewHostIndex(services ...[]Service) *HostIndex {
	ix := &HostIndex{hosts: make(map[string][]hostRule)}
	for _, list := range services {
		for i := range list {
			s := &list[i]
			for _, h := range s.Hosts {
				host, path, _ := strings.Cut(strings.ToLower(h), "/")
				if path != "" {
					path = "/" + path
				}
				ix.hosts[host] = append(ix.hosts[host], hostRule{path: path, service: s})
			}
		}
	}
	return ix
}

// Lookup returns the service serving host and path, or nil.
func (ix *HostIndex) Lookup(host, path string) *Service {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	for host != "" {
		for _, r := range ix.hosts[host] {
			if r.path == "" || strings.HasPrefix(path, r.path) {
				return r.service
			}
		}
		i := strings.IndexByte(host, '.')
		if i < 0 {
			break
		}
		host = host[i+1:]
	}
	return nil
}

// InlineIndex finds the service of an inline script by its signatures.
// Inline scripts can be large (an application inlined whole), so it reads
// the code once, looking up each 4-byte window in a bit table of the
// signatures' first four bytes, rather than searching for every signature
// in turn.
type InlineIndex struct {
	sigs []inlineSig
	// heads has a bit for the hash of the first four bytes of each
	// signature of four bytes or more; short ones are searched directly.
	heads [inlineHeadBits / 64]uint64
	short []int // indexes into sigs of signatures under four bytes
}

type inlineSig struct {
	sig     []byte
	service *Service
}

const inlineHeadBits = 1 << 14

func inlineHead(w uint32) uint32 { return (w * 0x9E3779B1) >> (32 - 14) }

// NewInlineIndex indexes the inline signatures of services.
func NewInlineIndex(services ...[]Service) *InlineIndex {
	ix := &InlineIndex{}
	for _, list := range services {
		for i := range list {
			for _, sig := range list[i].Inline {
				if sig == "" {
					continue
				}
				if len(sig) < 4 {
					ix.short = append(ix.short, len(ix.sigs))
				} else {
					h := inlineHead(binary.LittleEndian.Uint32([]byte(sig)))
					ix.heads[h/64] |= 1 << (h % 64)
				}
				ix.sigs = append(ix.sigs, inlineSig{sig: []byte(sig), service: &list[i]})
			}
		}
	}
	return ix
}

// Lookup returns the service of the first signature, in the order the
// services list them, that appears in code; nil when none does.
func (ix *InlineIndex) Lookup(code []byte) *Service {
	best := len(ix.sigs)
	for _, i := range ix.short {
		if i < best && bytes.Contains(code, ix.sigs[i].sig) {
			best = i
		}
	}
	for p := 0; p+4 <= len(code); p++ {
		h := inlineHead(binary.LittleEndian.Uint32(code[p:]))
		if ix.heads[h/64]&(1<<(h%64)) == 0 {
			continue
		}
		for i := 0; i < best; i++ {
			if s := ix.sigs[i].sig; len(s) >= 4 && bytes.HasPrefix(code[p:], s) {
				best = i
				break
			}
		}
		if best == 0 {
			break
		}
	}
	if best < len(ix.sigs) {
		return ix.sigs[best].service
	}
	return nil
}
