// Package consentgate is ConsentGate's Caddy-facing code: the consent app,
// the consent handler and matcher, and their Caddyfile syntax.
package consentgate

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/consentgate/consentgate/module/internal/anonymize"
	"github.com/consentgate/consentgate/module/internal/geo"
	"github.com/consentgate/consentgate/module/internal/store"
	"github.com/consentgate/consentgate/module/internal/token"
)

func init() {
	caddy.RegisterModule(App{})
}

// storePool keeps one open store per directory across config reloads:
// Badger locks its directory, so the new config must reuse the store the
// old one opened instead of opening it a second time.
var storePool = caddy.NewUsagePool()

type storeCloser struct {
	*store.Store
	sets *visitorSets
}

func (s storeCloser) Destruct() error { return s.Close() }

// App is the consent app: the infrastructure every consent handler of the
// process shares — the Badger store, the signing key ring and the GeoIP
// database. Its zero value works: the store goes under Caddy's data
// directory and keys are generated on first start.
type App struct {
	// Storage is the directory of the Badger store. Default:
	// "consentgate" under Caddy's data directory.
	Storage string `json:"storage,omitempty"`

	// KeyFile is a file of signing keys shared by several nodes, one key
	// per line as "<id> <base64 secret of at least 32 bytes>"; the last
	// line signs and the others only verify. Default: keys generated on
	// first start and kept in the store.
	KeyFile string `json:"key_file,omitempty"`

	// GeoIP is the path of a MaxMind-format country or city database
	// (GeoLite2, GeoIP2 or compatible). Default: none, so country is
	// unknown and the strictest regime applies.
	GeoIP string `json:"geoip,omitempty"`

	// GeoIPReload is how often the GeoIP file is checked for changes and
	// reopened. Default: 1m.
	GeoIPReload caddy.Duration `json:"geoip_reload,omitempty"`

	// PseudonymKeyFile holds the key of the analytics pseudonyms (base64 of
	// at least 32 random bytes, as `head -c 32 /dev/urandom | base64`
	// writes), so every node of a fleet gives a consenting visitor the same
	// pseudonym. Default: a key generated on first use and kept in the
	// store. Daily salts always stay in each node's store.
	PseudonymKeyFile string `json:"pseudonym_key_file,omitempty"`

	// Retention is how long consent records are kept before they expire.
	// Default: 7 years (61320h).
	Retention caddy.Duration `json:"retention,omitempty"`

	// EncryptionKeyFile holds the key that encrypts the store at rest:
	// exactly 32 random bytes (as `head -c 32 /dev/urandom` writes), or
	// their base64 or hex. Default: none, the store is not encrypted. A
	// store, once encrypted, opens only with its key; rotate it with
	// `consentgate consent rotate-keys --storage DIR --old-key-file OLD
	// --new-key-file NEW` while stopped.
	EncryptionKeyFile string `json:"encryption_key_file,omitempty"`

	// KAnonymity is the smallest count published in statistics meant for
	// sharing: cells below it are suppressed. Default: 5.
	KAnonymity int `json:"k_anonymity,omitempty"`

	storeKey string
	store    *store.Store
	keys     *token.Keyring
	geo      *geo.Reader
	metrics  *metrics
	logger   *zap.Logger

	privacy *appPrivacy
	sets    *visitorSets
	tally   *tally
	encKey  []byte
	stop    chan struct{}
	now     func() time.Time // injected clock for tests
}

// activeApp is the running consent app, for the admin API (admin modules
// are provisioned before apps, and must not create one).
var activeApp atomic.Pointer[App]

// appPrivacy holds the pseudonymiser, made on first use.
type appPrivacy struct {
	once   sync.Once
	pseudo *anonymize.Pseudonymizer
	err    error
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "consent",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision opens (or reuses) the store, loads the key ring and opens the
// GeoIP database.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.privacy = new(appPrivacy)
	a.metrics = newMetrics(ctx.GetMetricsRegistry())
	if a.Storage == "" {
		a.Storage = filepath.Join(caddy.AppDataDir(), "consentgate")
	}
	dir, err := filepath.Abs(a.Storage)
	if err != nil {
		return fmt.Errorf("consent storage %s: %w", a.Storage, err)
	}
	if a.EncryptionKeyFile != "" {
		if a.encKey, err = readEncryptionKey(a.EncryptionKeyFile); err != nil {
			return err
		}
	}
	val, _, err := storePool.LoadOrNew(dir, func() (caddy.Destructor, error) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating consent storage: %w", err)
		}
		s, err := store.Open(dir, store.Options{Retention: time.Duration(a.Retention), EncryptionKey: a.encKey})
		if err != nil {
			return nil, err
		}
		sets, err := newVisitorSets(s)
		if err != nil {
			s.Close()
			return nil, err
		}
		return storeCloser{s, sets}, nil
	})
	if err != nil {
		return err
	}
	a.storeKey = dir
	sc := val.(storeCloser)
	a.store, a.sets = sc.Store, sc.sets
	a.tally = new(tally)
	if sc.Encrypted() != (a.encKey != nil) {
		return fmt.Errorf("consent storage %s is already open with a different encryption setting (encryption_key_file changes need a restart)", dir)
	}
	a.store.SetRetention(time.Duration(a.Retention))

	if a.keys, err = a.loadKeys(); err != nil {
		return err
	}
	p, err := a.pseudonymizer()
	if err != nil {
		return err
	}
	logPseudonymizer.Store(p)

	if a.GeoIP != "" {
		if a.geo, err = geo.Open(a.GeoIP); err != nil {
			return err
		}
		every := time.Duration(a.GeoIPReload)
		if every <= 0 {
			every = time.Minute
		}
		reader, logger := a.geo, a.logger
		go reader.Watch(ctx, every, func(err error) {
			logger.Error("reloading geoip database", zap.Error(err))
		})
	}
	return nil
}

// Validate checks the configuration.
func (a *App) Validate() error {
	if a.Retention < 0 {
		return errors.New("retention must not be negative")
	}
	if a.GeoIPReload < 0 {
		return errors.New("geoip_reload must not be negative")
	}
	if a.KAnonymity < 0 {
		return errors.New("k_anonymity must not be negative")
	}
	return nil
}

// Start implements caddy.App; the store is opened in Provision. It starts
// flushing enforcement counts and watching request deadlines, and makes
// this app the one the admin API serves.
func (a *App) Start() error {
	a.stop = make(chan struct{})
	go a.maintain(a.stop)
	activeApp.Store(a)
	return nil
}

// Stop implements caddy.App.
func (a *App) Stop() error {
	activeApp.CompareAndSwap(a, nil)
	if a.stop != nil {
		close(a.stop)
		a.stop = nil
	}
	if err := a.flushTally(); err != nil {
		a.logger.Error("storing enforcement counts", zap.Error(err))
	}
	return nil
}

// kAnonymity is the configured k, default 5.
func (a *App) kAnonymity() int {
	if a.KAnonymity == 0 {
		return 5
	}
	return a.KAnonymity
}

// readEncryptionKey reads a 32-byte key: raw, base64 or hex.
func readEncryptionKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading encryption key file: %w", err)
	}
	if len(data) == 32 {
		return data, nil
	}
	text := strings.TrimSpace(string(data))
	if k, err := hex.DecodeString(text); err == nil && len(k) == 32 {
		return k, nil
	}
	if k, err := base64.StdEncoding.DecodeString(text); err == nil && len(k) == 32 {
		return k, nil
	}
	return nil, fmt.Errorf("encryption key file %s must hold exactly 32 bytes (head -c 32 /dev/urandom), or their hex or base64; it holds %d bytes", path, len(data))
}

// Cleanup releases this config's hold on the store and closes the GeoIP
// database. The store itself closes when no config uses it any more.
func (a *App) Cleanup() error {
	var errs []error
	if a.geo != nil {
		errs = append(errs, a.geo.Close())
	}
	if a.storeKey != "" {
		if _, err := storePool.Delete(a.storeKey); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Keyring returns the signing key ring.
func (a *App) Keyring() *token.Keyring { return a.keys }

// Store returns the consent store.
func (a *App) Store() *store.Store { return a.store }

// Geo returns the GeoIP reader, nil when none is configured.
func (a *App) Geo() *geo.Reader { return a.geo }

const (
	keyPrefix  = "key/"
	signingKey = "keyring/signing"
)

// loadKeys reads the key file, or the keys kept in the store, generating
// the first key when there is none.
func (a *App) loadKeys() (*token.Keyring, error) {
	if a.KeyFile != "" {
		data, err := os.ReadFile(a.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("reading consent key file: %w", err)
		}
		keys, err := token.ParseKeyFile(data)
		if err != nil {
			return nil, fmt.Errorf("consent key file %s: %w", a.KeyFile, err)
		}
		return token.NewKeyring(keys...)
	}
	// The secret goes in before the pointer to it, so a crash between the
	// two writes leaves at worst an unused key, never a missing one.
	first, err := token.GenerateKey()
	if err != nil {
		return nil, err
	}
	firstID := strconv.FormatUint(uint64(first.ID), 10)
	if _, err := a.store.Get(signingKey); errors.Is(err, store.ErrNotFound) {
		if err := a.store.Put(keyPrefix+firstID, first.Secret); err != nil {
			return nil, fmt.Errorf("storing signing key: %w", err)
		}
	}
	signing, err := a.store.PutIfAbsent(signingKey, []byte(firstID))
	if err != nil {
		return nil, fmt.Errorf("loading signing key: %w", err)
	}
	if string(signing) == firstID {
		a.logger.Info("generated consent signing key", zap.Uint32("key_id", first.ID))
	}
	var keys []*token.Key
	var current *token.Key
	err = a.store.Scan(keyPrefix, func(k string, v []byte) error {
		id, err := strconv.ParseUint(k[len(keyPrefix):], 10, 32)
		if err != nil {
			return fmt.Errorf("bad key entry %q: %w", k, err)
		}
		key, err := token.NewKey(uint32(id), v)
		if err != nil {
			return err
		}
		if k[len(keyPrefix):] == string(signing) {
			current = key
			return nil
		}
		keys = append(keys, key)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading signing keys: %w", err)
	}
	if current == nil {
		return nil, fmt.Errorf("signing key %s missing from the store", signing)
	}
	return token.NewKeyring(append(keys, current)...)
}

// RotateKey generates a new signing key, persists it and makes it sign new
// tokens; tokens signed with earlier keys stay valid. It is refused when
// keys come from a key file (rotate by adding a line to the file).
func (a *App) RotateKey() (*token.Key, error) {
	if a.KeyFile != "" {
		return nil, errors.New("keys come from a key file: append a new key line to it and reload")
	}
	k, err := token.GenerateKey()
	if err != nil {
		return nil, err
	}
	id := strconv.FormatUint(uint64(k.ID), 10)
	if err := a.store.Put(keyPrefix+id, k.Secret); err != nil {
		return nil, err
	}
	if err := a.store.Put(signingKey, []byte(id)); err != nil {
		return nil, err
	}
	if err := a.keys.Rotate(k); err != nil {
		return nil, err
	}
	return k, nil
}

// metrics are the consent app's Prometheus collectors, registered in the
// config's metrics registry.
type metrics struct {
	decisions    *prometheus.CounterVec
	cookiesHeld  *prometheus.CounterVec
	unclassified *prometheus.CounterVec
	elements     *prometheus.CounterVec
	choices      *prometheus.CounterVec
	withdrawals  *prometheus.CounterVec
	requests     *prometheus.CounterVec
	pending      prometheus.Gauge
	overdue      prometheus.Gauge
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "consentgate", Name: "decisions_recorded_total",
			Help: "Consent decisions recorded, by site and method.",
		}, []string{"site", "method"}),
		cookiesHeld: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "consentgate", Name: "cookies_blocked_total",
			Help: "Cookies removed for lack of consent, by site, category and direction (request or response).",
		}, []string{"site", "category", "direction"}),
		unclassified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "consentgate", Name: "unclassified_cookies_total",
			Help: "Cookies seen that no rule classifies, by site.",
		}, []string{"site"}),
		elements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "consentgate", Name: "elements_blocked_total",
			Help: "Scripts, iframes and images of refused categories neutralised in HTML, by site and element.",
		}, []string{"site", "element"}),
		choices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "consentgate", Name: "decisions_total",
			Help: "Consent choices recorded, by site, category, choice (granted or denied) and regime.",
		}, []string{"site", "category", "choice", "regime"}),
		withdrawals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "consentgate", Name: "withdrawals_total",
			Help: "Consent withdrawals recorded, by site.",
		}, []string{"site"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "consentgate", Name: "dsr_total",
			Help: "Data-subject requests answered, by site and type (access, export, correction, restriction, erasure).",
		}, []string{"site", "type"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "consentgate", Name: "dsr_pending",
			Help: "Data-subject requests waiting for an operator.",
		}),
		overdue: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "consentgate", Name: "dsr_overdue",
			Help: "Data-subject requests past their 30-day deadline.",
		}),
	}
	if reg == nil {
		return m
	}
	m.choices = register(reg, m.choices)
	m.withdrawals = register(reg, m.withdrawals)
	m.requests = register(reg, m.requests)
	m.pending = register(reg, m.pending)
	m.overdue = register(reg, m.overdue)
	m.decisions = register(reg, m.decisions)
	m.cookiesHeld = register(reg, m.cookiesHeld)
	m.unclassified = register(reg, m.unclassified)
	m.elements = register(reg, m.elements)
	return m
}

// register adds c to the registry, or returns the collector a previous
// config registered under the same name.
func register[C prometheus.Collector](reg *prometheus.Registry, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
