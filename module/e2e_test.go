package consentgate

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/consentgate/consentgate/module/internal/store"
)

// End-to-end tests of the real binary: built from cmd/consentgate, run as
// a separate process, reloaded with its own CLI, killed and restarted.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func consentgateBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "consentgate-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "consentgate")
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		cmd := exec.Command(goBin, "build", "-o", binPath, "../cmd/consentgate")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("building consentgate: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

type process struct {
	t   *testing.T
	cmd *exec.Cmd
	out *bytes.Buffer
}

func (p *process) logs() string { return p.out.String() }

// runBinary starts `consentgate run` on a Caddyfile and waits until the
// admin endpoint answers.
func runBinary(t *testing.T, bin, dir, caddyfile, admin string) *process {
	t.Helper()
	return startBinary(t, bin, dir, "Caddyfile", []byte(caddyfile), admin, "--adapter", "caddyfile")
}

// startBinary writes a config file into dir, starts `consentgate run` on it
// and waits until the admin endpoint answers.
func startBinary(t *testing.T, bin, dir, name string, config []byte, admin string, args ...string) *process {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, config, 0o600); err != nil {
		t.Fatal(err)
	}
	out := new(bytes.Buffer)
	cmd := exec.Command(bin, append([]string{"run", "--config", path}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "HOME="+dir)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{t: t, cmd: cmd, out: out}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/config/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			return p
		}
		if ctx.Err() != nil {
			t.Fatalf("consentgate did not come up: %v\n%s", err, out)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *process) stop(sig os.Signal) {
	p.t.Helper()
	_ = p.cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
		p.t.Fatalf("consentgate did not stop on %v\n%s", sig, p.logs())
	}
}

func TestBinaryModulesAndVersion(t *testing.T) {
	bin := consentgateBinary(t)
	out, err := exec.Command(bin, "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("list-modules: %v\n%s", err, out)
	}
	lines := strings.Split(string(out), "\n")
	for _, want := range []string{"consent", "http.handlers.consent", "http.matchers.consent", "http.handlers.privacy_filter", "caddy.logging.encoders.filter.pseudonymize", "http.handlers.reverse_proxy"} {
		found := false
		for _, l := range lines {
			found = found || strings.TrimSpace(l) == want
		}
		if !found {
			t.Errorf("list-modules lacks %s", want)
		}
	}
	if out, err := exec.Command(bin, "version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "v2.11.") {
		t.Errorf("version: %v %q", err, out)
	}
}

func TestBinaryReloadKillRestart(t *testing.T) {
	e := newBinaryEnv(t, trackerCookies...)
	bin, dir, admin, storage, base, cfg := e.bin, e.dir, e.admin, e.storage, e.base, e.caddyfile
	p := runBinary(t, bin, dir, cfg(""), admin)

	c := newClient(t)
	if r := c.postJSON(base+"/_consent/state", `{"granted":["analytics"]}`); r.status != 200 {
		t.Fatalf("post: %d %s\n%s", r.status, r.body, p.logs())
	}

	// `consentgate reload` with a changed config: no directory lock error.
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(cfg("policy_url /privacy")), 0o600); err != nil {
		t.Fatal(err)
	}
	reload := exec.Command(bin, "reload", "--config", filepath.Join(dir, "Caddyfile"), "--adapter", "caddyfile", "--address", admin)
	reload.Dir = dir
	if out, err := reload.CombinedOutput(); err != nil {
		t.Fatalf("reload: %v\n%s\n%s", err, out, p.logs())
	}
	if st := c.get(base + "/_consent/state").json(t); !st.Decided {
		t.Fatalf("decision lost on reload: %+v", st)
	}

	// 64 concurrent decisions, each acknowledged; then the process dies
	// without any chance to flush (SIGKILL): every acknowledged decision
	// must be on disk.
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := 0
	for range 64 {
		wg.Go(func() {
			v := newClient(t)
			req, _ := http.NewRequest(http.MethodPost, base+"/_consent/state", strings.NewReader(`{"all":true}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := v.c.Do(req)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				mu.Lock()
				acked++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if acked != 64 {
		t.Fatalf("%d of 64 decisions acknowledged", acked)
	}
	p.stop(syscall.SIGKILL)

	s, err := store.Open(storage, store.Options{})
	if err != nil {
		t.Fatalf("reopening the store after a crash: %v", err)
	}
	n, err := s.CountRecords("")
	s.Close()
	if err != nil || n != 65 {
		t.Fatalf("after SIGKILL the store holds %d records (%v), want 65", n, err)
	}

	// Restart: the visitor's token still verifies (keys persisted).
	p = runBinary(t, bin, dir, cfg(""), admin)
	if st := c.get(base + "/_consent/state").json(t); !st.Decided {
		t.Fatalf("decision lost on restart: %+v\n%s", st, p.logs())
	}
	p.stop(os.Interrupt)
	if strings.Contains(p.logs(), "203.0.113") {
		t.Error("a client IP reached the logs")
	}
}

func TestDemoCaddyfile(t *testing.T) {
	bin := consentgateBinary(t)
	demo, err := os.ReadFile("../caddyfiles/demo.Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	admin := fmt.Sprintf("localhost:%d", freePort(t))
	site, backend, collector := freePort(t), freePort(t), freePort(t)
	cfg := strings.NewReplacer(
		"localhost:2019", admin,
		"localhost:8080", fmt.Sprintf("localhost:%d", site),
		"127.0.0.1:8081", fmt.Sprintf("127.0.0.1:%d", backend),
		":8081", fmt.Sprintf(":%d", backend),
		"127.0.0.1:8082", fmt.Sprintf("127.0.0.1:%d", collector),
		":8082", fmt.Sprintf(":%d", collector),
		"./.demo-data/collector.log", filepath.Join(dir, "collector.log"),
		"./.demo-data", filepath.Join(dir, "demo-data"),
		"static/demo", mustAbs(t, "../static/demo"),
	).Replace(string(demo))
	p := runBinary(t, bin, dir, cfg, admin)
	defer p.stop(os.Interrupt)
	base := fmt.Sprintf("http://localhost:%d", site)

	c := newClient(t)
	r := c.get(base + "/")
	if r.status != 200 || !strings.Contains(r.body, "Demo shop") {
		t.Fatalf("demo page: %d %.200s\n%s", r.status, r.body, p.logs())
	}
	if got := setCookieNames(r.header); strings.Join(got, ",") != "session" {
		t.Fatalf("before consent the browser got %v", got)
	}
	form := "action=accept_all&return=/"
	if r := c.do(http.MethodPost, base+"/_consent/state", "application/x-www-form-urlencoded", form); r.status != 303 {
		t.Fatalf("accept all: %d %s", r.status, r.body)
	}
	if got := setCookieNames(c.get(base + "/").header); strings.Join(got, ",") != "_fbp,_ga,session" {
		t.Fatalf("after consent the browser got %v", got)
	}
	if r := c.get(base + "/consented"); r.body != "analytics granted" {
		t.Fatalf("demo consent route: %q", r.body)
	}
	// The stand-in collector shows what analytics received: filtered.
	r = c.get(base+"/collect/g/collect?v=2&tid=G-DEMO&cid=123.456&dl="+url.QueryEscape("http://localhost/checkout?email=jane%40example.com&step=2"), "User-Agent", chromeUA, "Cookie", "session=s")
	if !strings.Contains(r.body, "analytics received") || strings.Contains(r.body, "123.456") || strings.Contains(r.body, "jane") || strings.Contains(r.body, "537.36") || strings.Contains(r.body, "session=") {
		t.Fatalf("demo collector got: %s", r.body)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
