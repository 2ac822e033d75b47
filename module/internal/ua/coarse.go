package ua

import "strings"

// coarseScanLimit bounds the bytes the heuristic looks at, so that even a
// megabyte-long header costs a few microseconds at most.
const coarseScanLimit = 4096

// coarse classifies ua with a handful of substring checks and never calls
// uap-go. It is the answer for User-Agents that are too long to parse and for
// misses beyond the parse budget. Its output uses the same vocabulary as the
// full parse but is less precise (Samsung Internet looks like Chrome, an
// unknown OS is "Other", and so on).
func coarse(ua string) Info {
	if len(ua) > coarseScanLimit {
		ua = ua[:coarseScanLimit]
	}
	info := Info{Family: other, OS: other, Device: devOther}

	switch {
	case strings.Contains(ua, "Edg/"):
		info.Family, info.Major = "Edge", versionAfter(ua, "Edg/")
	case strings.Contains(ua, "Firefox/"):
		info.Family, info.Major = "Firefox", versionAfter(ua, "Firefox/")
	case strings.Contains(ua, "Chrome/"):
		info.Family, info.Major = "Chrome", versionAfter(ua, "Chrome/")
	case strings.Contains(ua, "Safari/"):
		// Safari's own version is in Version/; Safari/ carries a WebKit build.
		info.Family, info.Major = "Safari", versionAfter(ua, "Version/")
	}

	iPhone := strings.Contains(ua, "iPhone")
	iPad := strings.Contains(ua, "iPad")
	android := strings.Contains(ua, "Android")
	switch {
	case android:
		info.OS = "Android"
	case iPhone || iPad:
		info.OS = "iOS"
	case strings.Contains(ua, "Windows"):
		info.OS = "Windows"
	case strings.Contains(ua, "Mac OS X"):
		info.OS = "Mac OS X"
	case strings.Contains(ua, "CrOS"):
		info.OS = "Chrome OS"
	case strings.Contains(ua, "Linux"):
		info.OS = "Linux"
	}

	mobile := strings.Contains(ua, "Mobile")
	switch {
	case looksLikeBot(ua):
		info.Device = devBot
	case iPad || (android && !mobile):
		info.Device = devTablet
	case iPhone || android || mobile:
		info.Device = devMobile
	case desktopOS[info.OS]:
		info.Device = devDesktop
	}
	return info
}

// versionAfter returns the run of digits right after the first prefix in s,
// or "" when there is none or it is implausibly long.
func versionAfter(s, prefix string) string {
	i := strings.Index(s, prefix)
	if i < 0 {
		return ""
	}
	s = s[i+len(prefix):]
	n := 0
	for n < len(s) && '0' <= s[n] && s[n] <= '9' {
		n++
	}
	return major(s[:n])
}

// looksLikeBot reports whether s contains "bot", "crawler" or "spider" in
// any ASCII case, in one pass.
func looksLikeBot(s string) bool {
	for i := 0; i < len(s); i++ {
		var word string
		switch s[i] | 0x20 {
		case 'b':
			word = "bot"
		case 'c':
			word = "crawler"
		case 's':
			word = "spider"
		default:
			continue
		}
		if hasPrefixFold(s[i:], word) {
			return true
		}
	}
	return false
}

// hasPrefixFold reports whether s starts with the lower-case ASCII prefix,
// ignoring ASCII case.
func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for j := 0; j < len(prefix); j++ {
		if s[j]|0x20 != prefix[j] {
			return false
		}
	}
	return true
}

// containsFold reports whether s contains the lower-case ASCII needle,
// ignoring ASCII case, without allocating.
func containsFold(s, needle string) bool {
	n := len(needle)
	if n == 0 {
		return true
	}
	first := needle[0]
	for i := 0; i+n <= len(s); i++ {
		if s[i]|0x20 != first {
			continue
		}
		j := 1
		for j < n && s[i+j]|0x20 == needle[j] {
			j++
		}
		if j == n {
			return true
		}
	}
	return false
}
