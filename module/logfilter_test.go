package consentgate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap/zapcore"
)

func TestPseudonymizeFilterInAccessLogs(t *testing.T) {
	up := newUpstream(t)
	logFile := filepath.Join(t.TempDir(), "access.log")
	g := startGateway(t, globalOpts+`
http://127.0.0.1:{{PORT}} {
	log {
		output file {{LOG}}
		format filter {
			request>remote_ip pseudonymize ip
			request>client_ip pseudonymize ip
			request>headers>X-Forwarded-For pseudonymize ip
			request>headers>Cookie pseudonymize cookie
			request>headers>User-Agent pseudonymize value
		}
	}
	consent
	reverse_proxy {{UPSTREAM}}
}
`, map[string]string{"UPSTREAM": up.Listener.Addr().String(), "GLOBAL": "", "LOG": logFile})
	c := newClient(t)
	c.get(g.url("/page"), "X-Forwarded-For", "203.0.113.77", "Cookie", "session=supersecretvalue; _ga=GA1.1.99887766.1700000000", "User-Agent", "UniqueAgent/1.2.3")
	c.get(g.url("/page"), "X-Forwarded-For", "203.0.113.77", "Cookie", "session=supersecretvalue", "User-Agent", "UniqueAgent/1.2.3")
	caddy_Stop() // flush and close the log file
	g.load(globalOpts + "\nhttp://127.0.0.1:{{PORT}} {\n\trespond ok\n}\n")
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	log := string(data)
	if strings.Count(log, "\n") < 2 {
		t.Fatalf("access log has %d lines", strings.Count(log, "\n"))
	}
	for _, raw := range []string{"203.0.113.77", `"remote_ip":"127.0.0.1"`, `"client_ip":"127.0.0.1"`, "supersecretvalue", "99887766", "UniqueAgent"} {
		if strings.Contains(log, raw) {
			t.Errorf("raw %q in the access log:\n%s", raw, log)
		}
	}
	for _, want := range []string{`"client_ip":"203.0.0.0"`, `"remote_ip":"127.0.0.0"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// The same values give the same pseudonyms on both requests.
	var cookies, agents []string
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if !strings.Contains(line, `"uri":"/page"`) {
			continue
		}
		cookies = append(cookies, between(line, `"Cookie":["`, `"]`))
		agents = append(agents, between(line, `"User-Agent":["`, `"]`))
	}
	if len(cookies) != 2 || cookies[0] == "" || agents[0] == "" || agents[0] != agents[1] {
		t.Errorf("pseudonyms not stable: cookies %q agents %q", cookies, agents)
	}
}

func TestPseudonymizeFilterUnit(t *testing.T) {
	var f PseudonymizeFilter
	d := caddyfile.NewTestDispenser("pseudonymize cookie")
	if err := f.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if err := f.Provision(caddyCtxForTest()); err != nil || f.Validate() != nil {
		t.Fatal("provision")
	}
	out := f.Filter(zapcore.Field{Key: "Cookie", Type: zapcore.ArrayMarshalerType, Interface: stringArray{"a=secret1; b=secret2"}})
	got := out.Interface.(stringArray)[0]
	if strings.Contains(got, "secret") || !strings.HasPrefix(got, "a=") || !strings.Contains(got, "; b=") {
		t.Errorf("cookie filter: %q", got)
	}
	ip := PseudonymizeFilter{Kind: "ip", IPBytes: 2}
	if got := ip.Filter(zapcore.Field{Type: zapcore.StringType, String: "2001:db8:1:2::5"}).String; got != "2001:db8::" {
		t.Errorf("ipv6: %q", got)
	}
	if got := ip.Filter(zapcore.Field{Type: zapcore.StringType, String: "not an ip"}).String; got != "" {
		t.Errorf("garbage kept: %q", got)
	}
	for _, bad := range []PseudonymizeFilter{{Kind: "nope", IPBytes: 2}, {Kind: "ip", IPBytes: 9}} {
		if bad.Validate() == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}

func between(s, a, b string) string {
	i := strings.Index(s, a)
	if i < 0 {
		return ""
	}
	s = s[i+len(a):]
	j := strings.Index(s, b)
	if j < 0 {
		return ""
	}
	return s[:j]
}
