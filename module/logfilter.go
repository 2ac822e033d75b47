package consentgate

import (
	"crypto/rand"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap/zapcore"

	"github.com/consentgate/consentgate/module/internal/anonymize"
	"github.com/consentgate/consentgate/module/internal/cookies"
)

func init() {
	caddy.RegisterModule(PseudonymizeFilter{})
}

// logPseudonymizer is the consent app's keyed pseudonymiser, published for
// log filters: logging is provisioned before apps, so a filter cannot ask
// for the app in Provision and looks it up when it filters instead.
var logPseudonymizer atomic.Pointer[anonymize.Pseudonymizer]

var (
	fallbackOnce   sync.Once
	fallbackPseudo *anonymize.Pseudonymizer
)

// currentLogPseudonymizer returns the app's pseudonymiser, or until there
// is one a per-process random key (values are never logged raw either way).
func currentLogPseudonymizer() *anonymize.Pseudonymizer {
	if p := logPseudonymizer.Load(); p != nil {
		return p
	}
	fallbackOnce.Do(func() {
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		fallbackPseudo, _ = anonymize.NewPseudonymizer(key, nil)
	})
	return fallbackPseudo
}

// PseudonymizeFilter is a log field filter that keeps raw IP addresses and
// cookie values out of Caddy's logs: IPs are truncated, cookie values and
// other values replaced by the consent app's keyed pseudonyms, so the same
// visitor still correlates within the logs without being identifiable.
//
//	log {
//		format filter {
//			request>remote_ip pseudonymize ip
//			request>client_ip pseudonymize ip
//			request>headers>X-Forwarded-For pseudonymize ip
//			request>headers>Cookie pseudonymize cookie
//		}
//	}
type PseudonymizeFilter struct {
	// Kind is what the field holds: "ip" (truncated), "cookie" (a Cookie
	// header: each value pseudonymised, names kept) or "value" (the whole
	// value pseudonymised). Default: "ip".
	Kind string `json:"kind,omitempty"`

	// IPBytes is how many trailing bytes of an IP are masked (1–3, or 4 to
	// remove). Default: 2 (IPv4 /16, IPv6 /32).
	IPBytes int `json:"ip_bytes,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (PseudonymizeFilter) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.encoders.filter.pseudonymize",
		New: func() caddy.Module { return new(PseudonymizeFilter) },
	}
}

// Provision sets defaults. It must not ask for the consent app (logging is
// set up before apps).
func (f *PseudonymizeFilter) Provision(caddy.Context) error {
	if f.Kind == "" {
		f.Kind = "ip"
	}
	if f.IPBytes == 0 {
		f.IPBytes = 2
	}
	return nil
}

// Validate checks the configuration.
func (f *PseudonymizeFilter) Validate() error {
	switch f.Kind {
	case "ip", "cookie", "value":
	default:
		return fmt.Errorf("pseudonymize kind must be ip, cookie or value, got %q", f.Kind)
	}
	if f.IPBytes < 1 || f.IPBytes > 4 {
		return fmt.Errorf("pseudonymize ip_bytes must be 1 to 4, got %d", f.IPBytes)
	}
	return nil
}

// UnmarshalCaddyfile parses the filter. Syntax:
//
//	pseudonymize [ip|cookie|value] [<ip bytes>]
func (f *PseudonymizeFilter) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	args := d.RemainingArgs()
	if len(args) > 2 {
		return d.ArgErr()
	}
	if len(args) > 0 {
		f.Kind = args[0]
	}
	if len(args) > 1 {
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return d.Errf("ip bytes: %v", err)
		}
		f.IPBytes = n
	}
	return nil
}

// Filter implements logging.LogFieldFilter.
func (f PseudonymizeFilter) Filter(in zapcore.Field) zapcore.Field {
	if values, ok := stringSlice(in.Interface); ok {
		out := make(stringArray, len(values))
		for i, v := range values {
			out[i] = f.apply(v)
		}
		in.Interface = out
		return in
	}
	in.String = f.apply(in.String)
	return in
}

func (f PseudonymizeFilter) apply(v string) string {
	switch f.Kind {
	case "cookie":
		var b strings.Builder
		sc := cookies.NewScanner(v)
		for {
			p, ok := sc.Next()
			if !ok {
				break
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			if !strings.Contains(p.Raw, "=") {
				// A cookie without '=' is all value (document.cookie="s3cr3t").
				b.WriteString(currentLogPseudonymizer().Consented("log", p.Raw, "cookie")[:16])
				continue
			}
			b.WriteString(p.Name)
			b.WriteByte('=')
			b.WriteString(currentLogPseudonymizer().Consented("log", p.Value, "cookie:"+p.Name)[:16])
		}
		return b.String()
	case "value":
		if v == "" {
			return ""
		}
		return currentLogPseudonymizer().Consented("log", v, "value")[:16]
	}
	return anonymize.TruncateIPString(v, f.IPBytes)
}

// stringSlice reads Caddy's loggable string arrays (a []string type).
func stringSlice(v any) ([]string, bool) {
	if v == nil {
		return nil, false
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice || rv.Type().Elem().Kind() != reflect.String {
		return nil, false
	}
	out := make([]string, rv.Len())
	for i := range out {
		out[i] = rv.Index(i).String()
	}
	return out, true
}

// stringArray logs as an array of strings.
type stringArray []string

// MarshalLogArray implements zapcore.ArrayMarshaler.
func (a stringArray) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, s := range a {
		enc.AppendString(s)
	}
	return nil
}

// Interface guards
var (
	_ logging.LogFieldFilter = (*PseudonymizeFilter)(nil)
	_ caddy.Provisioner      = (*PseudonymizeFilter)(nil)
	_ caddy.Validator        = (*PseudonymizeFilter)(nil)
	_ caddyfile.Unmarshaler  = (*PseudonymizeFilter)(nil)
)
