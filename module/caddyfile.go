package consentgate

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/consentgate/consentgate/module/internal/policy"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("consent", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("consent", parseHandlerDirective)
	// After encode, so that encode wraps (and compresses) what the consent
	// handler writes; before the routing and responding directives.
	httpcaddyfile.RegisterDirectiveOrder("consent", httpcaddyfile.After, "encode")
}

// parseGlobalOption parses the consent global option. Syntax:
//
//	consent {
//		storage      <dir>
//		key_file     <path>
//		geoip        <path>
//		geoip_reload <duration>
//		retention    <duration>
//		pseudonym_key_file <path>
//		encryption_key_file <path>
//		k_anonymity  <k>
//	}
func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "consent", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from Caddyfile tokens.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "storage":
			err = oneArg(d, &a.Storage)
		case "key_file":
			err = oneArg(d, &a.KeyFile)
		case "geoip":
			err = oneArg(d, &a.GeoIP)
		case "geoip_reload":
			err = durationArg(d, &a.GeoIPReload)
		case "retention":
			err = durationArg(d, &a.Retention)
		case "pseudonym_key_file":
			err = oneArg(d, &a.PseudonymKeyFile)
		case "encryption_key_file":
			err = oneArg(d, &a.EncryptionKeyFile)
		case "k_anonymity":
			var v string
			if err = oneArg(d, &v); err == nil {
				n, perr := strconv.Atoi(v)
				if perr != nil || n < 1 {
					return d.Errf("k_anonymity must be a whole number of at least 1, got %q", v)
				}
				a.KAnonymity = n
			}
		default:
			return d.Errf("unrecognized consent option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func parseHandlerDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	if err := handler.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return handler, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	consent {
//		site            <id>
//		category        <name> [required] [sale_or_sharing] [<description>]
//		policy_version  <version>
//		reconsent_since <version>
//		policy_url      <url>
//		lifetime        <duration>
//		service <name> <category> {
//			title   <text>
//			purpose <text>
//			cookies <pattern...>
//			hosts   <host...>
//		}
//		cookie          <pattern> <category>
//		unknown_cookies allow|block
//		api_prefix      <path>
//		cookie_name     <name>
//		default_regime  opt-in|opt-out|notice
//		regime          opt-in|opt-out|notice <country...>
//		country_header  <header>
//		dnt             honor|ignore
//		gpc_json        on|off
//		banner          on|off
//		lang            <code>
//		text            [<lang>] <key> <text>
//		csp             enforce|report|off
//		csp_sources     <source...>
//		rate_limit      <burst> <interval> | off
//	}
//
// Every sub-option is optional; "consent" alone applies the defaults.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "site":
			err = oneArg(d, &h.Site)
		case "category":
			err = h.parseCategory(d)
		case "policy_version":
			err = oneArg(d, &h.PolicyVersion)
		case "reconsent_since":
			err = oneArg(d, &h.ReconsentSince)
		case "policy_url":
			err = oneArg(d, &h.PolicyURL)
		case "lifetime":
			err = durationArg(d, &h.Lifetime)
		case "service":
			err = h.parseService(d)
		case "cookie":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.ArgErr()
			}
			h.Cookies = append(h.Cookies, policy.CookieRule{Pattern: args[0], Category: args[1]})
		case "unknown_cookies":
			err = enumArg(d, &h.UnknownCookies, "allow", "block")
		case "api_prefix":
			err = oneArg(d, &h.APIPrefix)
		case "cookie_name":
			err = oneArg(d, &h.CookieName)
		case "default_regime":
			err = enumArg(d, &h.DefaultRegime, policy.OptIn, policy.OptOut, policy.Notice)
		case "regime":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.ArgErr()
			}
			if !policy.ValidRegime(args[0]) {
				return d.Errf("invalid regime %q: use opt-in, opt-out or notice", args[0])
			}
			if h.Regimes == nil {
				h.Regimes = make(map[string]string)
			}
			for _, c := range args[1:] {
				h.Regimes[strings.ToUpper(c)] = args[0]
			}
		case "country_header":
			err = oneArg(d, &h.CountryHeader)
		case "dnt":
			err = enumArg(d, &h.DNT, "honor", "ignore")
		case "banner":
			var v string
			if err = oneArg(d, &v); err == nil {
				on, perr := onOff(d, v)
				h.Banner, err = &on, perr
			}
		case "lang":
			err = oneArg(d, &h.Lang)
		case "rate_limit":
			args := d.RemainingArgs()
			switch {
			case len(args) == 1 && args[0] == "off":
				h.RateLimit = &RateLimit{Burst: -1}
			case len(args) == 2:
				n, perr := strconv.Atoi(args[0])
				if perr != nil || n < 1 {
					return d.Errf("rate_limit burst must be a positive number, got %q", args[0])
				}
				dur, perr := caddy.ParseDuration(args[1])
				if perr != nil || dur <= 0 {
					return d.Errf("rate_limit interval must be a positive duration, got %q", args[1])
				}
				h.RateLimit = &RateLimit{Burst: n, Interval: caddy.Duration(dur)}
			default:
				return d.ArgErr()
			}
		case "csp":
			err = enumArg(d, &h.CSP, "enforce", "report", "off")
		case "csp_sources":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.CSPSources = append(h.CSPSources, args...)
		case "text":
			args := d.RemainingArgs()
			lang := "*"
			switch len(args) {
			case 2:
			case 3:
				lang, args = args[0], args[1:]
			default:
				return d.ArgErr()
			}
			if h.Texts == nil {
				h.Texts = make(map[string]map[string]string)
			}
			if h.Texts[lang] == nil {
				h.Texts[lang] = make(map[string]string)
			}
			h.Texts[lang][args[0]] = args[1]
		case "gpc_json":
			var v string
			if err = oneArg(d, &v); err == nil {
				on, perr := onOff(d, v)
				h.GPCJSON, err = &on, perr
			}
		default:
			return d.Errf("unrecognized consent subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (h *Handler) parseCategory(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	c := policy.Category{Name: args[0]}
	for _, a := range args[1:] {
		switch a {
		case "required":
			c.Required = true
		case "sale_or_sharing":
			c.SaleOrSharing = true
		default:
			if c.Description != "" {
				return d.Errf("category %s: unexpected argument %q", c.Name, a)
			}
			c.Description = a
		}
	}
	h.Categories = append(h.Categories, c)
	return nil
}

func (h *Handler) parseService(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return d.ArgErr()
	}
	s := policy.Service{Name: args[0], Category: args[1]}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "title":
			err = oneArg(d, &s.Title)
		case "purpose":
			err = oneArg(d, &s.Purpose)
		case "cookies":
			s.Cookies = append(s.Cookies, d.RemainingArgs()...)
		case "hosts":
			s.Hosts = append(s.Hosts, d.RemainingArgs()...)
		default:
			return d.Errf("unrecognized service option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	h.Services = append(h.Services, s)
	return nil
}

func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func enumArg(d *caddyfile.Dispenser, dst *string, allowed ...string) error {
	name := d.Val()
	if err := oneArg(d, dst); err != nil {
		return err
	}
	for _, a := range allowed {
		if *dst == a {
			return nil
		}
	}
	return d.Errf("%s must be one of %s, got %q", name, strings.Join(allowed, ", "), *dst)
}

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("invalid duration %q: %v", s, err)
	}
	if dur <= 0 {
		return d.Errf("duration %q must be positive", s)
	}
	*dst = caddy.Duration(dur)
	return nil
}

func onOff(d *caddyfile.Dispenser, v string) (bool, error) {
	switch v {
	case "on", "true":
		return true, nil
	case "off", "false":
		return false, nil
	}
	return false, d.Errf("want on or off, got %q", v)
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)
