package consentgate

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/consentgate/consentgate/module/internal/store"
)

// Tests of `consentgate consent`: the real binary, run against a running
// instance (admin API) and against stopped stores (--storage).

type cliResult struct {
	stdout, stderr string
	code           int
}

// consentCLI runs `consentgate consent args...` and returns its output and
// exit code.
func consentCLI(t *testing.T, bin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"consent"}, args...)...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+filepath.Join(home, "data"), "XDG_CONFIG_HOME="+filepath.Join(home, "config"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		res.code = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("running consent %v: %v", args, err)
	}
	return res
}

// must runs the CLI and fails the test unless it exits with want.
func (r cliResult) must(t *testing.T, want int, args ...string) cliResult {
	t.Helper()
	if r.code != want {
		t.Fatalf("consent %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
	return r
}

func runCLI(t *testing.T, bin string, want int, args ...string) cliResult {
	t.Helper()
	return consentCLI(t, bin, args...).must(t, want, args...)
}

// runBinaryJSON starts `consentgate run` on a JSON config and waits until
// the admin endpoint answers.
func runBinaryJSON(t *testing.T, bin, dir string, cfg []byte, admin string) *process {
	t.Helper()
	return startBinary(t, bin, dir, "config.json", cfg, admin)
}

// binaryEnv is what the tests of the real binary start from: the binary,
// a directory, an upstream, free ports for the admin API and the site,
// and where the store goes.
type binaryEnv struct {
	bin, dir, admin, storage, base string
	port                           int
	up                             *upstream
}

func newBinaryEnv(t *testing.T, upstreamCookies ...string) binaryEnv {
	t.Helper()
	e := binaryEnv{bin: consentgateBinary(t), dir: t.TempDir(), up: newUpstream(t, upstreamCookies...)}
	e.admin = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	e.port = freePort(t)
	e.storage = filepath.Join(e.dir, "store")
	e.base = fmt.Sprintf("http://127.0.0.1:%d", e.port)
	return e
}

// caddyfile is a config with the consent app on the env's store and one
// site whose consent block holds lines, in front of the upstream.
func (e binaryEnv) caddyfile(lines string) string {
	return fmt.Sprintf(`{
	admin %s
	auto_https off
	persist_config off
	consent {
		storage %s
	}
}
http://127.0.0.1:%d {
	consent {
		%s
	}
	reverse_proxy %s
}
`, e.admin, e.storage, e.port, lines, e.up.Listener.Addr().String())
}

// decide makes a decision as a new visitor and returns the visitor.
func decide(t *testing.T, base, body string) (*client, State) {
	t.Helper()
	c := newClient(t)
	r := c.postJSON(base+"/_consent/state", body)
	if r.status != http.StatusOK {
		t.Fatalf("deciding %s: %d %s", body, r.status, r.body)
	}
	return c, r.json(t)
}

// cookieKeyID is the ID of the key that signed a visitor's consent cookie
// (bytes 1-4 of the token's payload).
func cookieKeyID(t *testing.T, c *client) uint32 {
	t.Helper()
	jar := c.c.Jar.(*consentJar)
	jar.mu.Lock()
	defer jar.mu.Unlock()
	if jar.c == nil {
		t.Fatal("the visitor has no consent cookie")
	}
	raw, err := base64.RawURLEncoding.DecodeString(jar.c.Value)
	if err != nil || len(raw) < 5 {
		t.Fatalf("consent cookie %q: %v", jar.c.Value, err)
	}
	return binary.BigEndian.Uint32(raw[1:5])
}

type exportedLine struct {
	Site   string          `json:"site"`
	Seq    uint64          `json:"seq"`
	Record json.RawMessage `json:"record"`
	Erased *struct {
		Receipt string `json:"receipt"`
	} `json:"erased"`
}

func parseExport(t *testing.T, data string) []exportedLine {
	t.Helper()
	var out []exportedLine
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		var l exportedLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

var receiptLine = regexp.MustCompile(`(?m)^receipt: ([0-9a-f]{32})$`)

func TestConsentCLI(t *testing.T) {
	e := newBinaryEnv(t, trackerCookies...)
	bin, dir, admin, storage, base := e.bin, e.dir, e.admin, e.storage, e.base
	p := runBinary(t, bin, dir, e.caddyfile("site shop.example"), admin)
	online := []string{"--address", admin}

	// Seven visitors decide; five of them the same way, so that their
	// cells survive k = 5 in shareable statistics.
	erased, erasedState := decide(t, base, `{"all":true}`)
	kept, keptState := decide(t, base, `{"granted":["analytics"]}`)
	for range 5 {
		decide(t, base, `{"all":true}`)
	}

	// Online export: every decision is there, streamed as JSON Lines.
	res := runCLI(t, bin, 0, append([]string{"export"}, online...)...)
	lines := parseExport(t, res.stdout)
	if len(lines) != 7 || !strings.Contains(res.stderr, "exported 7 records") {
		t.Fatalf("export: %d lines, stderr %q\n%s", len(lines), res.stderr, res.stdout)
	}
	for i, l := range lines {
		if l.Site != "shop.example" || l.Seq != uint64(i+1) || len(l.Record) == 0 {
			t.Fatalf("export line %d: %+v", i, l)
		}
	}
	if !strings.Contains(res.stdout, erasedState.ID) || !strings.Contains(res.stdout, keptState.ID) {
		t.Fatal("the export lacks a visitor's consent ID")
	}
	out := filepath.Join(dir, "visitor.jsonl")
	res = runCLI(t, bin, 0, append([]string{"export", "--site", "shop.example", "--id", keptState.ID, "--output", out}, online...)...)
	if b, err := os.ReadFile(out); err != nil || strings.Count(string(b), "\n") != 1 || !strings.Contains(string(b), keptState.ID) {
		t.Fatalf("visitor export to a file: %v %q (stderr %q)", err, b, res.stderr)
	}

	res = runCLI(t, bin, 0, append([]string{"verify"}, online...)...)
	if !strings.Contains(res.stdout, "shop.example: ok, 7 entries (0 erased)") {
		t.Fatalf("verify: %s", res.stdout)
	}

	// Erase: a receipt; then the visitor is not found (exit 3), and the
	// chain still verifies with a tombstone.
	res = runCLI(t, bin, 0, append([]string{"erase", "--site", "shop.example", "--id", erasedState.ID}, online...)...)
	m := receiptLine.FindStringSubmatch(res.stdout)
	if m == nil || !strings.Contains(res.stdout, "erased 1 record of") {
		t.Fatalf("erase printed no receipt: %s", res.stdout)
	}
	runCLI(t, bin, 3, append([]string{"export", "--site", "shop.example", "--id", erasedState.ID}, online...)...)
	runCLI(t, bin, 3, append([]string{"erase", "--site", "shop.example", "--id", erasedState.ID}, online...)...)
	if st := erased.get(base + "/_consent/state").json(t); st.Decided {
		t.Fatal("the erased visitor's cookie still counts")
	}
	res = runCLI(t, bin, 0, append([]string{"verify", "--site", "shop.example"}, online...)...)
	if !strings.Contains(res.stdout, "shop.example: ok, 7 entries (1 erased)") {
		t.Fatalf("verify after erasure: %s", res.stdout)
	}
	runCLI(t, bin, 3, append([]string{"verify", "--site", "nowhere.example"}, online...)...)

	// Restriction and a pending request an operator completes.
	runCLI(t, bin, 0, append([]string{"restrict", "--site", "shop.example", "--id", keptState.ID, "--note", "ticket 1"}, online...)...)
	res = runCLI(t, bin, 0, append([]string{"requests", "new", "--type", "correction", "--site", "shop.example", "--id", keptState.ID, "--set", "country=AT", "--json"}, online...)...)
	var pending struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &pending); err != nil || pending.Status != "pending" {
		t.Fatalf("requests new: %v %s", err, res.stdout)
	}
	res = runCLI(t, bin, 0, append([]string{"requests", "--status", "pending"}, online...)...)
	if !strings.Contains(res.stdout, pending.ID) {
		t.Fatalf("pending requests lack %s:\n%s", pending.ID, res.stdout)
	}
	res = runCLI(t, bin, 0, append([]string{"requests", "complete", pending.ID}, online...)...)
	if !strings.Contains(res.stdout, "completed") {
		t.Fatalf("requests complete: %s", res.stdout)
	}
	runCLI(t, bin, 3, append([]string{"requests", "reject", strings.Repeat("ab", 16)}, online...)...)
	res = runCLI(t, bin, 0, append([]string{"requests"}, online...)...)
	for _, want := range []string{m[1], "erasure", "restriction", "correction"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("requests lack %q:\n%s", want, res.stdout)
		}
	}

	// Statistics: counts per cell; shareable ones only from k = 5 up.
	res = runCLI(t, bin, 0, append([]string{"stats"}, online...)...)
	if !strings.Contains(res.stdout, "records:     7 (1 erased") || !strings.Contains(res.stdout, "decisions") {
		t.Fatalf("stats: %s", res.stdout)
	}
	res = runCLI(t, bin, 0, append([]string{"stats", "--shareable", "--json"}, online...)...)
	var shared statsAnswer
	if err := json.Unmarshal([]byte(res.stdout), &shared); err != nil {
		t.Fatal(err)
	}
	if shared.K != 5 || shared.Store != nil || len(shared.Cells) == 0 || shared.Suppressed == 0 {
		t.Fatalf("shareable stats: %+v", shared)
	}
	for _, c := range shared.Cells {
		if c.Count < 5 {
			t.Fatalf("shareable stats publish a cell of %d: %+v", c.Count, c)
		}
	}

	// Rotating the signing key: new cookies are signed by the new key,
	// the old cookie still verifies.
	oldKey := cookieKeyID(t, kept)
	res = runCLI(t, bin, 0, append([]string{"rotate-keys", "--json"}, online...)...)
	var rotated struct {
		KeyID uint32 `json:"key_id"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &rotated); err != nil || rotated.KeyID == oldKey {
		t.Fatalf("rotate-keys: %v %s (old key %d)", err, res.stdout, oldKey)
	}
	if st := kept.get(base + "/_consent/state").json(t); !st.Decided || st.ID != keptState.ID {
		t.Fatalf("the cookie signed before the rotation no longer counts: %+v", st)
	}
	fresh, _ := decide(t, base, `{"all":true}`)
	if got := cookieKeyID(t, fresh); got != rotated.KeyID {
		t.Fatalf("a new cookie is signed by key %d, want %d", got, rotated.KeyID)
	}

	// A running instance holds its store: --storage says so.
	res = runCLI(t, bin, 1, "verify", "--storage", storage)
	if !strings.Contains(res.stderr, "the store is in use by a running instance; use --address") {
		t.Fatalf("offline verify of a store in use: %s", res.stderr)
	}

	// The chain now holds 9 entries: 7 decisions (1 erased), the
	// correction and the decision after the key rotation; 8 are records.

	// Backup online, then stop the instance.
	before := runCLI(t, bin, 0, append([]string{"export"}, online...)...).stdout
	backup := filepath.Join(dir, "consent.backup")
	res = runCLI(t, bin, 0, append([]string{"backup", "--output", backup}, online...)...)
	if fi, err := os.Stat(backup); err != nil || fi.Size() == 0 || !strings.Contains(res.stderr, "written to "+backup) {
		t.Fatalf("backup: %v %s", err, res.stderr)
	}
	p.stop(os.Interrupt)

	// Restore into a new directory, offline; it verifies and exports the
	// same records. The stopped original exports the same too.
	restored := filepath.Join(dir, "restored")
	res = runCLI(t, bin, 0, "restore", "--storage", restored, "--input", backup)
	if !strings.Contains(res.stdout, "restored 8 records of 1 sites") {
		t.Fatalf("restore: %s", res.stdout)
	}
	runCLI(t, bin, 1, "restore", "--storage", restored, "--input", backup) // holds records now
	res = runCLI(t, bin, 0, "verify", "--storage", restored)
	if !strings.Contains(res.stdout, "shop.example: ok, 9 entries (1 erased)") {
		t.Fatalf("offline verify: %s", res.stdout)
	}
	for _, dir := range []string{restored, storage} {
		if got := runCLI(t, bin, 0, "export", "--storage", dir).stdout; got != before {
			t.Fatalf("offline export of %s differs from the online one:\n%s\nwant:\n%s", dir, got, before)
		}
	}
	runCLI(t, bin, 3, "export", "--storage", restored, "--site", "shop.example", "--id", erasedState.ID)
	res = runCLI(t, bin, 0, "stats", "--storage", restored)
	if !strings.Contains(res.stdout, "records:     8 (1 erased") {
		t.Fatalf("offline stats: %s", res.stdout)
	}
	res = runCLI(t, bin, 0, "purge", "--storage", restored)
	if !strings.Contains(res.stdout, "purged: 0 records") {
		t.Fatalf("offline purge: %s", res.stdout)
	}
	runCLI(t, bin, 0, "verify", "--storage", restored)

	// Someone with access to the files rewrites a decision: verify
	// names the entry and exits with 2.
	s, err := store.Open(restored, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key := string(binary.BigEndian.AppendUint64([]byte("log/shop.example/"), 2))
	v, err := s.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	var entry store.Entry
	if err := json.Unmarshal(v, &entry); err != nil {
		t.Fatal(err)
	}
	entry.Record = bytes.Replace(entry.Record, []byte(`"opt-in"`), []byte(`"opt-out"`), 1)
	if v, err = json.Marshal(entry); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(key, v); err != nil {
		t.Fatal(err)
	}
	s.Close()
	res = runCLI(t, bin, 2, "verify", "--storage", restored)
	if !strings.Contains(res.stdout, "shop.example: BROKEN at entry 2 (altered)") || !strings.Contains(res.stderr, "broken") {
		t.Fatalf("verify of a tampered store: %s\n%s", res.stdout, res.stderr)
	}
}

func TestConsentCLIEncryptionKeyRotation(t *testing.T) {
	e := newBinaryEnv(t)
	bin, dir, admin, storage, base := e.bin, e.dir, e.admin, e.storage, e.base

	oldKey, newKey := filepath.Join(dir, "old.key"), filepath.Join(dir, "new.key")
	// 32 random bytes, as `head -c 32 /dev/urandom` writes them; the new
	// key as hex, which key files may hold too.
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := os.WriteFile(oldKey, key, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _ = rand.Read(key)
	if err := os.WriteFile(newKey, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := func(keyFile string) []byte {
		var cfg map[string]any
		if err := json.Unmarshal(adapt(t, []byte(e.caddyfile("site shop.example"))), &cfg); err != nil {
			t.Fatal(err)
		}
		cfg["apps"].(map[string]any)["consent"].(map[string]any)["encryption_key_file"] = keyFile
		b, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// The instance dies (kill -9): its acknowledged decision is on disk,
	// and the store recovers on the first offline open.
	p := runBinaryJSON(t, bin, dir, config(oldKey), admin)
	visitor, state := decide(t, base, `{"all":true}`)
	p.stop(syscall.SIGKILL)

	res := runCLI(t, bin, 0, "verify", "--storage", storage, "--encryption-key-file", oldKey)
	if !strings.Contains(res.stdout, "shop.example: ok, 1 entries") || !strings.Contains(res.stderr, "not closed cleanly") {
		t.Fatalf("offline verify after a crash: %s\n%s", res.stdout, res.stderr)
	}
	runCLI(t, bin, 1, "verify", "--storage", storage) // encrypted: no key, no store
	res = runCLI(t, bin, 0, "rotate-keys", "--storage", storage, "--old-key-file", oldKey, "--new-key-file", newKey)
	if !strings.Contains(res.stdout, "is rotated") {
		t.Fatalf("rotate-keys offline: %s", res.stdout)
	}
	runCLI(t, bin, 1, "verify", "--storage", storage, "--encryption-key-file", oldKey)
	runCLI(t, bin, 0, "verify", "--storage", storage, "--encryption-key-file", newKey)

	// The instance starts with the new key and has everything.
	p = runBinaryJSON(t, bin, dir, config(newKey), admin)
	if st := visitor.get(base + "/_consent/state").json(t); !st.Decided || st.ID != state.ID {
		t.Fatalf("after the key rotation the visitor's decision is gone: %+v\n%s", st, p.logs())
	}
	res = runCLI(t, bin, 0, "export", "--address", admin)
	if len(parseExport(t, res.stdout)) != 1 || !strings.Contains(res.stdout, state.ID) {
		t.Fatalf("export after the key rotation: %s", res.stdout)
	}
	p.stop(os.Interrupt)

	// An offline backup of the encrypted store restores with its key.
	backup := filepath.Join(dir, "consent.backup")
	runCLI(t, bin, 0, "backup", "--storage", storage, "--encryption-key-file", newKey, "--output", backup)
	if b, _ := os.ReadFile(backup); bytes.Contains(b, []byte(state.ID)) {
		t.Fatal("the backup of an encrypted store holds a consent ID in plain text")
	}
	restored := filepath.Join(dir, "restored")
	runCLI(t, bin, 1, "restore", "--storage", restored, "--input", backup) // encrypted backup, no key
	runCLI(t, bin, 0, "restore", "--storage", filepath.Join(dir, "restored2"), "--input", backup, "--encryption-key-file", newKey)
	res = runCLI(t, bin, 0, "export", "--storage", filepath.Join(dir, "restored2"), "--encryption-key-file", newKey)
	if !strings.Contains(res.stdout, state.ID) {
		t.Fatalf("export of the restored encrypted store: %s", res.stdout)
	}
}

func TestConsentCLIExitCodes(t *testing.T) {
	bin := consentgateBinary(t)
	// Port 1 is below the ephemeral range: no test or process binding
	// port 0 can be given it, as it could a port freePort let go.
	nowhere := "127.0.0.1:1"
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{}, exitUsage, "a subcommand is required"},
		{[]string{"frobnicate"}, exitUsage, `unknown subcommand \"frobnicate\"`},
		{[]string{"export", "--bogus"}, exitUsage, "unknown flag: --bogus"},
		{[]string{"export", "--from", "yesterday"}, exitUsage, "dates are YYYY-MM-DD"},
		{[]string{"export", "--id", "0123456789abcdef0123456789abcdef"}, exitUsage, "--site and --id are required"},
		{[]string{"erase", "--site", "shop.example"}, exitUsage, "--site and --id are required"},
		{[]string{"erase", "--site", "shop.example", "--id", "XYZ"}, exitUsage, "32 lower-case hex digits"},
		{[]string{"requests", "complete"}, exitUsage, "accepts 1 arg(s)"},
		{[]string{"requests", "complete", "nope"}, exitUsage, "a request ID is 32 hex digits"},
		{[]string{"verify", "--storage", "/x", "--address", nowhere}, exitUsage, "cannot be combined"},
		{[]string{"stats", "--k", "3"}, exitUsage, "applies with --shareable"},
		{[]string{"backup"}, exitUsage, "--output is required"},
		{[]string{"restore", "--input", "x"}, exitUsage, "--storage and --input are required"},
		{[]string{"rotate-keys", "--old-key-file", "x"}, exitUsage, "need --storage"},
		{[]string{"verify", "--address", nowhere}, exitFailure, "cannot reach the admin API at " + nowhere},
		{[]string{"export", "--address", nowhere}, exitFailure, "cannot reach the admin API"},
		{[]string{"verify", "--storage", filepath.Join(t.TempDir(), "none")}, exitFailure, "no consent store at"},
		{[]string{"verify", "--address", "127.0.0.1:1-9"}, exitUsage, "invalid admin address"},
	} {
		res := consentCLI(t, bin, tc.args...)
		if res.code != tc.code || !strings.Contains(res.stderr, tc.stderr) {
			t.Errorf("consent %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tc.args, " "), res.code, res.stderr, tc.code, tc.stderr)
		}
	}
	// Every subcommand explains itself, with an example.
	for _, sub := range []string{"export", "erase", "restrict", "correct", "verify", "stats", "purge", "backup", "restore", "rotate-keys", "requests", "requests new", "requests complete", "requests reject"} {
		res := runCLI(t, bin, 0, append(strings.Fields(sub), "--help")...)
		if !strings.Contains(res.stdout, "Example") || !strings.Contains(res.stdout, "consentgate consent "+sub) {
			t.Errorf("consent %s --help lacks an example:\n%s", sub, res.stdout)
		}
	}
	if res := runCLI(t, bin, 0, "--help"); !strings.Contains(res.stdout, "4  usage error") {
		t.Errorf("consent --help does not document the exit codes:\n%s", res.stdout)
	}
}
