package ua

import "strings"

// Device classes.
const (
	devDesktop = "desktop"
	devMobile  = "mobile"
	devTablet  = "tablet"
	devBot     = "bot"
	devOther   = "other"
)

// other is the Family and OS of anything unknown.
const other = "Other"

// Limits on the tokens an Info may carry. Anything longer, or with a
// character outside [A-Za-z0-9 ._-], is replaced by "Other" (Family, OS) or ""
// (Major), so an attacker-chosen User-Agent cannot smuggle itself into the
// generalised value through a regex capture.
const (
	maxTokenLen = 32
	maxMajorLen = 6
)

// familyAliases folds the mobile and in-app variants uap-go distinguishes into
// their browser: the device class already says "mobile".
var familyAliases = map[string]string{
	"Mobile Safari":              "Safari",
	"Mobile Safari UI/WKWebView": "Safari WebView",
	"Chrome Mobile":              "Chrome",
	"Chrome Mobile iOS":          "Chrome",
	"Chrome Mobile WebView":      "Chrome WebView",
	"Firefox Mobile":             "Firefox",
	"Firefox iOS":                "Firefox",
	"Edge Mobile":                "Edge",
	"IE Mobile":                  "IE",
	"Opera Mobile":               "Opera",
	"DuckDuckGo Mobile":          "DuckDuckGo",
	"QQ Browser Mobile":          "QQ Browser",
}

// osAliases folds Linux distributions into "Linux" and old OS names into
// their current family.
var osAliases = map[string]string{
	"Ubuntu":      "Linux",
	"Kubuntu":     "Linux",
	"Lubuntu":     "Linux",
	"Debian":      "Linux",
	"Fedora":      "Linux",
	"Red Hat":     "Linux",
	"CentOS":      "Linux",
	"Arch Linux":  "Linux",
	"Gentoo":      "Linux",
	"openSUSE":    "Linux",
	"SUSE":        "Linux",
	"Slackware":   "Linux",
	"Mageia":      "Linux",
	"Mandriva":    "Linux",
	"Linux Mint":  "Linux",
	"PCLinuxOS":   "Linux",
	"Puppy":       "Linux",
	"BackTrack":   "Linux",
	"macOS":       "Mac OS X",
	"Mac OS":      "Mac OS X",
	"Chromium OS": "Chrome OS",
}

// desktopOS lists the (normalised) OS families whose devices are desktops
// unless the device parse says otherwise.
var desktopOS = map[string]bool{
	"Windows":   true,
	"Mac OS X":  true,
	"Linux":     true,
	"Chrome OS": true,
	"FreeBSD":   true,
	"OpenBSD":   true,
	"NetBSD":    true,
	"BSD":       true,
	"Solaris":   true,
}

// handheldOS lists OS families that run on phones (and tablets).
var handheldOS = map[string]bool{
	"Android":              true,
	"iOS":                  true,
	"Windows Phone":        true,
	"Windows Mobile":       true,
	"BlackBerry OS":        true,
	"BlackBerry Tablet OS": true,
	"KaiOS":                true,
	"Firefox OS":           true,
	"Symbian OS":           true,
	"Symbian^3":            true,
	"Symbian^3 Anna":       true,
	"Symbian^3 Belle":      true,
	"Nokia Series 40":      true,
	"Nokia Series 30 Plus": true,
	"Bada":                 true,
	"MeeGo":                true,
	"Maemo":                true,
	"Sailfish":             true,
	"HarmonyOS":            true,
}

func normFamily(f string) string {
	if a, ok := familyAliases[f]; ok {
		return a
	}
	if b, ok := strings.CutSuffix(f, " Mobile"); ok && b != "" {
		f = b
	}
	return token(f)
}

func normOS(o string) string {
	if a, ok := osAliases[o]; ok {
		return a
	}
	return token(o)
}

// token returns s when it is a short, plain token and "Other" otherwise.
func token(s string) string {
	if s == "" || len(s) > maxTokenLen {
		return other
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == ' ' || c == '.' || c == '_' || c == '-':
		default:
			return other
		}
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' {
		return other
	}
	return s
}

// major returns s when it is a short run of digits and "" otherwise.
func major(s string) string {
	if s == "" || len(s) > maxMajorLen {
		return ""
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return ""
		}
	}
	return s
}
