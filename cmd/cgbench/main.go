// Command cgbench is a bounded loopback load generator that compares a plain
// Caddy reverse_proxy with the same proxy behind the ConsentGate `consent`
// handler, in one run and against one Caddy process.
//
// It starts an upstream HTTP server in-process, writes a temporary Caddyfile
// with two sites (plain and consent) proxying to it, runs the Caddy binary
// given by -bin as a child process, and then drives both sites with a closed
// loop of -concurrency keep-alive connections, alternating plain/consent
// rounds to cancel drift. It prints requests/s and latency percentiles per
// variant and the consent/plain ratios against the performance targets.
//
// Usage:
//
//	go run ./cmd/cgbench -bin bin/consentgate [-duration 5s] [-rounds 3]
//	    [-concurrency 16] [-warmup 1s] [-json] [-keep]
//
// Exit status: 0 when the measurement ran (whether or not targets were met),
// 1 on setup errors, 130 when interrupted.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	readyTimeout = 20 * time.Second // Caddy must serve within this
	stopGrace    = 5 * time.Second  // SIGINT -> SIGKILL delay
	tokenCookie  = "cg_consent"
	requestPath  = "/page?x=1"
	beaconPath   = "/g/collect?v=2&tid=G-BENCH&cid=1234567890.1700000000&_uip=203.0.113.7&ul=de-de&dl=https%3A%2F%2Fshop.example%2Fp%3Fgclid%3Dx%26page%3D2&dr=https%3A%2F%2Fwww.google.com%2F&dt=Shoes&en=page_view&_s=1"

	userAgent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
	accept    = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8"
	acceptLng = "en-US,en;q=0.9"
	// Cookies sent on every measured request, after the cg_consent token.
	extraCookies = "session=abc; _ga=GA1.1.123.456; _fbp=fb.1.123.456"
)

var errInterrupted = errors.New("interrupted")

type options struct {
	bin         string
	duration    time.Duration
	rounds      int
	concurrency int
	warmup      time.Duration
	keep        bool
	jsonOut     bool
	noConsent   bool
	htmlSize    int
	beacon      bool
}

// hiddenFlags are accepted but not listed by -h.
var hiddenFlags = map[string]bool{"no-consent": true}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("cgbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.bin, "bin", "bin/consentgate", "path to the Caddy binary with the ConsentGate modules")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of each measured round")
	fs.IntVar(&o.rounds, "rounds", 3, "measured rounds per variant (run alternately plain/consent/plain/...)")
	fs.IntVar(&o.concurrency, "concurrency", 16, "connections (closed-loop workers) per variant")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up per variant before the first round")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir (Caddyfile, caddy.log, storage) and print its path")
	fs.BoolVar(&o.jsonOut, "json", false, "print the results as JSON on stdout instead of the table")
	fs.BoolVar(&o.beacon, "beacon", false, "send GA4 beacons (/g/collect) and put privacy_filter ga4 in front of the proxy in the consent variant")
	fs.IntVar(&o.htmlSize, "html-size", 0, "serve an HTML page of about this many bytes with tracker tags (0: a small text/plain body)")
	fs.BoolVar(&o.noConsent, "no-consent", false, "drop the consent lines from the Caddyfile (A/A run against plain Caddy)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cgbench [flags]\n\nMeasures plain reverse_proxy vs. consent + reverse_proxy on loopback.\n\nFlags:\n")
		fs.VisitAll(func(f *flag.Flag) {
			if hiddenFlags[f.Name] {
				return
			}
			fmt.Fprintf(stderr, "  -%-12s %s (default %s)\n", f.Name, f.Usage, f.DefValue)
		})
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	switch {
	case o.duration <= 0:
		return nil, errors.New("-duration must be > 0")
	case o.rounds < 1:
		return nil, errors.New("-rounds must be >= 1")
	case o.concurrency < 1:
		return nil, errors.New("-concurrency must be >= 1")
	case o.warmup < 0:
		return nil, errors.New("-warmup must be >= 0")
	}
	return o, nil
}

func main() {
	os.Exit(realMain(os.Args[1:]))
}

func realMain(args []string) int {
	o, err := parseFlags(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "cgbench:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		if errors.Is(err, errInterrupted) || ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "cgbench: interrupted")
			return 130
		}
		fmt.Fprintln(os.Stderr, "cgbench:", err)
		return 1
	}
	return 0
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "cgbench: "+format+"\n", args...)
}

func run(ctx context.Context, o *options) (err error) {
	bin, err := resolveBin(o.bin)
	if err != nil {
		return err
	}

	tmp, err := os.MkdirTemp("", "cgbench-")
	if err != nil {
		return err
	}
	defer func() {
		if o.keep {
			logf("kept temp dir %s", tmp)
			return
		}
		if rerr := os.RemoveAll(tmp); rerr != nil {
			logf("removing %s: %v", tmp, rerr)
		}
	}()
	for _, d := range []string{"data", "config", "home", "store"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o700); err != nil {
			return err
		}
	}

	// Upstream.
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("upstream listen: %w", err)
	}
	upSrv := &http.Server{Handler: upstreamHandler(o.htmlSize), ReadHeaderTimeout: 10 * time.Second}
	go upSrv.Serve(upLn) //nolint:errcheck // returns on Close
	defer upSrv.Close()
	upPort := upLn.Addr().(*net.TCPAddr).Port

	ports, err := freePorts(3)
	if err != nil {
		return fmt.Errorf("picking free ports: %w", err)
	}
	adminPort, plainPort, consentPort := ports[0], ports[1], ports[2]

	cfgPath := filepath.Join(tmp, "Caddyfile")
	cf := caddyfile(adminPort, plainPort, consentPort, upPort, filepath.Join(tmp, "store"), !o.noConsent, o.beacon)
	if err := os.WriteFile(cfgPath, []byte(cf), 0o600); err != nil {
		return err
	}

	rep := &report{Config: benchConfig{
		Bin:         bin,
		CaddyVer:    caddyVersion(ctx, bin),
		DurationSec: o.duration.Seconds(),
		WarmupSec:   o.warmup.Seconds(),
		Rounds:      o.rounds,
		Concurrency: o.concurrency,
		NumCPU:      runtime.NumCPU(),
		GOMAXPROCS:  runtime.GOMAXPROCS(0),
		ConsentOn:   !o.noConsent,
	}}
	warn := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		rep.Warnings = append(rep.Warnings, msg)
		logf("warning: %s", msg)
	}

	// Caddy child.
	child, err := startCaddy(bin, cfgPath, tmp)
	if err != nil {
		return err
	}
	defer child.stop()
	plainURL := fmt.Sprintf("http://127.0.0.1:%d", plainPort)
	consentURL := fmt.Sprintf("http://127.0.0.1:%d", consentPort)
	adminURL := fmt.Sprintf("http://127.0.0.1:%d/config/", adminPort)
	if err := child.waitReady(ctx, adminURL, plainURL+"/", consentURL+"/"); err != nil {
		return err
	}
	logf("caddy up (pid %d): plain %s, consent %s, upstream 127.0.0.1:%d", child.cmd.Process.Pid, plainURL, consentURL, upPort)

	// Consent token.
	cookie := extraCookies
	if o.noConsent {
		logf("-no-consent: consent handler not configured, no token requested")
	} else if tok, err := fetchToken(ctx, consentURL+"/_consent/state"); err != nil {
		if ctx.Err() != nil {
			return errInterrupted
		}
		warn("could not obtain a %s token (%v); measuring without the consent cookie", tokenCookie, err)
	} else {
		rep.Config.Token = true
		cookie = tokenCookie + "=" + tok + "; " + extraCookies
		logf("got %s token (%d bytes)", tokenCookie, len(tok))
	}
	hdr := http.Header{}
	hdr.Set("User-Agent", userAgent)
	hdr.Set("Accept", accept)
	hdr.Set("Accept-Language", acceptLng)
	hdr.Set("Cookie", cookie)

	// One request per variant up front so misconfiguration is visible
	// before spending the measuring time.
	for _, v := range []struct{ name, url string }{{"plain", plainURL}, {"consent", consentURL}} {
		status, setCookies, n, err := probe(ctx, v.url+requestPath, hdr)
		if err != nil {
			if ctx.Err() != nil {
				return errInterrupted
			}
			return fmt.Errorf("probe %s: %w", v.name, err)
		}
		logf("probe %-7s HTTP %d, %d body bytes, Set-Cookie: %s", v.name, status, n, strings.Join(setCookies, ", "))
		if status != http.StatusOK {
			warn("probe of %s variant answered HTTP %d (non-200 answers are counted as errors)", v.name, status)
		}
	}

	path := requestPath
	if o.beacon {
		path = beaconPath
	}
	plain := newVariant(ctx, "plain", plainURL+path, hdr, o.concurrency)
	consent := newVariant(ctx, "consent", consentURL+path, hdr, o.concurrency)
	defer plain.close()
	defer consent.close()

	if o.warmup > 0 {
		for _, v := range []*variant{plain, consent} {
			logf("warmup %-7s %s", v.name, o.warmup)
			v.measure(ctx, o.warmup)
			if ctx.Err() != nil {
				return errInterrupted
			}
		}
	}
	caddyPID := child.cmd.Process.Pid
	for r := 1; r <= o.rounds; r++ {
		for _, v := range []*variant{plain, consent} {
			server0, ok0 := processCPU(caddyPID)
			self0, _ := processCPU(os.Getpid())
			elapsed := v.measure(ctx, o.duration)
			if ctx.Err() != nil {
				return errInterrupted
			}
			server1, ok1 := processCPU(caddyPID)
			self1, _ := processCPU(os.Getpid())
			if ok0 && ok1 {
				v.serverCPU += server1 - server0
				v.selfCPU += self1 - self0
			}
			rs := v.addRound(elapsed)
			rs.Round = r
			rep.Rounds = append(rep.Rounds, rs)
			logf("round %d/%d %-7s %8.0f req/s  p50 %7.1f µs  p99 %7.1f µs  errors %d",
				r, o.rounds, v.name, rs.RPS, rs.P50us, rs.P99us, rs.Errors)
		}
	}
	if !child.alive() {
		warn("caddy exited during the measurement:\n%s", child.logTail())
	}

	rep.Plain = summarize("plain", plain.hist, &plain.total, plain.elapsed)
	rep.Consent = summarize("consent", consent.hist, &consent.total, consent.elapsed)
	for _, x := range []struct {
		v *variant
		s *variantStats
	}{{plain, &rep.Plain}, {consent, &rep.Consent}} {
		if n := x.v.total.ok; n > 0 && x.v.serverCPU > 0 {
			x.s.ServerCPUus = float64(x.v.serverCPU.Microseconds()) / float64(n)
			x.s.LoadgenCPUus = float64(x.v.selfCPU.Microseconds()) / float64(n)
		}
	}
	rep.Comparison = compare(rep.Plain, rep.Consent, throughputTarget(o))

	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return writeTable(os.Stdout, rep)
}

func resolveBin(bin string) (string, error) {
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("caddy binary %q not usable (%v); build the ConsentGate Caddy binary or pass -bin", bin, err)
	}
	return filepath.Abs(p)
}

func caddyVersion(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return ""
	}
	v, _, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	return v
}

// upstreamBody is ~300 bytes of plain text.
var upstreamBody = []byte(strings.Repeat("ConsentGate benchmark upstream body. ", 8) + "\n")

// htmlPage is a page of about size bytes with the tags the consent handler
// rewrites: a Google tag, a Meta pixel and a YouTube embed.
func htmlPage(size int) []byte {
	var b strings.Builder
	b.WriteString(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<script async src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>
<script>fbq('init','1');</script></head><body>`)
	for b.Len() < size {
		b.WriteString(`<div class="product"><h2>Product</h2><p>Description with <a href="/p/1">a link</a> and <b>bold</b> words.</p><img src="/img/p1.jpg" alt="p"></div>` + "\n")
	}
	b.WriteString(`<iframe src="https://www.youtube.com/embed/x"></iframe></body></html>`)
	return []byte(b.String())
}

func upstreamHandler(htmlSize int) http.Handler {
	body, ctype := upstreamBody, "text/plain; charset=utf-8"
	if htmlSize > 0 {
		body, ctype = htmlPage(htmlSize), "text/html; charset=utf-8"
	}
	clen := strconv.Itoa(len(body))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{ctype}
		h["Content-Length"] = []string{clen}
		h["Set-Cookie"] = []string{"session=abc; Path=/; HttpOnly", "_ga=GA1.1.123.456; Path=/"}
		w.WriteHeader(http.StatusOK)
		w.Write(body) //nolint:errcheck
	})
}

// freePorts returns n distinct free loopback ports (listen on :0, close).
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func caddyfile(admin, plain, consent, upstream int, store string, withConsent, beacon bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n\tauto_https off\n", admin)
	b.WriteString("\tlog {\n\t\tlevel ERROR\n\t}\n")
	if withConsent {
		fmt.Fprintf(&b, "\tconsent {\n\t\tstorage %s\n\t}\n", caddyQuote(store))
	}
	b.WriteString("}\n\n")
	fmt.Fprintf(&b, "http://127.0.0.1:%d {\n\treverse_proxy 127.0.0.1:%d\n}\n\n", plain, upstream)
	fmt.Fprintf(&b, "http://127.0.0.1:%d {\n", consent)
	if withConsent {
		b.WriteString("\tconsent\n")
		if beacon {
			b.WriteString("\tprivacy_filter ga4\n")
		}
	}
	fmt.Fprintf(&b, "\treverse_proxy 127.0.0.1:%d\n}\n", upstream)
	return b.String()
}

// caddyQuote quotes a Caddyfile token if it needs it.
func caddyQuote(s string) string {
	if !strings.ContainsAny(s, " \t\"{}#") {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

// --- Caddy child process -------------------------------------------------

type caddyProc struct {
	cmd     *exec.Cmd
	cfgPath string
	logPath string
	logFile *os.File
	exited  chan struct{}
	waitErr error
	once    sync.Once
}

func startCaddy(bin, cfgPath, tmp string) (*caddyProc, error) {
	logPath := filepath.Join(tmp, "caddy.log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	cmd.Dir = tmp
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.Env = append(os.Environ(),
		"XDG_DATA_HOME="+filepath.Join(tmp, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(tmp, "config"),
		"HOME="+filepath.Join(tmp, "home"),
	)
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &caddyProc{cmd: cmd, cfgPath: cfgPath, logPath: logPath, logFile: lf, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *caddyProc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// logTail returns the last few KiB of the child's stdout+stderr.
func (p *caddyProc) logTail() string {
	const max = 4 << 10
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no output: " + err.Error() + ")"
	}
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return "(no output)"
	}
	return "  | " + strings.ReplaceAll(s, "\n", "\n  | ")
}

// stop sends SIGINT, waits up to stopGrace, then kills. Safe to call twice.
func (p *caddyProc) stop() {
	p.once.Do(func() {
		defer p.logFile.Close()
		if !p.alive() {
			return
		}
		if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
			p.cmd.Process.Kill() //nolint:errcheck
		}
		select {
		case <-p.exited:
		case <-time.After(stopGrace):
			logf("caddy did not exit %s after SIGINT; killing it", stopGrace)
			p.cmd.Process.Kill() //nolint:errcheck
			<-p.exited
		}
	})
}

// waitReady polls the admin endpoint, then every site, until all answer.
func (p *caddyProc) waitReady(ctx context.Context, adminURL string, siteURLs ...string) error {
	client := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	}
	deadline := time.Now().Add(readyTimeout)
	urls := append([]string{adminURL}, siteURLs...)
	for _, u := range urls {
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			resp, err := client.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body) //nolint:errcheck
				resp.Body.Close()
				if u != adminURL || resp.StatusCode == http.StatusOK {
					break
				}
				err = fmt.Errorf("HTTP %d", resp.StatusCode)
			}
			select {
			case <-ctx.Done():
				return errInterrupted
			case <-p.exited:
				return p.startupError(fmt.Sprintf("caddy exited during startup (%v)", p.waitErr))
			default:
			}
			if time.Now().After(deadline) {
				return p.startupError(fmt.Sprintf("caddy not ready after %s (GET %s: %v)", readyTimeout, u, err))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

func (p *caddyProc) startupError(msg string) error {
	tail := p.logTail()
	hint := ""
	if missingConsentModule(tail) {
		hint = "\nhint: the binary does not seem to support the `consent` global option/directive; " +
			"build it with the ConsentGate modules, or pass -no-consent to benchmark plain Caddy against itself"
	}
	return fmt.Errorf("%s; Caddyfile %s; caddy output:\n%s%s", msg, p.cfgPath, tail, hint)
}

// missingConsentModule reports whether Caddy's output says it does not know
// the consent option/directive/module.
func missingConsentModule(out string) bool {
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, "consent") {
			continue
		}
		for _, s := range []string{"unrecognized", "not registered", "unknown", "not an ordered", "not a registered"} {
			if strings.Contains(line, s) {
				return true
			}
		}
	}
	return false
}

// --- consent token & probe ---------------------------------------------------

func fetchToken(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"granted":["analytics"]}`))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	for _, c := range resp.Cookies() {
		if c.Name == tokenCookie && c.Value != "" {
			return c.Value, nil
		}
	}
	snippet := strings.TrimSpace(string(body))
	if len(snippet) > 120 {
		snippet = snippet[:120] + "…"
	}
	return "", fmt.Errorf("POST %s answered HTTP %d without a %s cookie; body: %q", url, resp.StatusCode, tokenCookie, snippet)
}

func probe(ctx context.Context, url string, hdr http.Header) (status int, setCookies []string, n int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, 0, err
	}
	req.Header = hdr.Clone()
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, nil, 0, err
	}
	defer resp.Body.Close()
	n, err = io.Copy(io.Discard, resp.Body)
	for _, c := range resp.Cookies() {
		setCookies = append(setCookies, c.Name)
	}
	if len(setCookies) == 0 {
		setCookies = []string{"(none)"}
	}
	return resp.StatusCode, setCookies, n, err
}

// --- load generation -----------------------------------------------------------

// worker is one closed-loop connection: it sends the next request as soon
// as the previous answer has been read completely.
type worker struct {
	tr   *http.Transport
	req  *http.Request
	hist *histogram
	counters
}

func (w *worker) run(ctx context.Context, deadline time.Time) {
	for {
		start := time.Now()
		resp, err := w.tr.RoundTrip(w.req)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.fail(err)
			if time.Now().After(deadline) {
				return
			}
			time.Sleep(time.Millisecond) // don't spin on a dead server
			continue
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		end := time.Now()
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			w.fail(err)
		case resp.StatusCode != http.StatusOK:
			w.non200++
			if w.status == nil {
				w.status = make(map[int]uint64)
			}
			w.status[resp.StatusCode]++
		default:
			w.ok++
			w.hist.record(end.Sub(start))
		}
		if !end.Before(deadline) {
			return
		}
	}
}

func (w *worker) fail(err error) {
	w.transportErr++
	if w.firstErr == "" {
		w.firstErr = err.Error()
	}
}

// variant is the set of workers for one site plus its aggregated results.
type variant struct {
	name    string
	workers []*worker
	round   *histogram // scratch: merged workers of the last round
	hist    *histogram // all measured rounds
	total   counters
	elapsed time.Duration
	// CPU time used during the measured rounds by Caddy and by this
	// process (load generator and upstream), where the OS tells.
	serverCPU, selfCPU time.Duration
}

// processCPU returns the user+system CPU time a process has used so far,
// from /proc (Linux); ok is false elsewhere.
func processCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after its closing parenthesis (state is field 3).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, false
	}
	// Clock ticks: 100 per second on Linux (USER_HZ).
	return time.Duration(utime+stime) * (time.Second / 100), true
}

func newVariant(ctx context.Context, name, url string, hdr http.Header, n int) *variant {
	v := &variant{name: name, round: newHistogram(), hist: newHistogram()}
	for range n {
		tr := &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          1,
			MaxIdleConnsPerHost:   1,
			MaxConnsPerHost:       1,
			IdleConnTimeout:       5 * time.Minute,
			ResponseHeaderTimeout: 30 * time.Second,
			DisableCompression:    true,
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header = hdr.Clone()
		v.workers = append(v.workers, &worker{tr: tr, req: req, hist: newHistogram()})
	}
	return v
}

// measure runs all workers for d and returns the wall time until the last
// one finished its final request. Results stay in the workers.
func (v *variant) measure(ctx context.Context, d time.Duration) time.Duration {
	for _, w := range v.workers {
		w.hist.reset()
		w.counters.reset()
	}
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for _, w := range v.workers {
		wg.Go(func() { w.run(ctx, deadline) })
	}
	wg.Wait()
	return time.Since(start)
}

// addRound folds the workers' results of the last measure into the totals.
func (v *variant) addRound(elapsed time.Duration) roundStats {
	v.round.reset()
	var c counters
	for _, w := range v.workers {
		v.round.merge(w.hist)
		c.add(&w.counters)
	}
	v.hist.merge(v.round)
	v.total.add(&c)
	v.elapsed += elapsed
	s := summarize(v.name, v.round, &c, elapsed)
	return roundStats{Variant: v.name, RPS: s.RPS, P50us: s.LatencyUS.P50, P99us: s.LatencyUS.P99, Errors: s.Errors}
}

func (v *variant) close() {
	for _, w := range v.workers {
		w.tr.CloseIdleConnections()
	}
}
