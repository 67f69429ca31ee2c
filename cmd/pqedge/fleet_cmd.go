package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"syscall"
	"time"

	"github.com/pqedge/pqedge/internal/config"
	"github.com/pqedge/pqedge/internal/fleet"
)

const fleetUsage = `usage: pqedge fleet COMMAND [flags]

Fleet mode: nodes behind one address share ACME state and session-ticket
keys through a Redis or Valkey store (docs/FLEET.md).

commands:
  keygen  write a new fleet encryption key (mode 0600)
  check   read a config's fleet store without writing to it

Run 'pqedge fleet COMMAND -h' for a command's flags.
`

const fleetKeygenAbout = `Writes a new random fleet encryption key to FILE, mode 0600. Every node of
the fleet needs the same file (fleet.encryption_key_file): it seals every
value pqedge writes to the store, private keys and ticket keys included.
An existing FILE is refused unless --force is given: replacing the key
makes everything the store holds unreadable to the fleet.`

const fleetCheckAbout = `Reaches the fleet store named by FILE's [fleet] table and reads it without
writing anything: whether it answers, whether this node's key file opens
what is there (a different key says so, with both fingerprints), the
ticket-key generation and next rotation, and how many ACME entries and
locks it holds.`

// runFleet runs `pqedge fleet ARGS...`: 0 on success or help, 1 when the
// command failed, 2 on a usage error.
func runFleet(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprint(stderr, fleetUsage)
		return 2
	case isHelp(args[0]):
		if len(args) > 1 {
			return runFleet(append([]string{args[1]}, "-h"), stdout, stderr)
		}
		fmt.Fprint(stdout, fleetUsage)
		return 0
	}
	cmds := map[string]func([]string, io.Writer, io.Writer) error{
		"keygen": fleetKeygen,
		"check":  fleetCheck,
	}
	run, ok := cmds[args[0]]
	if !ok {
		return cliFail(stderr, &cliError{err: fmt.Errorf("unknown fleet command %q", args[0]), hints: []string{"commands are keygen and check; see `pqedge fleet --help`"}, usage: true})
	}
	if err := run(args[1:], stdout, stderr); err != nil {
		return cliFail(stderr, err)
	}
	return 0
}

func fleetKeygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("fleet keygen", "fleet keygen -o FILE [--force]", fleetKeygenAbout, stdout)
	out := fs.String("o", "", "the key `FILE` to write (mode 0600)")
	force := fs.Bool("force", false, "replace an existing key file (everything sealed under the old key becomes unreadable)")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("unexpected argument %q", pos[0])
	}
	if *out == "" {
		return &cliError{err: errors.New("no key file given"), hints: []string{"pass -o FILE, e.g. pqedge fleet keygen -o /etc/pqedge/fleet.key"}, usage: true}
	}
	k, err := fleet.WriteKeyFile(*out, *force)
	if errors.Is(err, fleet.ErrKeyFileExists) {
		return withHint(err, "a fleet's values open only with the key that sealed them: keep the existing file,",
			"or pass --force to replace it (the store's certificates and ticket keys are then lost to the fleet)")
	}
	if err != nil {
		return withHint(err, "check that -o names a writable directory")
	}
	fmt.Fprintf(stdout, "wrote %s (fingerprint %s)\n", *out, k.Fingerprint())
	fmt.Fprintf(stdout, "next: copy it to every node (mode 0600) and set fleet.encryption_key_file = %q\n", *out)
	return nil
}

// checkTimeout bounds `fleet check`'s whole conversation with the store.
const checkTimeout = 10 * time.Second

func fleetCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("fleet check", "fleet check -config FILE", fleetCheckAbout, stdout)
	file := fs.String("config", "", "the config `FILE` of a node, with a [fleet] table")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("unexpected argument %q", pos[0])
	}
	if *file == "" {
		return &cliError{err: errors.New("fleet check needs -config FILE"), usage: true, hints: []string{"pass the config of a node of the fleet"}}
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return withHint(fmt.Errorf("invalid config: %w", err), fmt.Sprintf("`pqedge config check %s` lists every problem", *file))
	}
	if cfg.Fleet == nil {
		return withHint(fmt.Errorf("%s has no [fleet] table", *file), "see docs/FLEET.md for the [fleet] keys")
	}
	opts, err := cfg.Fleet.Settings(cfg.DataDir).Options()
	if err != nil {
		return withHint(err, "fix the [fleet] table in "+*file)
	}
	// check reports the outcome itself: the Fleet's outage warnings
	// ("serving with the keys ... this node has") and go-redis's pool
	// lines would only repeat it on stderr, in other words and formats.
	quiet := slog.New(slog.DiscardHandler)
	fleet.SetClientLogger(quiet)
	opts.Logger = quiet
	f, err := fleet.New(opts)
	if err != nil {
		return withHint(err, "fix the [fleet] table in "+*file)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	r, err := f.Inspect(ctx, time.Now())
	fmt.Fprintf(stdout, "store:      %s\nnode:       %s\nkey:        fingerprint %s\n", opts.Store, f.NodeID(), opts.Key.Fingerprint())
	if errors.Is(err, syscall.ECONNREFUSED) {
		return withHint(err, "nothing listens at "+opts.Store.String()+": check that the Redis or Valkey server runs there, and fleet.store's host and port")
	}
	if err != nil {
		return withHint(err, "check fleet.store and the password, and that this node's encryption_key_file is the fleet's")
	}
	fmt.Fprintf(stdout, "reachable:  yes (%s)\n", r.RoundTrip.Round(time.Microsecond))
	if r.Tickets == nil {
		fmt.Fprintln(stdout, "tickets:    none yet (the first node to start writes them)")
	} else {
		t := r.Tickets
		fmt.Fprintf(stdout, "tickets:    generation %d, %d keys, sealing key %d, next rotation %s (written by %s at %s)\n",
			t.Generation, t.Keys, t.SealingKeyID, t.NextSealFrom.UTC().Format(time.RFC3339), t.UpdatedBy, t.UpdatedAt.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(stdout, "acme:       %d entries\n", r.ACMEEntries)
	if r.Locks > 0 {
		fmt.Fprintf(stdout, "locks:      %d held\n", r.Locks)
	}
	return nil
}
