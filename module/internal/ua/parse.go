package ua

import (
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/ua-parser/uap-go/uaparser"
)

// engine is the full, expensive parse on top of uap-go.
//
// uap-go's Parser.Parse starts three goroutines per call and always runs all
// three regex lists. The engine instead calls ParseOs, ParseUserAgent and
// ParseDevice directly, on the calling goroutine, and skips the device list
// (about half the cost of a desktop User-Agent, which falls through all of
// it) when the OS is a desktop OS and the User-Agent carries no hint of a
// handheld: then only uap-go's "Spider" device patterns run, to find bots.
//
// The parser is built with a one-entry internal cache: caching is done by the
// Generalizer, and uap-go's ARC caches would otherwise keep three more copies
// of attacker-chosen strings.
type engine struct {
	p       *uaparser.Parser
	spiders []*regexp.Regexp
}

// sharedEngine compiles uap-go's ~1200 embedded regexes once per process;
// the engine is stateless apart from uap-go's atomic match counters, so every
// Generalizer shares it.
var sharedEngine = sync.OnceValues(newEngine)

func newEngine() (e *engine, err error) {
	defer func() {
		// uap-go panics on a malformed embedded definition.
		if r := recover(); r != nil {
			e, err = nil, fmt.Errorf("ua: loading uap-go definitions: %v", r)
		}
	}()
	p, err := uaparser.New(uaparser.WithCacheSize(1))
	if err != nil {
		return nil, fmt.Errorf("ua: loading uap-go definitions: %w", err)
	}
	e = &engine{p: p}
	for _, d := range p.RegexDefinitions.Device {
		if d.DeviceReplacement == "Spider" && d.Reg != nil {
			e.spiders = append(e.spiders, d.Reg)
		}
	}
	if len(e.spiders) == 0 {
		return nil, fmt.Errorf("ua: uap-go definitions have no Spider device patterns")
	}
	return e, nil
}

// handheldHints are substrings that send a desktop-OS User-Agent through the
// full device parse after all (Kindle and Silk in desktop mode, Windows
// touch tablets, TVs, anything calling itself mobile).
var handheldHints = []string{"Mobile", "Tablet", "Touch", "Kindle", "Silk", "TV", "Android", "iPad", "iPhone"}

func (e *engine) parse(ua string) Info {
	osName := normOS(e.p.ParseOs(ua).Family)
	u := e.p.ParseUserAgent(ua)
	info := Info{Family: normFamily(u.Family), Major: major(u.Major), OS: osName}
	if u.Family == "Spider" {
		info.Device = devBot
		return info
	}
	if desktopOS[osName] && !containsAny(ua, handheldHints) {
		info.Device = devDesktop
		for _, re := range e.spiders {
			if re.MatchString(ua) {
				info.Device = devBot
				break
			}
		}
		return info
	}
	d := e.p.ParseDevice(ua)
	info.Device = deviceClass(d, osName, ua)
	return info
}

// deviceClass maps uap-go's device result, the OS and a couple of
// conventions to a device class.
func deviceClass(d *uaparser.Device, osName, ua string) string {
	fam, brand, model := d.Family, d.Brand, d.Model
	switch {
	case fam == "Spider" || brand == "Spider":
		return devBot
	case fam == "iPad" || strings.Contains(fam, "Tablet") || strings.Contains(brand, "Tablet") ||
		strings.Contains(model, "Tablet") || strings.HasPrefix(fam, "Kindle"):
		return devTablet
	case strings.Contains(fam, "TV") || strings.Contains(model, "TV"):
		return devOther
	case osName == "Android" && !strings.Contains(ua, "Mobile"):
		// Android browsers mark phones with "Mobile"; tablets omit it.
		return devTablet
	case fam == "iPhone" || fam == "iPod" || strings.HasPrefix(fam, "iPod") ||
		fam == "Generic Smartphone" || fam == "Generic Feature Phone" ||
		strings.Contains(model, "Smartphone") || strings.Contains(model, "Feature Phone"):
		return devMobile
	case handheldOS[osName]:
		return devMobile
	case desktopOS[osName]:
		return devDesktop
	}
	return devOther
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
