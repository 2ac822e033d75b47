package beacon

import "strings"

// Profile describes one analytics format.
type Profile struct {
	// Name is the profile's name in the Caddyfile.
	Name string
	// Query applies to the URL query and to form-encoded bodies.
	Query Fields
	// JSON applies to JSON bodies.
	JSON JSONRules
	// Lines marks bodies that hold one query-encoded hit per line (GA4's
	// batched /g/collect).
	Lines bool
}

// Profiles are the built-in formats by name.
var Profiles = map[string]func() *Profile{
	"ga4":            GA4,
	"matomo":         Matomo,
	"plausible":      Plausible,
	"umami":          Umami,
	"yandex_metrica": YandexMetrica,
}

// GA4 is Google Analytics 4: the gtag Measurement Protocol on /g/collect
// (query, and one hit per body line when batched) and the server-side
// Measurement Protocol on /mp/collect (JSON).
func GA4() *Profile {
	return &Profile{
		Name:  "ga4",
		Lines: true,
		Query: NewFields([]Rule{
			{"v", Keep}, {"tid", Keep}, {"gtm", Keep}, {"_p", Keep}, {"gcs", Keep}, {"gcd", Keep},
			{"npa", Keep}, {"dma", Keep}, {"dma_cps", Keep}, {"pscdl", Keep}, {"_eu", Keep}, {"tag_exp", Keep},
			// The Measurement Protocol's property and its secret (the
			// site's, not the visitor's).
			{"measurement_id", Keep}, {"api_secret", Keep}, {"firebase_app_id", Keep},
			{"cid", ID}, {"uid", ID}, {"sid", ID},
			{"_uip", IP}, {"uip", IP},
			{"ul", Lang}, {"sr", Keep}, {"dl", URL}, {"dr", Referrer}, {"dt", Redact},
			{"en", Keep}, {"_et", Keep}, {"_s", Keep}, {"sct", Keep}, {"seg", Keep}, {"_fv", Keep},
			{"_ss", Keep}, {"_nsi", Keep}, {"_ee", Keep}, {"tfd", Keep}, {"richsstsse", Keep},
			{"ep.*", Redact}, {"epn.*", Keep},
			// User properties, the client's full UA version list and client
			// hints would re-identify: dropped.
			{"up.*", Drop}, {"upn.*", Drop}, {"uafvl", Drop}, {"uaa", Drop}, {"uab", Drop},
			{"uam", Drop}, {"uamb", Drop}, {"uap", Drop}, {"uapv", Drop}, {"uaw", Drop},
		}, Drop),
		JSON: JSONRules{Fields: NewFields([]Rule{
			{"client_id", ID}, {"app_instance_id", ID}, {"user_id", ID},
			{"timestamp_micros", Keep}, {"non_personalized_ads", Keep},
			{"ip_override", IP}, {"user_agent", UA},
			{"user_properties", Drop}, {"user_data", Drop}, {"user_location", Drop}, {"device", Drop},
			{"consent.*", Keep},
			{"events[].name", Keep},
			{"events[].params.page_location", URL}, {"events[].params.page_referrer", Referrer},
			{"events[].params.page_title", Redact},
			{"events[].params.session_id", ID},
			{"events[].params.engagement_time_msec", Keep},
			{"events[].params.*", Redact},
			{"events[].params.items[].*", Redact},
		}, Drop)},
	}
}

// Matomo is Matomo's tracking API on /matomo.php (or /piwik.php), in the
// query or a form body, and its bulk requests: a JSON body whose
// "requests" are queries (matomo.js posts it as a form).
func Matomo() *Profile {
	query := matomoQuery()
	return &Profile{
		Name:  "matomo",
		Query: query,
		JSON: JSONRules{
			Fields:  NewFields([]Rule{{"requests[]", Query}, {"send_image", Keep}}, Drop),
			Queries: query,
		},
	}
}

func matomoQuery() Fields {
	return NewFields([]Rule{
		{"idsite", Keep}, {"rec", Keep}, {"apiv", Keep}, {"r", Keep}, {"rand", Keep},
		{"h", Keep}, {"m", Keep}, {"s", Keep}, {"res", Keep}, {"cookie", Keep}, {"send_image", Keep},
		{"pv_id", Keep}, {"ca", Keep}, {"bots", Keep}, {"new_visit", Keep}, {"ping", Keep},
		{"gt_ms", Keep}, {"pf_*", Keep}, {"e_v", Keep}, {"revenue", Keep}, {"ec_id", Keep},
		// Matomo takes only 16 hex digits as a visitor ID.
		{"_id", ShortID}, {"cid", ShortID}, {"uid", ID}, {"_idn", Keep}, {"_idvc", Keep},
		{"cip", IP}, {"ua", UA}, {"lang", Lang},
		{"url", URL}, {"link", URL}, {"download", URL},
		{"urlref", Referrer}, {"_ref", Referrer},
		{"action_name", Redact}, {"e_c", Redact}, {"e_a", Redact}, {"e_n", Redact},
		{"c_n", Redact}, {"c_p", Redact}, {"c_t", Redact}, {"dimension*", Redact},
		{"country", Country},
		// Coordinates, finer location, custom variables, search terms
		// and credentials never reach analytics.
		{"lat", Drop}, {"long", Drop}, {"city", Drop}, {"region", Drop},
		{"_cvar", Drop}, {"cvar", Drop}, {"search", Drop}, {"search_cat", Drop}, {"search_count", Drop},
		{"token_auth", Drop}, {"_rcn", Drop}, {"_rck", Drop}, {"_viewts", Drop}, {"_idts", Drop},
		{"uadata", Drop},
	}, Drop)
}

// Plausible is Plausible's event API (/api/event, JSON).
func Plausible() *Profile {
	return &Profile{
		Name: "plausible",
		JSON: JSONRules{Fields: NewFields([]Rule{
			{"n", Keep}, {"name", Keep}, {"d", Keep}, {"domain", Keep},
			{"u", URL}, {"url", URL}, {"r", Referrer}, {"referrer", Referrer},
			{"w", Keep}, {"h", Keep}, {"interactive", Keep},
			{"p.*", Redact}, {"props.*", Redact}, {"m.*", Redact}, {"meta.*", Redact},
			{"revenue.*", Keep}, {"$.*", Keep},
		}, Drop)},
	}
}

// Umami is Umami's collector (/api/send, JSON).
func Umami() *Profile {
	return &Profile{
		Name: "umami",
		JSON: JSONRules{Fields: NewFields([]Rule{
			{"type", Keep},
			{"payload.website", Keep}, {"payload.hostname", Keep}, {"payload.screen", Keep},
			{"payload.language", Lang}, {"payload.url", URL}, {"payload.referrer", Referrer},
			{"payload.title", Redact}, {"payload.name", Keep}, {"payload.data.*", Redact},
			{"payload.tag", Keep},
			{"payload.id", ID}, {"payload.distinctId", ID},
		}, Drop)},
	}
}

// YandexMetrica is Yandex Metrica's hit endpoint (/watch/<counter>).
func YandexMetrica() *Profile {
	return &Profile{
		Name: "yandex_metrica",
		Query: NewFields([]Rule{
			{"wmode", Keep}, {"charset", Keep}, {"page-url", URL}, {"page-ref", Referrer},
			{"ut", Keep}, {"t", Redact}, {"site-info", Redact},
			// browser-info carries fingerprinting data and the client id.
			{"browser-info", Drop},
		}, Drop),
	}
}

// ForPath guesses the profile of a request path, for "privacy_filter auto".
func ForPath(path string) string {
	switch {
	case strings.HasSuffix(path, "/g/collect"), strings.HasSuffix(path, "/mp/collect"):
		return "ga4"
	case strings.HasSuffix(path, "/matomo.php"), strings.HasSuffix(path, "/piwik.php"):
		return "matomo"
	case strings.HasSuffix(path, "/api/event"):
		return "plausible"
	case strings.HasSuffix(path, "/api/send"):
		return "umami"
	case strings.Contains(path, "/watch/"):
		return "yandex_metrica"
	}
	return ""
}
