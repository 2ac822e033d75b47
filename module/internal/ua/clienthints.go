package ua

import "strings"

// Limits on client-hint input; anything beyond is ignored.
const (
	maxCHLen     = 512
	maxCHMembers = 16
)

// brandPriority ranks Sec-CH-UA brands: a browser's own brand beats an
// unrecognised one, which beats "Google Chrome", which beats "Chromium"
// (every Chromium-based browser lists the last two).
const (
	prioNone = iota
	prioChromium
	prioChrome
	prioUnknown
	prioKnown
)

// knownBrands maps Sec-CH-UA brands to the family names uap-go uses.
var knownBrands = map[string]string{
	"Microsoft Edge":       "Edge",
	"Opera":                "Opera",
	"Opera GX":             "Opera",
	"Brave":                "Brave",
	"Samsung Internet":     "Samsung Internet",
	"YaBrowser":            "Yandex Browser",
	"Yandex":               "Yandex Browser",
	"Vivaldi":              "Vivaldi",
	"DuckDuckGo":           "DuckDuckGo",
	"Android WebView":      "Chrome WebView",
	"HeadlessChrome":       "HeadlessChrome",
	"Whale":                "Whale",
	"Avast Secure Browser": "Avast Secure Browser",
}

// platforms maps Sec-CH-UA-Platform values to uap-go's OS families.
var platforms = map[string]string{
	"Windows":     "Windows",
	"macOS":       "Mac OS X",
	"Linux":       "Linux",
	"Android":     "Android",
	"Chrome OS":   "Chrome OS",
	"Chromium OS": "Chrome OS",
	"iOS":         "iOS",
	"Fuchsia":     "Fuchsia",
	"Unknown":     other,
	"":            other,
}

// FromClientHints reduces Sec-CH-UA* values the same way as Generalize: the
// Sec-CH-UA brand list gives family and major version, Sec-CH-UA-Platform
// the OS and Sec-CH-UA-Mobile ("?1" or "?0") the device class. The values are
// the raw header values, e.g.
//
//	`"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"`, `"Windows"`, `?0`
//
// The boolean is false when the brand list yields no usable brand (absent,
// malformed, oversized or only GREASE brands); OS and Device are still
// filled in from the other two values then, and Family is "Other".
func FromClientHints(secCHUA, platform, mobile string) (Info, bool) {
	info := Info{Family: other, OS: chPlatform(platform)}
	best := prioNone
	if len(secCHUA) <= maxCHLen {
		members := 0
		s := secCHUA
		for members < maxCHMembers {
			brand, version, rest, ok := nextBrand(s)
			if !ok {
				break
			}
			members++
			s = rest
			fam, prio := classifyBrand(brand)
			if prio > best {
				best = prio
				info.Family, info.Major = fam, chMajor(version)
			}
		}
	}

	switch strings.TrimSpace(mobile) {
	case "?1":
		info.Device = devMobile
	default:
		switch {
		case info.OS == "Android":
			// Chrome on Android tablets sends ?0.
			info.Device = devTablet
		case desktopOS[info.OS]:
			info.Device = devDesktop
		default:
			info.Device = devOther
		}
	}
	if info.Family == "HeadlessChrome" {
		info.Device = devBot
	}
	return info, best != prioNone
}

func classifyBrand(brand string) (string, int) {
	switch {
	case brand == "Google Chrome":
		return "Chrome", prioChrome
	case brand == "Chromium":
		return "Chromium", prioChromium
	case containsFold(brand, "brand"):
		// GREASE: "Not-A.Brand", "Not A(Brand", ") Not;A Brand", ...
		return "", prioNone
	}
	if fam, ok := knownBrands[brand]; ok {
		return fam, prioKnown
	}
	if t := token(brand); t != other {
		return t, prioUnknown
	}
	return "", prioNone
}

// nextBrand parses one member of a Structured Field list of strings with
// parameters, `"Brand";v="124"`, returning the brand (escapes left in
// place), the v parameter and the rest of the list.
func nextBrand(s string) (brand, version, rest string, ok bool) {
	s = trimOWS(s)
	if s == "" || s[0] != '"' {
		return "", "", "", false
	}
	brand, s, ok = quoted(s)
	if !ok {
		return "", "", "", false
	}
	// Parameters: *( ";" *SP key [ "=" value ] )
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" || s[0] != ';' {
			break
		}
		s = strings.TrimLeft(s[1:], " ")
		k := 0
		for k < len(s) && s[k] != '=' && s[k] != ';' && s[k] != ',' && s[k] != ' ' {
			k++
		}
		key := s[:k]
		s = s[k:]
		if s == "" || s[0] != '=' {
			continue
		}
		s = s[1:]
		var val string
		if s != "" && s[0] == '"' {
			val, s, ok = quoted(s)
			if !ok {
				return "", "", "", false
			}
		} else {
			v := 0
			for v < len(s) && s[v] != ';' && s[v] != ',' && s[v] != ' ' && s[v] != '\t' {
				v++
			}
			val, s = s[:v], s[v:]
		}
		if key == "v" {
			version = val
		}
	}
	s = trimOWS(s)
	switch {
	case s == "":
	case s[0] == ',':
		s = s[1:]
	default:
		return "", "", "", false
	}
	return brand, version, s, true
}

// quoted splits a leading sf-string off s, returning its content without
// the quotes (backslash escapes are kept) and the remainder.
func quoted(s string) (content, rest string, ok bool) {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return s[1:i], s[i+1:], true
		}
	}
	return "", "", false
}

func trimOWS(s string) string { return strings.Trim(s, " \t") }

// chMajor takes the leading digits of a brand version ("124" or
// "124.0.6367.91").
func chMajor(v string) string {
	n := 0
	for n < len(v) && '0' <= v[n] && v[n] <= '9' {
		n++
	}
	return major(v[:n])
}

func chPlatform(p string) string {
	p = trimOWS(p)
	if len(p) >= 2 && p[0] == '"' && p[len(p)-1] == '"' {
		p = p[1 : len(p)-1]
	}
	if os, ok := platforms[p]; ok {
		return os
	}
	return token(p)
}
