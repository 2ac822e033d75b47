package consentgate

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/consentgate/consentgate/module/internal/geo/geotest"
	"github.com/consentgate/consentgate/module/internal/policy"
)

// update rewrites the expected JSON of the adapt golden files:
//
//	go test ./module -run TestCaddyfileAdapt -update
var update = flag.Bool("update", false, "rewrite the expected JSON of testdata/caddyfile_adapt/*.caddyfiletest")

func cfBoolPtr(b bool) *bool { return &b }

// cfWantErr checks err against the wanted error substring: "" wants no error.
func cfWantErr(t *testing.T, err error, want string) bool {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
	return want != ""
}

func TestUnmarshalCaddyfileApp(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  *App
		err   string
	}{
		{name: "bare", input: `consent`, want: &App{}},
		{name: "empty block", input: "consent {\n}", want: &App{}},
		{name: "storage", input: "consent {\n\tstorage /var/lib/consent\n}", want: &App{Storage: "/var/lib/consent"}},
		{name: "key_file", input: "consent {\n\tkey_file /etc/consent/keys\n}", want: &App{KeyFile: "/etc/consent/keys"}},
		{name: "geoip", input: "consent {\n\tgeoip /usr/share/GeoIP/GeoLite2-Country.mmdb\n}", want: &App{GeoIP: "/usr/share/GeoIP/GeoLite2-Country.mmdb"}},
		{name: "geoip_reload", input: "consent {\n\tgeoip_reload 30s\n}", want: &App{GeoIPReload: caddy.Duration(30 * time.Second)}},
		{name: "retention in days", input: "consent {\n\tretention 2555d\n}", want: &App{Retention: caddy.Duration(2555 * 24 * time.Hour)}},
		{
			name: "all options",
			input: `consent {
				storage "/srv/consent data"
				key_file keys.txt
				geoip geo.mmdb
				geoip_reload 1h30m
				retention 365d
			}`,
			want: &App{
				Storage:     "/srv/consent data",
				KeyFile:     "keys.txt",
				GeoIP:       "geo.mmdb",
				GeoIPReload: caddy.Duration(90 * time.Minute),
				Retention:   caddy.Duration(365 * 24 * time.Hour),
			},
		},

		{name: "unknown option", input: "consent {\n\tstorge /x\n}", err: `unrecognized consent option "storge", at Testfile:2`},
		{name: "missing argument", input: "consent {\n\tstorage\n}", err: "wrong argument count"},
		{name: "extra argument", input: "consent {\n\tkey_file a b\n}", err: "wrong argument count"},
		{name: "missing duration", input: "consent {\n\tretention\n}", err: "wrong argument count"},
		{name: "bad duration", input: "consent {\n\tretention forever\n}", err: `invalid duration "forever"`},
		{name: "zero duration", input: "consent {\n\tretention 0s\n}", err: `duration "0s" must be positive`},
		{name: "negative duration", input: "consent {\n\tgeoip_reload -5m\n}", err: `duration "-5m" must be positive`},
		{name: "arguments on the consent line", input: "consent /var/lib/consent {\n}", err: "wrong argument count"},
		{name: "argument on bare consent line", input: "consent on", err: "wrong argument count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := new(App)
			if cfWantErr(t, got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)), tt.err) {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestUnmarshalCaddyfileHandler(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  *Handler
		err   string
	}{
		{name: "bare", input: `consent`, want: &Handler{}},
		{name: "empty block", input: "consent {\n}", want: &Handler{}},
		{name: "site", input: "consent {\n\tsite shop\n}", want: &Handler{Site: "shop"}},
		{name: "category name only", input: "consent {\n\tcategory analytics\n}", want: &Handler{
			Categories: []policy.Category{{Name: "analytics"}},
		}},
		{name: "category flags and description", input: `consent {
			category necessary required "Needed for the site to work"
			category ads sale_or_sharing "Advertising"
			category social "Share buttons" sale_or_sharing
			category all required sale_or_sharing
		}`, want: &Handler{Categories: []policy.Category{
			{Name: "necessary", Required: true, Description: "Needed for the site to work"},
			{Name: "ads", SaleOrSharing: true, Description: "Advertising"},
			{Name: "social", SaleOrSharing: true, Description: "Share buttons"},
			{Name: "all", Required: true, SaleOrSharing: true},
		}}},
		{name: "policy_version", input: "consent {\n\tpolicy_version 2024-05-01\n}", want: &Handler{PolicyVersion: "2024-05-01"}},
		{name: "reconsent_since", input: "consent {\n\treconsent_since 1.2\n}", want: &Handler{ReconsentSince: "1.2"}},
		{name: "policy_url", input: "consent {\n\tpolicy_url https://example.com/privacy\n}", want: &Handler{PolicyURL: "https://example.com/privacy"}},
		{name: "lifetime", input: "consent {\n\tlifetime 30d\n}", want: &Handler{Lifetime: caddy.Duration(30 * 24 * time.Hour)}},
		{name: "service with block", input: `consent {
			service matomo analytics {
				title "Matomo"
				purpose "Counts visits without sharing data"
				cookies _pk_id.* _pk_ses.*
				cookies mtm_consent
				hosts stats.example.com
				hosts cdn.matomo.cloud matomo.example.net
			}
			policy_url /privacy
		}`, want: &Handler{
			Services: []policy.Service{{
				Name:     "matomo",
				Category: "analytics",
				Title:    "Matomo",
				Purpose:  "Counts visits without sharing data",
				Cookies:  []string{"_pk_id.*", "_pk_ses.*", "mtm_consent"},
				Hosts:    []string{"stats.example.com", "cdn.matomo.cloud", "matomo.example.net"},
			}},
			PolicyURL: "/privacy",
		}},
		{name: "service without block", input: "consent {\n\tservice chat preferences\n\tservice ads marketing\n}", want: &Handler{
			Services: []policy.Service{{Name: "chat", Category: "preferences"}, {Name: "ads", Category: "marketing"}},
		}},
		{name: "cookie rules in order", input: "consent {\n\tcookie _ga analytics\n\tcookie \"wp-settings-*\" preferences\n}", want: &Handler{
			Cookies: []policy.CookieRule{{Pattern: "_ga", Category: "analytics"}, {Pattern: "wp-settings-*", Category: "preferences"}},
		}},
		{name: "unknown_cookies", input: "consent {\n\tunknown_cookies block\n}", want: &Handler{UnknownCookies: "block"}},
		{name: "api_prefix", input: "consent {\n\tapi_prefix /consent-api/\n}", want: &Handler{APIPrefix: "/consent-api/"}},
		{name: "cookie_name", input: "consent {\n\tcookie_name my_consent\n}", want: &Handler{CookieName: "my_consent"}},
		{name: "default_regime", input: "consent {\n\tdefault_regime notice\n}", want: &Handler{DefaultRegime: "notice"}},
		{name: "regimes with several countries", input: "consent {\n\tregime opt-out us ca Br\n\tregime notice GB\n\tregime opt-in ca\n}", want: &Handler{
			Regimes: map[string]string{"US": "opt-out", "CA": "opt-in", "BR": "opt-out", "GB": "notice"},
		}},
		{name: "country_header", input: "consent {\n\tcountry_header CF-IPCountry\n}", want: &Handler{CountryHeader: "CF-IPCountry"}},
		{name: "dnt", input: "consent {\n\tdnt honor\n}", want: &Handler{DNT: "honor"}},
		{name: "gpc_json off", input: "consent {\n\tgpc_json off\n}", want: &Handler{GPCJSON: cfBoolPtr(false)}},
		{name: "gpc_json on", input: "consent {\n\tgpc_json on\n}", want: &Handler{GPCJSON: cfBoolPtr(true)}},
		{name: "gpc_json false", input: "consent {\n\tgpc_json false\n}", want: &Handler{GPCJSON: cfBoolPtr(false)}},
		{
			name: "everything",
			input: `consent {
				site shop
				category necessary required "Needed"
				category analytics "Counts visits"
				category marketing sale_or_sharing
				policy_version 3
				reconsent_since 2
				policy_url https://shop.example/privacy
				lifetime 90d
				service plausible analytics {
					title Plausible
					cookies plausible_*
					hosts plausible.io
				}
				cookie _ga* analytics
				unknown_cookies block
				api_prefix /cg/
				cookie_name shop_consent
				default_regime opt-out
				regime opt-in de fr
				country_header CF-IPCountry
				dnt honor
				gpc_json off
			}`,
			want: &Handler{
				Site: "shop",
				Categories: []policy.Category{
					{Name: "necessary", Required: true, Description: "Needed"},
					{Name: "analytics", Description: "Counts visits"},
					{Name: "marketing", SaleOrSharing: true},
				},
				PolicyVersion:  "3",
				ReconsentSince: "2",
				PolicyURL:      "https://shop.example/privacy",
				Lifetime:       caddy.Duration(90 * 24 * time.Hour),
				Services:       []policy.Service{{Name: "plausible", Category: "analytics", Title: "Plausible", Cookies: []string{"plausible_*"}, Hosts: []string{"plausible.io"}}},
				Cookies:        []policy.CookieRule{{Pattern: "_ga*", Category: "analytics"}},
				UnknownCookies: "block",
				APIPrefix:      "/cg/",
				CookieName:     "shop_consent",
				DefaultRegime:  "opt-out",
				Regimes:        map[string]string{"DE": "opt-in", "FR": "opt-in"},
				CountryHeader:  "CF-IPCountry",
				DNT:            "honor",
				GPCJSON:        cfBoolPtr(false),
			},
		},

		{name: "arguments on the consent line", input: "consent shop {\n}", err: "wrong argument count"},
		{name: "unknown subdirective", input: "consent {\n\tsite a\n\tcookies _ga analytics\n}", err: `unrecognized consent subdirective "cookies", at Testfile:3`},
		{name: "site missing argument", input: "consent {\n\tsite\n}", err: "wrong argument count"},
		{name: "site extra argument", input: "consent {\n\tsite a b\n}", err: "wrong argument count"},
		{name: "lifetime bad", input: "consent {\n\tlifetime soon\n}", err: `invalid duration "soon"`},
		{name: "lifetime zero", input: "consent {\n\tlifetime 0d\n}", err: "must be positive"},
		{name: "lifetime negative", input: "consent {\n\tlifetime -1h\n}", err: "must be positive"},
		{name: "regime bogus", input: "consent {\n\tregime bogus US\n}", err: `invalid regime "bogus": use opt-in, opt-out or notice`},
		{name: "regime without country", input: "consent {\n\tregime opt-out\n}", err: "wrong argument count"},
		{name: "cookie with one argument", input: "consent {\n\tcookie onlyone\n}", err: "wrong argument count"},
		{name: "cookie with three arguments", input: "consent {\n\tcookie a b c\n}", err: "wrong argument count"},
		{name: "service without category", input: "consent {\n\tservice x\n}", err: "wrong argument count"},
		{name: "service without category with block", input: "consent {\n\tservice x {\n\t\ttitle X\n\t}\n}", err: "wrong argument count"},
		{name: "unknown service option", input: "consent {\n\tservice x analytics {\n\t\tcookie _x\n\t}\n}", err: `unrecognized service option "cookie", at Testfile:3`},
		{name: "service title extra argument", input: "consent {\n\tservice x analytics {\n\t\ttitle X Y\n\t}\n}", err: "wrong argument count"},
		{name: "gpc_json maybe", input: "consent {\n\tgpc_json maybe\n}", err: `want on or off, got "maybe"`},
		{name: "unknown_cookies maybe", input: "consent {\n\tunknown_cookies maybe\n}", err: `unknown_cookies must be one of allow, block, got "maybe"`},
		{name: "default_regime strict", input: "consent {\n\tdefault_regime strict\n}", err: `default_regime must be one of opt-in, opt-out, notice, got "strict"`},
		{name: "dnt always", input: "consent {\n\tdnt always\n}", err: `dnt must be one of honor, ignore, got "always"`},
		{name: "gpc_json missing", input: "consent {\n\tgpc_json\n}", err: "wrong argument count"},
		{name: "category without name", input: "consent {\n\tcategory\n}", err: "wrong argument count"},
		{name: "category with two descriptions", input: "consent {\n\tcategory ads \"Ads\" \"More ads\"\n}", err: `category ads: unexpected argument "More ads"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := new(Handler)
			if cfWantErr(t, got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)), tt.err) {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(tt.want)
				t.Errorf("got  %s\nwant %s", g, w)
			}
		})
	}
}

func TestUnmarshalCaddyfileMatcher(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  MatchConsent
		err   string
	}{
		{name: "categories", input: "consent analytics marketing", want: MatchConsent{"analytics", "marketing"}},
		{name: "repeated lines add up", input: "consent analytics\nconsent marketing", want: MatchConsent{"analytics", "marketing"}},
		{name: "no category", input: "consent", err: "wrong argument count"},
		{name: "block", input: "consent analytics {\n\tmarketing\n}", err: "consent matcher takes no block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := new(MatchConsent)
			if cfWantErr(t, got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)), tt.err) {
				return
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got %q, want %q", *got, tt.want)
			}
		})
	}
}

// cfAdapt adapts a Caddyfile as `caddy adapt` does and returns the JSON,
// the adapter's warnings and its error.
func cfAdapt(caddyfileText string) ([]byte, []caddyconfig.Warning, error) {
	return caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfileText), map[string]any{"filename": "Caddyfile"})
}

// cfGoldenSeparator is the line between the Caddyfile and the expected JSON
// (or expected error text) of an adapt test file, as in Caddy's own
// caddytest/integration/caddyfile_adapt.
var cfGoldenSeparator = regexp.MustCompile(`(?m)^-{10,}[ \t]*\r?\n`)

// TestCaddyfileAdapt adapts each testdata/caddyfile_adapt/*.caddyfiletest
// and compares the JSON to the part after the dashes line. When that part
// does not start with '{', adapting must fail with an error containing it.
// Run with -update to rewrite the expected JSON.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "caddyfile_adapt", "*.caddyfiletest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no adapt test files")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".caddyfiletest"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
			loc := cfGoldenSeparator.FindIndex(data)
			if loc == nil {
				t.Fatalf("%s: no line of dashes", file)
			}
			input := strings.TrimSpace(string(data[:loc[0]])) + "\n"
			expected := strings.TrimSpace(string(data[loc[1]:]))

			got, warnings, err := cfAdapt(input)
			if expected != "" && expected[0] != '{' {
				if err == nil {
					t.Fatalf("adapting succeeded, want an error containing %q", expected)
				}
				if !strings.Contains(err.Error(), expected) {
					t.Fatalf("error %q does not contain %q", err, expected)
				}
				return
			}
			if err != nil {
				t.Fatalf("adapting: %v", err)
			}
			for _, w := range warnings {
				t.Errorf("adapt warning: %s", w)
			}
			var gotBuf bytes.Buffer
			if err := json.Indent(&gotBuf, got, "", "\t"); err != nil {
				t.Fatal(err)
			}
			if *update {
				out := input + "----------\n" + gotBuf.String() + "\n"
				if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			var compact, wantBuf bytes.Buffer
			if err := json.Compact(&compact, []byte(expected)); err != nil {
				t.Fatalf("expected JSON: %v", err)
			}
			if err := json.Indent(&wantBuf, compact.Bytes(), "", "\t"); err != nil {
				t.Fatal(err)
			}
			if gotBuf.String() != wantBuf.String() {
				t.Errorf("adapted JSON differs (run with -update to accept)\n%s", cfLineDiff(wantBuf.String(), gotBuf.String()))
			}
		})
	}
}

// cfLineDiff is a minimal diff for golden mismatches: the lines from the
// first difference on, expected then got.
func cfLineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	const ctx = 12
	clip := func(lines []string) string {
		end := min(i+ctx, len(lines))
		return strings.Join(lines[i:end], "\n")
	}
	return fmt.Sprintf("first difference at line %d\n--- want\n%s\n+++ got\n%s", i+1, clip(w), clip(g))
}

// TestCaddyfileAdaptDirectiveOrder checks, independently of the golden
// files, that consent needs no order line and lands after encode and
// before handle and reverse_proxy whatever the order in the Caddyfile.
func TestCaddyfileAdaptDirectiveOrder(t *testing.T) {
	out, warnings, err := cfAdapt(`:8080 {
	reverse_proxy 127.0.0.1:9000
	handle /x {
		respond "x"
	}
	consent
	encode gzip
}
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) > 0 {
		t.Errorf("warnings: %v", warnings)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []struct {
							Handler string          `json:"handler"`
							Routes  json.RawMessage `json:"routes"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, srv := range cfg.Apps.HTTP.Servers {
		for _, r := range srv.Routes {
			for _, h := range r.Handle {
				order = append(order, h.Handler)
			}
		}
	}
	// Without a host matcher the routes sit directly in the server:
	// encode, consent, then the subroute of handle, then reverse_proxy.
	want := []string{"encode", "consent", "subroute", "reverse_proxy"}
	if !reflect.DeepEqual(order, want) {
		t.Errorf("handler order %q, want %q\n%s", order, want, out)
	}
}

// TestCaddyfileAdaptGlobalOptionTwice documents what a second global consent
// block does today: the last block wins and the first is dropped silently.
func TestCaddyfileAdaptGlobalOptionTwice(t *testing.T) {
	out, _, err := cfAdapt("{\n\tconsent {\n\t\tstorage /a\n\t}\n\tconsent {\n\t\tretention 1d\n\t}\n}\n\n:8080 {\n\tconsent\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			Consent *App `json:"consent"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Apps.Consent == nil {
		t.Fatalf("no consent app in %s", out)
	}
	if cfg.Apps.Consent.Storage != "" || cfg.Apps.Consent.Retention != caddy.Duration(24*time.Hour) {
		t.Errorf("consent app %+v: want the last block only", cfg.Apps.Consent)
	}
}

// cfValidateEnv isolates Caddy's data and config directories for load-time
// validation tests and returns a storage directory for the consent app.
func cfValidateEnv(t *testing.T) string {
	t.Helper()
	t.Setenv("XDG_DATA_HOME", filepath.Join(t.TempDir(), "data"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(t.TempDir(), "config"))
	return filepath.Join(t.TempDir(), "store")
}

// cfValidate adapts a Caddyfile and runs caddy.Validate on it, which
// provisions and validates every module, then cleans them up, without
// starting any server or touching the running config.
func cfValidate(t *testing.T, text string) error {
	t.Helper()
	out, _, err := cfAdapt(text)
	if err != nil {
		t.Fatalf("adapting: %v\n%s", err, text)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("decoding adapted config: %v", err)
	}
	return caddy.Validate(&cfg)
}

// cfValidateConfig is a one-site Caddyfile with the given global consent
// options and consent handler block.
func cfValidateConfig(global, block string) string {
	return fmt.Sprintf(`{
	consent {
		%s
	}
}

http://validate.test {
	consent {
		%s
	}
	@stats consent analytics
	respond @stats "counted"
	respond "hello"
}
`, global, block)
}

func cfWriteKeyFile(t *testing.T, secretLen int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys")
	secret := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, secretLen))
	if err := os.WriteFile(path, []byte("# test keys\n1 "+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCaddyfileValidateErrors(t *testing.T) {
	storage := cfValidateEnv(t)
	global := "storage " + storage
	shortKey := cfWriteKeyFile(t, 16)
	tests := []struct {
		name   string
		global string
		block  string
		err    string
	}{
		{name: "cookie_name", block: `cookie_name "bad name"`, err: `invalid cookie_name "bad name"`},
		{name: "cookie rule category", block: "cookie _ga nonexistent-category", err: `cookie "_ga": unknown category "nonexistent-category"`},
		{name: "service category", block: "service foo nonexistent {\n\t\t\tcookies foo\n\t\t}", err: `service foo: unknown category "nonexistent"`},
		{name: "category name", block: "category Bad-Name", err: `invalid category name "Bad-Name"`},
		{name: "duplicate category", block: "category necessary required\n\t\tcategory analytics\n\t\tcategory analytics", err: `duplicate category "analytics"`},
		{name: "api_prefix without leading slash", block: "api_prefix nope", err: `api_prefix must be a path below the root such as /_consent/, got "nope"`},
		{name: "api_prefix root", block: "api_prefix /", err: `api_prefix must be a path below the root`},
		{name: "regime country not alpha-2", block: "regime opt-in usa", err: `"USA" is not an ISO 3166-1 alpha-2 country code`},
		{name: "site with slash", block: "site a/b", err: `invalid site "a/b"`},
		{name: "policy version too long", block: "policy_version " + strings.Repeat("9", 65), err: "policy versions are limited to 64 bytes"},
		{name: "cookie pattern", block: `cookie "a;b" analytics`, err: `invalid cookie pattern "a;b"`},
		{name: "key_file missing", global: "key_file /nonexistent", err: "reading consent key file"},
		{name: "geoip missing", global: "geoip /nonexistent.mmdb", err: "opening geoip database /nonexistent.mmdb"},
		{name: "key_file short secret", global: "key_file " + shortKey, err: "secret must be at least 32 bytes, got 16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := cfValidate(t, cfValidateConfig(global+"\n\t\t"+tt.global, tt.block))
			if err == nil {
				t.Fatalf("validation succeeded, want an error containing %q", tt.err)
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %q does not contain %q", err, tt.err)
			}
		})
	}

	// Every failed validation above opened the same store directory (or
	// failed before opening it); none may keep Badger's directory lock.
	if err := cfValidate(t, cfValidateConfig(global, "")); err != nil {
		t.Fatalf("valid config after failed validations: %v", err)
	}
}

func TestCaddyfileValidateValid(t *testing.T) {
	storage := cfValidateEnv(t)
	keyFile := cfWriteKeyFile(t, 32)
	geoDB := filepath.Join(t.TempDir(), "geo.mmdb")
	geotest.Write(t, geoDB, map[string]geotest.Entry{"81.2.69.0/24": {Country: "GB"}})

	global := fmt.Sprintf("storage %s\n\t\tkey_file %s\n\t\tgeoip %s\n\t\tgeoip_reload 30s\n\t\tretention 2555d", storage, keyFile, geoDB)
	block := `site shop
		category necessary required "Needed"
		category analytics "Counts visits"
		category marketing sale_or_sharing "Ads"
		policy_version 3
		reconsent_since 2
		policy_url https://shop.example/privacy
		lifetime 90d
		service matomo analytics {
			title Matomo
			purpose "Counts visits"
			cookies _pk_id.* _pk_ses.*
			hosts stats.example.com
		}
		cookie _ga* analytics
		unknown_cookies block
		api_prefix /cg
		cookie_name shop_consent
		default_regime opt-out
		regime opt-in de fr gb
		country_header CF-IPCountry
		dnt honor
		gpc_json off`
	cfg := cfValidateConfig(global, block)

	// Twice on the same storage: the first validation must release the
	// store (and its directory lock) when it cleans up.
	for i := range 2 {
		if err := cfValidate(t, cfg); err != nil {
			t.Fatalf("validation %d: %v", i+1, err)
		}
	}
	if entries, err := os.ReadDir(storage); err != nil || len(entries) == 0 {
		t.Errorf("storage %s not created by validation: %v", storage, err)
	}
}

// TestCaddyfileValidateDefaults validates the zero config: a bare consent
// directive and no global option, so the store goes under Caddy's data
// directory (XDG_DATA_HOME).
func TestCaddyfileValidateDefaults(t *testing.T) {
	cfValidateEnv(t)
	cfg := "http://validate.test {\n\tconsent\n\trespond \"hello\"\n}\n"
	for i := range 2 {
		if err := cfValidate(t, cfg); err != nil {
			t.Fatalf("validation %d: %v", i+1, err)
		}
	}
	dir := filepath.Join(caddy.AppDataDir(), "consentgate")
	if !strings.HasPrefix(dir, os.Getenv("XDG_DATA_HOME")) {
		t.Fatalf("app data dir %s is not under XDG_DATA_HOME", dir)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("default store not created: %v", err)
	}
}
