package consentgate

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/dgraph-io/badger/v4"
	"github.com/spf13/cobra"

	"github.com/consentgate/consentgate/module/internal/store"
)

// Exit codes of `consentgate consent`, for scripts (documented in the
// command's help).
const (
	exitOK       = 0
	exitFailure  = 1 // admin API unreachable, store error
	exitBroken   = 2 // verification found a broken chain
	exitNotFound = 3 // no records for that visitor, no such request
	exitUsage    = 4 // bad flags or arguments
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "consent",
		Usage: "<export|erase|restrict|correct|verify|stats|purge|backup|restore|rotate-keys|requests>",
		Short: "Manages consent records: export, erase, verify, statistics, backups",
		Long: `
Manages the consent records of ConsentGate: exports them, answers
data-subject requests (erasure, restriction, correction), verifies the
hash chains that make the records tamper-evident, shows aggregate
statistics, disposes of expired records and backs the store up.

The subcommands talk to a running instance through its admin API at
'` + caddy.DefaultAdminListen + `'. You may explicitly specify the --address, or use
the --config flag to load the admin address from your config, as with
'reload'. export, verify, stats, purge and backup can instead work on a
stopped store directly with --storage <dir> (and --encryption-key-file
<path> if the store is encrypted); restore and the rotation of the
store's encryption key work only that way. A store that a running
instance holds open cannot be opened directly: use --address then.

Exit codes scripts can rely on:

  0  success
  1  operational failure (the admin API cannot be reached, store error)
  2  verification found a broken chain
  3  not found (no records for that visitor, no such request)
  4  usage error (bad flags or arguments)

Examples:

  $ consentgate consent export --site shop.example --from 2025-01-01 --output records.jsonl
  $ consentgate consent verify || echo "consent records need attention"
  $ consentgate consent erase --site shop.example --id 0f1e2d3c4b5a69788796a5b4c3d2e1f0
  $ consentgate consent backup --output consent.backup`,
		CobraFunc: func(cmd *cobra.Command) {
			// Flag and argument errors of every subcommand exit with 4.
			cmd.SetFlagErrorFunc(usageError)
			cmd.Args = func(cmd *cobra.Command, args []string) error {
				if len(args) > 0 {
					return usageError(cmd, fmt.Errorf("unknown subcommand %q", args[0]))
				}
				return nil
			}
			cmd.RunE = func(cmd *cobra.Command, _ []string) error {
				cmd.SetOut(os.Stderr)
				_ = cmd.Usage()
				return usageError(cmd, errors.New("a subcommand is required"))
			}
			cmd.AddCommand(
				exportCommand(), eraseCommand(), restrictCommand(), correctCommand(),
				verifyCommand(), statsCommand(), purgeCommand(), backupCommand(),
				restoreCommand(), rotateKeysCommand(), requestsCommand(),
			)
		},
	})
}

func exportCommand() *cobra.Command {
	cmd := subcommand("export [--site <site>] [--from <date>] [--to <date>] [--id <consent id>] [--output <file>]", "Exports consent records as JSON Lines", `
Exports consent records as JSON Lines, one chain entry per line in chain
order ({"site", "seq", "prev", "hash", "digest", "record", "erased"}), to
standard output or to --output. The export is streamed: memory stays flat
however many records there are. Progress goes to standard error every
second, and the final count at the end.

--site limits the export to one site, --from and --to (YYYY-MM-DD, or
RFC 3339; --to includes its day) to a period; with a period, tombstones
of erased records are left out.

--id exports one visitor's records (one record per line) and needs --site;
through the admin API this is recorded as the visitor's data-subject
request. Exits with 3 when the visitor has no records.

With --storage the records are read from a stopped store directly.

Example:

  $ consentgate consent export --site shop.example --from 2025-01-01 --to 2025-12-31 --output 2025.jsonl`, noArgs, cmdExport, viaAPI|viaStore)
	cmd.Flags().String("site", "", "Site whose records to export (default: every site)")
	cmd.Flags().String("from", "", "First day to export, YYYY-MM-DD")
	cmd.Flags().String("to", "", "Last day to export, YYYY-MM-DD")
	cmd.Flags().String("id", "", "Consent ID of one visitor to export (needs --site)")
	cmd.Flags().StringP("output", "o", "", "File to write (default: standard output)")
	return cmd
}

func eraseCommand() *cobra.Command {
	cmd := subcommand("erase --site <site> --id <consent id>", "Erases a visitor's consent records and prints the receipt", `
Erases a visitor's consent records: the personal fields go, and a
tombstone keeps each site's chain verifiable. The visitor's consent
cookie stops counting, any restriction is lifted, and the erasure is
recorded as a data-subject request whose ID is the receipt printed.
Exits with 3 when the visitor has no records.

Example:

  $ consentgate consent erase --site shop.example --id 0f1e2d3c4b5a69788796a5b4c3d2e1f0`, noArgs, cmdErase, viaAPI)
	visitorFlags(cmd)
	cmd.Flags().Bool("json", false, "Print the admin API's answer as JSON")
	return cmd
}

func restrictCommand() *cobra.Command {
	cmd := subcommand("restrict --site <site> --id <consent id> [--lift] [--note <text>]", "Restricts the processing of a visitor's data, or lifts it", `
Restricts the processing of a visitor's data (the privacy filter then
drops their analytics), or with --lift lifts the restriction. The request
is recorded with --note. Exits with 3 when the visitor has no records.

Example:

  $ consentgate consent restrict --site shop.example --id 0f1e2d3c4b5a69788796a5b4c3d2e1f0 --note "ticket 4711"`, noArgs, cmdRestrict, viaAPI)
	visitorFlags(cmd)
	cmd.Flags().Bool("lift", false, "Lift the restriction instead")
	cmd.Flags().String("note", "", "Note recorded with the request")
	cmd.Flags().Bool("json", false, "Print the admin API's answer as JSON")
	return cmd
}

func correctCommand() *cobra.Command {
	cmd := subcommand("correct --site <site> --id <consent id> [--seq <n>] --set <field>=<value> ...", "Corrects a field of a visitor's consent record", `
Corrects fields recorded wrongly in a visitor's consent record (`+strings.Join(store.CorrectableFields, ", ")+`).
The record itself is never changed, which would break its chain: a
correction record is appended that names the corrected record and the
new values. --seq picks the record (default: the visitor's latest
decision). Exits with 3 when the visitor has no such record.

Example:

  $ consentgate consent correct --site shop.example --id 0f1e2d3c4b5a69788796a5b4c3d2e1f0 --set country=AT`, noArgs, cmdCorrect, viaAPI)
	visitorFlags(cmd)
	cmd.Flags().Uint64("seq", 0, "Sequence number of the record to correct (default: the latest decision)")
	cmd.Flags().StringArray("set", nil, "Corrected value as field=value; repeat for several fields")
	cmd.Flags().String("note", "", "Note recorded with the request")
	cmd.Flags().Bool("json", false, "Print the admin API's answer as JSON")
	return cmd
}

func verifyCommand() *cobra.Command {
	cmd := subcommand("verify [--site <site>]", "Verifies the hash chains of the consent records", `
Walks each site's chain of consent records and reports, per site, either
its length and head hash or the first entry that was altered, removed or
reordered. Erased records (tombstones) and records that expired at the
start of a chain do not break it.

Exits with 2 when any chain is broken, with 3 when --site has no records.
With --storage a stopped store is verified directly.

Example:

  $ consentgate consent verify --storage /var/lib/consentgate --encryption-key-file /etc/consentgate/store.key`, noArgs, cmdVerify, viaAPI|viaStore)
	cmd.Flags().String("site", "", "Site to verify (default: every site)")
	cmd.Flags().Bool("json", false, "Print the result as JSON")
	return cmd
}

func statsCommand() *cobra.Command {
	cmd := subcommand("stats [--site <site>] [--from <date>] [--to <date>] [--shareable [--k <n>]]", "Shows aggregate consent statistics and what the store holds", `
Shows the aggregate counts, per site and day, of decisions (by regime,
country, category and choice), decision methods, data-subject requests,
enforcement (what the gateway held back) and page views, with what the
store holds: records, erased records, retention and next disposal,
pending and overdue requests, size.

--shareable leaves out the store details and suppresses every count below
k (k-anonymity: the instance's k_anonymity, default 5; --k raises it), for
statistics shared outside the company. No count ever names a visitor.

With --storage the counts are read from a stopped store directly (there
--k sets k, default 5, and --retention the retention to show).

Example:

  $ consentgate consent stats --site shop.example --from 2025-01-01 --shareable --json`, noArgs, cmdStats, viaAPI|viaStore)
	cmd.Flags().String("site", "", "Site (default: every site)")
	cmd.Flags().String("from", "", "First day, YYYY-MM-DD")
	cmd.Flags().String("to", "", "Last day, YYYY-MM-DD")
	cmd.Flags().Bool("shareable", false, "Suppress counts below k and leave out store details")
	cmd.Flags().Int("k", 0, "Smallest count published with --shareable (default: the instance's k_anonymity, or 5)")
	cmd.Flags().String("retention", "", "Retention of the store, with --storage (default: 7 years)")
	cmd.Flags().Bool("json", false, "Print the statistics as JSON")
	return cmd
}

func purgeCommand() *cobra.Command {
	cmd := subcommand("purge", "Disposes of consent records past their retention now", `
Records expire by themselves at the end of the retention period (Badger
TTLs). purge forces the disposal now: it deletes records older than the
retention period that are still present (written under a longer
retention), and compacts the store so that expired, deleted and erased
data physically leaves its files.

With --storage a stopped store is purged directly; give its --retention
(the retention configured for the instance; default 7 years).

Example:

  $ consentgate consent purge --address localhost:2019`, noArgs, cmdPurge, viaAPI|viaStore)
	cmd.Flags().String("retention", "", "Retention of the store, with --storage (default: 7 years)")
	cmd.Flags().Bool("json", false, "Print the result as JSON")
	return cmd
}

func backupCommand() *cobra.Command {
	cmd := subcommand("backup --output <file>", "Writes a full backup of the consent store", `
Writes a full backup of the consent store (Badger's stream format) to
--output, or to standard output with '-'. The backup of an encrypted
store is encrypted with the store's encryption key; keep that key as
long as the backup. Restore it with 'consentgate consent restore'.

With --storage a stopped store is backed up directly.

Example:

  $ consentgate consent backup --output /backups/consent-$(date +%F).backup`, noArgs, cmdBackup, viaAPI|viaStore)
	cmd.Flags().StringP("output", "o", "", "File to write, or - for standard output (required)")
	return cmd
}

func restoreCommand() *cobra.Command {
	cmd := subcommand("restore --storage <dir> --input <file> [--encryption-key-file <path>]", "Restores a backup into a new or stopped store", `
Restores a backup written by 'consentgate consent backup' into the store
in --storage, which must not be in use: a new directory, or the store of
a stopped instance. A store that already holds records is refused unless
--force loads the backup over them.

--encryption-key-file is the key of the store restored into (if it is to
be encrypted); --backup-key-file is the key the backup was encrypted with,
by default the same.

Example:

  $ consentgate consent restore --storage /var/lib/consentgate --input consent.backup --encryption-key-file /etc/consentgate/store.key`, noArgs, cmdRestore, viaStore)
	cmd.Flags().StringP("input", "i", "", "Backup file to restore, or - for standard input (required)")
	cmd.Flags().String("backup-key-file", "", "Key the backup was encrypted with (default: --encryption-key-file)")
	cmd.Flags().Bool("force", false, "Restore into a store that already holds records")
	return cmd
}

func rotateKeysCommand() *cobra.Command {
	cmd := subcommand("rotate-keys | rotate-keys --storage <dir> --old-key-file <path> --new-key-file <path>", "Rotates the cookie signing key, or the store's encryption key", `
Through the admin API, rotates the key that signs consent cookies: a new
key signs from now on, and cookies signed with earlier keys keep
verifying, so no visitor is asked again. (With a key_file in the config,
add a key line to the file and reload instead.)

With --storage, rotates the encryption key of a stopped, encrypted store:
the store's data keys are re-encrypted from --old-key-file to
--new-key-file, and nothing else is rewritten. Point encryption_key_file
at the new key before starting the instance again, and keep the old key
as long as backups made with it.

Examples:

  $ consentgate consent rotate-keys
  $ consentgate consent rotate-keys --storage /var/lib/consentgate --old-key-file old.key --new-key-file new.key`, noArgs, cmdRotateKeys, viaAPI)
	cmd.Flags().String("storage", "", "Directory of a stopped store whose encryption key to rotate")
	cmd.Flags().String("old-key-file", "", "The store's current encryption key (with --storage)")
	cmd.Flags().String("new-key-file", "", "The store's new encryption key (with --storage)")
	cmd.Flags().Bool("json", false, "Print the admin API's answer as JSON")
	return cmd
}

func requestsCommand() *cobra.Command {
	cmd := subcommand("requests [--status pending|overdue|completed|rejected|all]", "Lists and answers data-subject requests", `
Lists data-subject requests: every access, export, correction,
restriction and erasure, with when it was received and completed.
Requests an operator must confirm stay pending with their 30-day
deadline; overdue ones are flagged.

'requests new' records a request received another way (by mail, say);
'requests complete <id>' carries a pending request out, and
'requests reject <id>' rejects it.

Example:

  $ consentgate consent requests --status overdue`, noArgs, cmdRequests, viaAPI)
	cmd.Flags().String("status", "all", "Which requests: pending, overdue, completed, rejected or all")
	cmd.Flags().Bool("json", false, "Print the requests as JSON")

	newCmd := subcommand("new --type <type> --site <site> --id <consent id> [--note <text>] [--set <field>=<value> ...]", "Records a pending data-subject request", `
Records a data-subject request that an operator must confirm (one that
came by mail, say): it is pending, with the 30-day deadline, until
'requests complete' carries it out or 'requests reject' rejects it.
--type is access, export, correction (with --set), restriction or erasure.

Example:

  $ consentgate consent requests new --type erasure --site shop.example --id 0f1e2d3c4b5a69788796a5b4c3d2e1f0 --note "mail of 3 March"`, noArgs, cmdRequestNew, viaAPI)
	newCmd.Flags().String("type", "", "access, export, correction, restriction or erasure")
	visitorFlags(newCmd)
	newCmd.Flags().String("note", "", "Note recorded with the request")
	newCmd.Flags().StringArray("set", nil, "For a correction: corrected value as field=value")
	newCmd.Flags().Bool("json", false, "Print the admin API's answer as JSON")

	completeCmd := subcommand("complete <request id> [--note <text>]", "Carries out a pending data-subject request", `
Carries out a pending data-subject request (the erasure, correction,
restriction, access or export it asks for) and marks it completed.
Exits with 3 when there is no such request.

Example:

  $ consentgate consent requests complete 0189c0ffee0000001122334455667788`, exactArgs(1), func(fl caddycmd.Flags) error { return cmdRequestAnswer(fl, true) }, viaAPI)
	rejectCmd := subcommand("reject <request id> [--note <text>]", "Rejects a pending data-subject request", `
Rejects a pending data-subject request (say, because the requester could
not prove who they are), with --note saying why. Exits with 3 when there
is no such request.

Example:

  $ consentgate consent requests reject 0189c0ffee0000001122334455667788 --note "identity not confirmed"`, exactArgs(1), func(fl caddycmd.Flags) error { return cmdRequestAnswer(fl, false) }, viaAPI)
	for _, c := range []*cobra.Command{completeCmd, rejectCmd} {
		c.Flags().String("note", "", "Note recorded with the request")
		c.Flags().Bool("json", false, "Print the admin API's answer as JSON")
	}
	cmd.AddCommand(newCmd, completeCmd, rejectCmd)
	return cmd
}

// Where a subcommand can work: through the admin API of a running
// instance, on a stopped store, or either.
const (
	viaAPI = 1 << iota
	viaStore
)

// subcommand is a consent subcommand: its help, its arguments, what runs
// it, and the flags of where it can work (via).
func subcommand(use, short, long string, args cobra.PositionalArgs, run func(caddycmd.Flags) error, via int) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Long: long, Args: args, RunE: runConsent(run)}
	if via&viaAPI != 0 {
		adminFlags(cmd)
	}
	if via&viaStore != 0 {
		storeFlags(cmd)
	}
	return cmd
}

func adminFlags(cmd *cobra.Command) {
	cmd.Flags().String("address", "", "Address of the administration API listener (if --config is not used)")
	cmd.Flags().StringP("config", "c", "", "Configuration file (if --address is not used)")
	cmd.Flags().StringP("adapter", "a", "", "Name of config adapter to apply (if --config is used)")
}

func storeFlags(cmd *cobra.Command) {
	cmd.Flags().String("storage", "", "Directory of a stopped store to work on directly, instead of the admin API")
	cmd.Flags().String("encryption-key-file", "", "Encryption key of the store, if encrypted (with --storage)")
}

func visitorFlags(cmd *cobra.Command) {
	cmd.Flags().String("site", "", "Site of the visitor (required)")
	cmd.Flags().String("id", "", "Consent ID of the visitor, 32 hex digits (required)")
}

// cliError is an error with the exit code it stands for.
type cliError struct {
	code int
	err  error
}

func (e *cliError) Error() string { return e.err.Error() }
func (e *cliError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &cliError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// adminError is an error answer of the admin API.
type adminError struct {
	status  int
	message string
}

func (e *adminError) Error() string { return e.message }

// exitCode maps an error to the exit code documented in the help.
func exitCode(err error) int {
	var ce *cliError
	var ae *adminError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ce):
		return ce.code
	case errors.Is(err, errNoRecords), errors.Is(err, store.ErrNotFound):
		return exitNotFound
	case errors.As(err, &ae) && ae.status == http.StatusNotFound:
		return exitNotFound
	case errors.As(err, &ae) && ae.status == http.StatusBadRequest:
		return exitUsage
	}
	return exitFailure
}

// runConsent runs a subcommand with Caddy's wrapper, which logs the error
// and makes Main exit with the code exitCode gives.
func runConsent(f func(caddycmd.Flags) error) func(*cobra.Command, []string) error {
	return caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
		err := f(fl)
		return exitCode(err), err
	})
}

// usageError turns a flag or argument error into exit code 4. Caddy's
// wrapper is the only way to an exit code other than 1 from Main.
func usageError(cmd *cobra.Command, err error) error {
	return caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) {
		return exitUsage, fmt.Errorf("%v (see '%s --help')", err, commandPath(cmd))
	})(cmd, nil)
}

// commandPath is the command line of cmd as the user typed the binary.
func commandPath(cmd *cobra.Command) string {
	path := cmd.CommandPath()
	if root := cmd.Root().Name(); len(os.Args) > 0 && strings.HasPrefix(path, root) {
		path = filepath.Base(os.Args[0]) + path[len(root):]
	}
	return path
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError(cmd, fmt.Errorf("unexpected argument %q", args[0]))
	}
	return nil
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError(cmd, err)
		}
		return nil
	}
}

// flagValue returns a string flag's value, "" when the command has no
// such flag.
func flagValue(fl caddycmd.Flags, name string) string {
	if fl.Lookup(name) == nil {
		return ""
	}
	return fl.String(name)
}

// endpoint is where a subcommand works: a running instance's admin API,
// or a stopped store's directory.
type endpoint struct {
	admin   string
	storage string
	keyFile string
}

func (e endpoint) offline() bool { return e.storage != "" }

// resolveEndpoint finds the admin API as Caddy's own commands do, or the
// store directory given with --storage.
func resolveEndpoint(fl caddycmd.Flags) (endpoint, error) {
	e := endpoint{storage: flagValue(fl, "storage"), keyFile: flagValue(fl, "encryption-key-file")}
	address, config, adapter := flagValue(fl, "address"), flagValue(fl, "config"), flagValue(fl, "adapter")
	if e.storage != "" {
		if address != "" || config != "" {
			return e, usagef("--storage works on a stopped store directly; it cannot be combined with --address or --config")
		}
		return e, nil
	}
	if e.keyFile != "" {
		return e, usagef("--encryption-key-file needs --storage")
	}
	var err error
	if e.admin, err = caddycmd.DetermineAdminAPIAddress(address, nil, config, adapter); err != nil {
		return e, fmt.Errorf("couldn't determine admin API address: %v", err)
	}
	return e, nil
}

// onlineOnly resolves the admin API for subcommands without --storage.
func onlineOnly(fl caddycmd.Flags) (string, error) {
	e, err := resolveEndpoint(fl)
	return e.admin, err
}

var httpStatusError = regexp.MustCompile(`HTTP (\d{3}): (?s:(.*))$`)

// adminRequest sends a request to the admin API. A JSON body is encoded
// from in; error answers become an *adminError with the API's message.
func adminRequest(addr, method, uri string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, make(http.Header), body)
	if err == nil {
		return resp, nil
	}
	// AdminAPIRequest folds an error answer into the error text as
	// "HTTP <status>: <body>"; the body is Caddy's {"error": "..."}.
	m := httpStatusError.FindStringSubmatch(err.Error())
	if m == nil && strings.HasPrefix(err.Error(), "invalid admin address") {
		return nil, usagef("%v", err)
	}
	if m == nil {
		return nil, fmt.Errorf("cannot reach the admin API at %s (is consentgate running there? use --address or --config): %v", addr, err)
	}
	status, _ := strconv.Atoi(m[1])
	var answer struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(m[2])
	if json.Unmarshal([]byte(msg), &answer) == nil && answer.Error != "" {
		msg = answer.Error
	}
	return nil, &adminError{status: status, message: fmt.Sprintf("admin API at %s: %s (HTTP %d)", addr, msg, status)}
}

// withQuery appends q to path, leaving out empty values.
func withQuery(path string, q map[string]string) string {
	v := url.Values{}
	for k, val := range q {
		if val != "" {
			v.Set(k, val)
		}
	}
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}

// adminJSON sends a request, decodes the JSON answer into out and
// returns it as sent (for --json).
func adminJSON(addr, method, uri string, in, out any) (json.RawMessage, error) {
	resp, err := adminRequest(addr, method, uri, in)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the admin API's answer: %v", err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("decoding the admin API's answer: %v", err)
	}
	return raw, nil
}

// openStore opens a stopped store directly.
func openStore(dir, keyFile string, readOnly bool, retention time.Duration) (*store.Store, []byte, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, nil, fmt.Errorf("no consent store at %s: %w", dir, err)
	}
	var key []byte
	if keyFile != "" {
		var err error
		if key, err = readEncryptionKey(keyFile); err != nil {
			return nil, nil, err
		}
	}
	opts := store.Options{EncryptionKey: key, ReadOnly: readOnly, Retention: retention}
	s, err := store.Open(dir, opts)
	if readOnly && err != nil && strings.Contains(err.Error(), badger.ErrTruncateNeeded.Error()) {
		// A store whose instance was killed opens read-only only after the
		// recovery a start does: replaying its write-ahead log and cutting
		// off the unacknowledged tail. (Badger formats its errors rather
		// than wrapping them, so errors.Is cannot see this one.)
		fmt.Fprintf(os.Stderr, "the store in %s was not closed cleanly; recovering it as a start of consentgate would\n", dir)
		opts.ReadOnly = false
		s, err = store.Open(dir, opts)
	}
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, nil, fmt.Errorf("the store is in use by a running instance; use --address (store %s is locked)", dir)
		}
		return nil, nil, err
	}
	return s, key, nil
}

func retentionFlag(fl caddycmd.Flags) (time.Duration, error) {
	v := flagValue(fl, "retention")
	if v == "" {
		return store.DefaultRetention, nil
	}
	d, err := caddy.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, usagef("--retention must be a positive duration such as 8760h or 365d, not %q", v)
	}
	return d, nil
}

func checkVisitor(site, id string) error {
	if site == "" || id == "" {
		return usagef("--site and --id are required")
	}
	if err := validSiteID(site, id); err != nil {
		return usagef("%v", err)
	}
	return nil
}

func parseFields(sets []string) (map[string]string, error) {
	fields := make(map[string]string, len(sets))
	for _, s := range sets {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, usagef("--set takes field=value, not %q", s)
		}
		fields[k] = v
	}
	return fields, nil
}

// writeOutput writes to path through fn: standard output for "" or "-",
// else a private temporary file renamed into place once complete, so a
// failed export never leaves a file that looks whole.
func writeOutput(path string, fn func(io.Writer) error) error {
	if path == "" || path == "-" {
		return fn(os.Stdout)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".partial-*")
	if err != nil {
		return fmt.Errorf("creating output file: %v", err)
	}
	defer os.Remove(f.Name())
	if err := fn(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// printRaw prints an admin API answer, indented.
func printRaw(raw json.RawMessage) error {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return err
	}
	b.WriteByte('\n')
	_, err := b.WriteTo(os.Stdout)
	return err
}

// records says "1 record", "2 records".
func records(n int) string {
	if n == 1 {
		return "1 record"
	}
	return strconv.Itoa(n) + " records"
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// progress reports a long export's count on standard error once a second.
type progress struct {
	start, last time.Time
}

func newProgress() *progress {
	now := time.Now()
	return &progress{start: now, last: now}
}

func (p *progress) tick(n int) {
	if n%1024 != 0 {
		return
	}
	if now := time.Now(); now.Sub(p.last) >= time.Second {
		p.last = now
		fmt.Fprintf(os.Stderr, "exported %d records (%.0f/s)\n", n, float64(n)/now.Sub(p.start).Seconds())
	}
}

var errorLine = []byte(`{"error":`)

// copyLines copies a JSON Lines stream, counting its lines. The admin API
// ends an export that failed midway (after its 200 status) with an error
// line; that line, or a last line cut off, fails the copy.
func copyLines(w io.Writer, r io.Reader, p *progress) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	bw := bufio.NewWriterSize(w, 64<<10)
	n, atStart := 0, true
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if atStart && bytes.HasPrefix(chunk, errorLine) {
				return n, fmt.Errorf("the instance interrupted the export after %d records: %s", n, bytes.TrimSpace(chunk))
			}
			if _, err := bw.Write(chunk); err != nil {
				return n, err
			}
			if atStart = chunk[len(chunk)-1] == '\n'; atStart {
				n++
				p.tick(n)
			}
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			if !atStart {
				return n, fmt.Errorf("the export broke off after %d records (connection lost?)", n)
			}
			return n, bw.Flush()
		default:
			return n, fmt.Errorf("reading the export after %d records: %v", n, err)
		}
	}
}

func cmdExport(fl caddycmd.Flags) error {
	e, err := resolveEndpoint(fl)
	if err != nil {
		return err
	}
	site, id, output := fl.String("site"), fl.String("id"), fl.String("output")
	fromFlag, toFlag := fl.String("from"), fl.String("to")
	from, err := parseDay(fromFlag, false)
	if err != nil {
		return usagef("--from: %v", err)
	}
	to, err := parseDay(toFlag, true)
	if err != nil {
		return usagef("--to: %v", err)
	}
	if id != "" {
		if err := checkVisitor(site, id); err != nil {
			return err
		}
		if fromFlag != "" || toFlag != "" {
			return usagef("--id exports all of a visitor's records; it cannot be combined with --from or --to")
		}
	}
	p := newProgress()
	var n int
	if e.offline() {
		s, _, err := openStore(e.storage, e.keyFile, true, 0)
		if err != nil {
			return err
		}
		defer s.Close()
		err = writeOutput(output, func(w io.Writer) error {
			n, err = exportStore(s, w, site, id, from, to, p)
			return err
		})
		if err != nil {
			return err
		}
	} else {
		uri := withQuery("/consent/export", map[string]string{"site": site, "id": id, "from": fromFlag, "to": toFlag})
		resp, err := adminRequest(e.admin, http.MethodGet, uri, nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		err = writeOutput(output, func(w io.Writer) error {
			n, err = copyLines(w, resp.Body, p)
			return err
		})
		if err != nil {
			return err
		}
	}
	if output != "" && output != "-" {
		fmt.Fprintf(os.Stderr, "exported %s to %s\n", records(n), output)
	} else {
		fmt.Fprintf(os.Stderr, "exported %s\n", records(n))
	}
	return nil
}

// exportStore writes a stopped store's records as the admin API does.
func exportStore(s *store.Store, w io.Writer, site, id string, from, to time.Time, p *progress) (int, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	n := 0
	if id != "" {
		rs, err := s.Records(site, id)
		if err != nil {
			return 0, err
		}
		if len(rs) == 0 {
			return 0, errNoRecords
		}
		for _, r := range rs {
			if err := enc.Encode(r); err != nil {
				return n, err
			}
			n++
		}
		return n, bw.Flush()
	}
	err := s.Export(site, from, to, func(site string, e store.Entry) error {
		if err := enc.Encode(exportLine{Site: site, Entry: e}); err != nil {
			return err
		}
		n++
		p.tick(n)
		return nil
	})
	if err != nil {
		return n, err
	}
	return n, bw.Flush()
}

// actionAnswer is the admin API's answer to erase, restrict and correct.
type actionAnswer struct {
	Request    store.Request `json:"request"`
	Receipt    string        `json:"receipt"`
	Erased     int           `json:"erased"`
	Restricted bool          `json:"restricted"`
	Correction *store.Record `json:"correction"`
}

func completedAt(r store.Request) string {
	if r.Completed == nil {
		return "-"
	}
	return r.Completed.UTC().Format(time.RFC3339)
}

// visitorAction posts an action on the visitor named by --site and --id
// to the admin API at path; fill adds the command's own fields. The answer
// goes to out, or is printed as it came with --json (printed reports it).
func visitorAction(fl caddycmd.Flags, path string, fill func(*action) error, out *actionAnswer) (site, id string, printed bool, err error) {
	addr, err := onlineOnly(fl)
	if err != nil {
		return "", "", false, err
	}
	site, id = fl.String("site"), fl.String("id")
	if err := checkVisitor(site, id); err != nil {
		return "", "", false, err
	}
	in := action{Site: site, ID: id}
	if fill != nil {
		if err := fill(&in); err != nil {
			return "", "", false, err
		}
	}
	raw, err := adminJSON(addr, http.MethodPost, path, in, out)
	if err != nil {
		return "", "", false, err
	}
	if fl.Bool("json") {
		return site, id, true, printRaw(raw)
	}
	return site, id, false, nil
}

func cmdErase(fl caddycmd.Flags) error {
	var out actionAnswer
	site, id, printed, err := visitorAction(fl, "/consent/erase", nil, &out)
	if err != nil || printed {
		return err
	}
	fmt.Printf("erased %s of visitor %s on %s\nreceipt: %s\ncompleted: %s\n", records(out.Erased), id, site, out.Receipt, completedAt(out.Request))
	return nil
}

func cmdRestrict(fl caddycmd.Flags) error {
	on := !fl.Bool("lift")
	var out actionAnswer
	site, id, printed, err := visitorAction(fl, "/consent/restrict", func(in *action) error {
		in.Restrict, in.Note = &on, fl.String("note")
		return nil
	}, &out)
	if err != nil || printed {
		return err
	}
	what := "restricted"
	if !out.Restricted {
		what = "no longer restricted"
	}
	fmt.Printf("processing of visitor %s on %s is %s\nrequest: %s\n", id, site, what, out.Request.ID)
	return nil
}

func cmdCorrect(fl caddycmd.Flags) error {
	var out actionAnswer
	site, id, printed, err := visitorAction(fl, "/consent/correct", func(in *action) error {
		sets, _ := fl.GetStringArray("set")
		if len(sets) == 0 {
			return usagef("at least one --set field=value is required (correctable: %s)", strings.Join(store.CorrectableFields, ", "))
		}
		fields, err := parseFields(sets)
		if err != nil {
			return err
		}
		in.Seq, _ = fl.GetUint64("seq")
		in.Fields, in.Note = fields, fl.String("note")
		return nil
	}, &out)
	if err != nil || printed {
		return err
	}
	if out.Correction != nil {
		fmt.Printf("record %d of visitor %s on %s corrected by record %d\n", out.Correction.Corrects, id, site, out.Correction.Seq)
	}
	fmt.Printf("request: %s\n", out.Request.ID)
	return nil
}

// verifyAnswer is the result of verify, online and offline.
type verifyAnswer struct {
	OK    bool                 `json:"ok"`
	Sites []store.Verification `json:"sites"`
}

func cmdVerify(fl caddycmd.Flags) error {
	e, err := resolveEndpoint(fl)
	if err != nil {
		return err
	}
	site := fl.String("site")
	var out verifyAnswer
	if e.offline() {
		s, _, err := openStore(e.storage, e.keyFile, true, 0)
		if err != nil {
			return err
		}
		defer s.Close()
		if out, err = verifyStore(s, site); err != nil {
			return err
		}
	} else {
		if _, err := adminJSON(e.admin, http.MethodGet, withQuery("/consent/verify", map[string]string{"site": site}), nil, &out); err != nil {
			return err
		}
	}
	if fl.Bool("json") {
		if err := printJSON(out); err != nil {
			return err
		}
	} else {
		if len(out.Sites) == 0 {
			fmt.Println("no consent records to verify")
		}
		for _, v := range out.Sites {
			if v.OK {
				fmt.Printf("%s: ok, %d entries (%d erased), seq %d-%d, head %s\n", v.Site, v.Entries, v.Tombstones, v.FirstSeq, v.LastSeq, v.Head)
				continue
			}
			if p := v.Problem; p != nil {
				fmt.Printf("%s: BROKEN at entry %d (%s): %s\n", v.Site, p.Seq, p.Kind, p.Detail)
			} else {
				fmt.Printf("%s: BROKEN\n", v.Site)
			}
		}
	}
	broken := 0
	for _, v := range out.Sites {
		if !v.OK {
			broken++
		}
	}
	if broken > 0 || !out.OK {
		return &cliError{code: exitBroken, err: fmt.Errorf("the chain of %d of %d sites is broken", broken, len(out.Sites))}
	}
	return nil
}

func verifyStore(s *store.Store, site string) (verifyAnswer, error) {
	out := verifyAnswer{OK: true}
	sites := []string{site}
	if site == "" {
		var err error
		if sites, err = s.Sites(); err != nil {
			return out, err
		}
	}
	for _, site := range sites {
		v, err := s.Verify(site)
		if err != nil {
			return out, err
		}
		out.OK = out.OK && v.OK
		out.Sites = append(out.Sites, v)
	}
	return out, nil
}

// statsAnswer is the result of stats, online and offline.
type statsAnswer struct {
	Store      *store.Usage `json:"store,omitempty"`
	K          int          `json:"k"`
	Suppressed int          `json:"suppressed"`
	Cells      []store.Cell `json:"cells"`
}

// suppress drops the cells below k.
func (a *statsAnswer) suppress(k int) {
	if k <= a.K {
		return
	}
	a.K = k
	kept := a.Cells[:0]
	for _, c := range a.Cells {
		if c.Count < uint64(k) {
			a.Suppressed++
			continue
		}
		kept = append(kept, c)
	}
	a.Cells = kept
}

func cmdStats(fl caddycmd.Flags) error {
	e, err := resolveEndpoint(fl)
	if err != nil {
		return err
	}
	site, from, to := fl.String("site"), fl.String("from"), fl.String("to")
	for _, d := range []string{from, to} {
		if _, err := time.Parse("2006-01-02", d); d != "" && err != nil {
			return usagef("dates are YYYY-MM-DD, not %q", d)
		}
	}
	shareable, k := fl.Bool("shareable"), fl.Int("k")
	if k < 0 || (k > 0 && !shareable) {
		return usagef("--k is a positive count and applies with --shareable")
	}
	var out statsAnswer
	if e.offline() {
		retention, err := retentionFlag(fl)
		if err != nil {
			return err
		}
		s, _, err := openStore(e.storage, e.keyFile, true, retention)
		if err != nil {
			return err
		}
		defer s.Close()
		if out.Cells, err = s.Stats(site, from, to); err != nil {
			return err
		}
		out.K = 5
		if k > 0 {
			out.K = k
		}
		if shareable {
			// Offline the operator sets k: raise it from 0 to apply it.
			want := out.K
			out.K = 0
			out.suppress(want)
		} else {
			u, err := s.Usage(time.Now())
			if err != nil {
				return err
			}
			out.Store = &u
		}
	} else {
		if fl.Changed("retention") {
			return usagef("--retention applies with --storage; a running instance knows its own")
		}
		q := map[string]string{"site": site, "from": from, "to": to}
		if shareable {
			q["shareable"] = "true"
		}
		if _, err := adminJSON(e.admin, http.MethodGet, withQuery("/consent/stats", q), nil, &out); err != nil {
			return err
		}
		if shareable {
			out.suppress(k) // only ever raises the instance's k
		}
	}
	if out.Cells == nil {
		out.Cells = []store.Cell{}
	}
	if fl.Bool("json") {
		return printJSON(out)
	}
	printStats(out, shareable)
	return nil
}

func printStats(a statsAnswer, shareable bool) {
	if u := a.Store; u != nil {
		fmt.Printf("records:     %d (%d erased, kept as tombstones)\n", u.Records, u.Tombstones)
		retention := u.Retention
		if d, err := time.ParseDuration(u.Retention); err == nil && d%(24*time.Hour) == 0 {
			retention = fmt.Sprintf("%d days", d/(24*time.Hour))
		}
		fmt.Printf("retention:   %s", retention)
		if u.Oldest != nil {
			fmt.Printf(", oldest record %s", u.Oldest.UTC().Format(time.RFC3339))
		}
		if u.NextDisposal != nil {
			fmt.Printf(", next disposal %s", u.NextDisposal.UTC().Format(time.RFC3339))
		}
		fmt.Println()
		fmt.Printf("encrypted:   %t\n", u.Encrypted)
		fmt.Printf("requests:    %d (%d pending, %d overdue)\n", u.Requests, u.Pending, u.Overdue)
		if u.LSMBytes+u.VlogBytes > 0 { // Badger measures once a minute
			fmt.Printf("store size:  %d bytes (LSM %d, value log %d)\n", u.LSMBytes+u.VlogBytes, u.LSMBytes, u.VlogBytes)
		}
		fmt.Println()
	}
	if shareable {
		fmt.Printf("k-anonymity: counts below %d suppressed (%d cells)\n\n", a.K, a.Suppressed)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tSITE\tDAY\tDIMENSIONS\tCOUNT")
	for _, c := range a.Cells {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", c.Kind, c.Site, c.Day, strings.Join(c.Dims, " "), c.Count)
	}
	tw.Flush()
}

func cmdPurge(fl caddycmd.Flags) error {
	e, err := resolveEndpoint(fl)
	if err != nil {
		return err
	}
	var out store.PurgeResult
	if e.offline() {
		retention, err := retentionFlag(fl)
		if err != nil {
			return err
		}
		s, _, err := openStore(e.storage, e.keyFile, false, retention)
		if err != nil {
			return err
		}
		out, err = s.Purge(time.Now())
		if cerr := s.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("purging: %w", err)
		}
	} else {
		if fl.Changed("retention") {
			return usagef("--retention applies with --storage; a running instance purges with its own")
		}
		if _, err := adminJSON(e.admin, http.MethodPost, "/consent/purge", nil, &out); err != nil {
			return err
		}
	}
	if fl.Bool("json") {
		return printJSON(out)
	}
	fmt.Printf("purged: %s past the retention period deleted", records(out.Deleted))
	if out.Compacted {
		fmt.Print("; store compacted")
	}
	fmt.Println()
	return nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

func cmdBackup(fl caddycmd.Flags) error {
	e, err := resolveEndpoint(fl)
	if err != nil {
		return err
	}
	output := fl.String("output")
	if output == "" {
		return usagef("--output is required (- for standard output)")
	}
	var size int64
	if e.offline() {
		s, key, err := openStore(e.storage, e.keyFile, true, 0)
		if err != nil {
			return err
		}
		defer s.Close()
		err = writeOutput(output, func(w io.Writer) error {
			cw := &countingWriter{w: w}
			err := s.Backup(cw, key)
			size = cw.n
			return err
		})
		if err != nil {
			return err
		}
	} else {
		resp, err := adminRequest(e.admin, http.MethodGet, "/consent/backup", nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		err = writeOutput(output, func(w io.Writer) error {
			size, err = io.Copy(w, resp.Body)
			if err != nil {
				return fmt.Errorf("receiving the backup: %v", err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if output != "-" {
		fmt.Fprintf(os.Stderr, "backup of %d bytes written to %s\n", size, output)
	}
	return nil
}

func cmdRestore(fl caddycmd.Flags) error {
	dir, input := fl.String("storage"), fl.String("input")
	if dir == "" || input == "" {
		return usagef("--storage and --input are required")
	}
	backupKeyFile := fl.String("backup-key-file")
	if backupKeyFile == "" {
		backupKeyFile = fl.String("encryption-key-file")
	}
	var backupKey []byte
	if backupKeyFile != "" {
		var err error
		if backupKey, err = readEncryptionKey(backupKeyFile); err != nil {
			return err
		}
	}
	in := io.Reader(os.Stdin)
	if input != "-" {
		f, err := os.Open(input)
		if err != nil {
			return fmt.Errorf("opening backup: %v", err)
		}
		defer f.Close()
		in = f
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating consent storage: %v", err)
	}
	s, _, err := openStore(dir, fl.String("encryption-key-file"), false, 0)
	if err != nil {
		return err
	}
	sites, err := s.Sites()
	if err == nil && len(sites) > 0 && !fl.Bool("force") {
		err = fmt.Errorf("the store in %s already holds the records of %d sites; restore into a new directory, or give --force to load the backup over them", dir, len(sites))
	}
	if err == nil {
		err = s.Restore(bufio.NewReaderSize(in, 1<<20), backupKey)
	}
	var n int
	if err == nil {
		n, err = s.CountRecords("")
	}
	if err == nil {
		sites, err = s.Sites()
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fmt.Printf("restored %s of %d sites into %s\n", records(n), len(sites), dir)
	return nil
}

func cmdRotateKeys(fl caddycmd.Flags) error {
	dir, oldFile, newFile := fl.String("storage"), fl.String("old-key-file"), fl.String("new-key-file")
	if dir == "" {
		if oldFile != "" || newFile != "" {
			return usagef("--old-key-file and --new-key-file rotate a stopped store's encryption key and need --storage")
		}
		addr, err := onlineOnly(fl)
		if err != nil {
			return err
		}
		var out struct {
			KeyID uint32 `json:"key_id"`
		}
		raw, err := adminJSON(addr, http.MethodPost, "/consent/rotate-keys", nil, &out)
		if err != nil {
			return err
		}
		if fl.Bool("json") {
			return printRaw(raw)
		}
		fmt.Printf("signing key %d now signs consent cookies; cookies signed with earlier keys keep verifying\n", out.KeyID)
		return nil
	}
	if flagValue(fl, "address") != "" || flagValue(fl, "config") != "" {
		return usagef("--storage works on a stopped store directly; it cannot be combined with --address or --config")
	}
	if oldFile == "" || newFile == "" {
		return usagef("--old-key-file and --new-key-file are required with --storage")
	}
	oldKey, err := readEncryptionKey(oldFile)
	if err != nil {
		return err
	}
	newKey, err := readEncryptionKey(newFile)
	if err != nil {
		return err
	}
	if bytes.Equal(oldKey, newKey) {
		return usagef("the old and the new key are the same")
	}
	// Opening first proves the old key and that no instance holds the
	// store; the rotation itself rewrites only the key registry.
	s, _, err := openStore(dir, oldFile, true, 0)
	if err != nil {
		return err
	}
	if err := s.Close(); err != nil {
		return err
	}
	if err := store.RotateEncryptionKey(dir, oldKey, newKey); err != nil {
		return err
	}
	if s, _, err = openStore(dir, newFile, true, 0); err != nil {
		return fmt.Errorf("the store does not open with the new key after rotation: %w", err)
	}
	if err := s.Close(); err != nil {
		return err
	}
	fmt.Printf("the encryption key of %s is rotated: point encryption_key_file at %s before starting consentgate; keep %s as long as backups made with it\n", dir, newFile, oldFile)
	return nil
}

// requestsAnswer is the admin API's list of requests.
type requestsAnswer struct {
	Requests []requestView `json:"requests"`
	Overdue  int           `json:"overdue"`
}

func cmdRequests(fl caddycmd.Flags) error {
	addr, err := onlineOnly(fl)
	if err != nil {
		return err
	}
	status := fl.String("status")
	switch status {
	case "all", store.StatusPending, "overdue", store.StatusCompleted, store.StatusRejected:
	default:
		return usagef("--status is pending, overdue, completed, rejected or all, not %q", status)
	}
	var out requestsAnswer
	raw, err := adminJSON(addr, http.MethodGet, "/consent/requests?status="+url.QueryEscape(status), nil, &out)
	if err != nil {
		return err
	}
	if fl.Bool("json") {
		return printRaw(raw)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSITE\tSTATUS\tRECEIVED\tDEADLINE\tCOMPLETED\tRESULT")
	for _, r := range out.Requests {
		st := r.Status
		if r.Overdue {
			st = "OVERDUE"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Type, r.Site, st,
			r.Received.UTC().Format(time.RFC3339), r.Deadline.UTC().Format("2006-01-02"), completedAt(r.Request), r.Result)
	}
	tw.Flush()
	fmt.Printf("%d requests, %d overdue\n", len(out.Requests), out.Overdue)
	return nil
}

func cmdRequestNew(fl caddycmd.Flags) error {
	addr, err := onlineOnly(fl)
	if err != nil {
		return err
	}
	typ, site, id := fl.String("type"), fl.String("site"), fl.String("id")
	switch typ {
	case store.RequestAccess, store.RequestExport, store.RequestCorrection, store.RequestRestriction, store.RequestErasure:
	default:
		return usagef("--type is access, export, correction, restriction or erasure")
	}
	if err := checkVisitor(site, id); err != nil {
		return err
	}
	sets, _ := fl.GetStringArray("set")
	fields, err := parseFields(sets)
	if err != nil {
		return err
	}
	if typ == store.RequestCorrection && len(fields) == 0 {
		return usagef("a correction request needs --set field=value")
	}
	if len(fields) == 0 {
		fields = nil
	}
	var out store.Request
	in := action{Type: typ, Site: site, ID: id, Note: fl.String("note"), Fields: fields}
	raw, err := adminJSON(addr, http.MethodPost, "/consent/requests", in, &out)
	if err != nil {
		return err
	}
	if fl.Bool("json") {
		return printRaw(raw)
	}
	fmt.Printf("%s request %s recorded, pending until %s\n", out.Type, out.ID, out.Deadline.UTC().Format("2006-01-02"))
	return nil
}

func cmdRequestAnswer(fl caddycmd.Flags, complete bool) error {
	addr, err := onlineOnly(fl)
	if err != nil {
		return err
	}
	rid := fl.Arg(0)
	if b, err := hex.DecodeString(rid); err != nil || len(b) != 16 {
		return usagef("a request ID is 32 hex digits, not %q", rid)
	}
	verb := "reject"
	if complete {
		verb = "complete"
	}
	in := map[string]string{"note": fl.String("note")}
	var out struct {
		Request store.Request `json:"request"`
	}
	raw, err := adminJSON(addr, http.MethodPost, "/consent/requests/"+rid+"/"+verb, in, &out)
	if err != nil {
		return err
	}
	if fl.Bool("json") {
		return printRaw(raw)
	}
	fmt.Printf("request %s %s: %s\n", rid, out.Request.Status, out.Request.Result)
	return nil
}
