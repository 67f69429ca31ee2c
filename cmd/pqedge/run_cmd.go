package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pqedge/pqedge/internal/config"
	"github.com/pqedge/pqedge/internal/fleet"
	"github.com/pqedge/pqedge/internal/heapfloor"
	"github.com/pqedge/pqedge/internal/server"
)

const runAbout = `Serves FILE until SIGTERM or SIGINT. Then pqedge is a lame duck: /readyz
answers 503 and every anycast prefix is withdrawn at once, it keeps accepting
for timeouts.withdraw_grace, then stops accepting and drains in-flight
requests, streams and WebSockets; it exits 0 within timeouts.shutdown of the
signal. A second SIGTERM or SIGINT ends the grace at once. SIGHUP reloads
FILE: a config that is invalid, or whose certificates or addresses fail, is
logged and the running one keeps serving.

Check a config first with pqedge config check FILE.
`

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run", "run -config FILE", runAbout, stdout)
	file := fs.String("config", "", "the TOML config `FILE` to serve")
	debugListen := fs.String("debug-listen", "", debugListenUsage)
	pos, err := fs.parse(args)
	if err != nil {
		return cliFail(stderr, err)
	}
	switch {
	case len(pos) > 0:
		return cliFail(stderr, &cliError{err: fmt.Errorf("unexpected argument %q", pos[0]), hints: []string{"the config goes in -config FILE: pqedge run -config " + pos[0]}, usage: true})
	case *file == "":
		return cliFail(stderr, &cliError{err: errors.New("run needs -config FILE"), hints: []string{"try `pqedge run -config config.example.toml`"}, usage: true})
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintf(stderr, "pqedge: error: invalid config:\n%v\nhint: `pqedge config check %s` lists every problem\n", err, *file)
		return 1
	}
	// The files the config names are checked before anything starts, so
	// that a missing or expired certificate is reported at the line that
	// names it rather than as a failed start.
	problems, warnings := splitWarnings(config.CheckFiles(cfg, time.Now()))
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "pqedge: error: %s names files pqedge cannot serve:\n%v\n", *file, problems)
		fmt.Fprintf(stderr, "hint: fix the files, or the keys that name them; `pqedge config check %s` checks again without starting\n", *file)
		return 1
	}
	level := new(slog.LevelVar)
	log := newLogger(stderr, cfg.Log, level)
	for _, w := range append(cfg.Warnings, warnings...) {
		log.Warn("config warning", "problem", w.String())
	}
	if *debugListen != "" {
		addr, err := startDebugListener(*debugListen)
		if err != nil {
			fmt.Fprintf(stderr, "pqedge: error: %v\nhint: give -debug-listen a loopback address such as 127.0.0.1:6060\n", err)
			return 2
		}
		log.Info("debug listener", "address", addr)
	}

	// Signals are registered before the server starts, so a SIGTERM that
	// arrives during startup still drains instead of killing the process.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	// go-redis keeps its logger in a process-wide variable: set it once,
	// before a fleet's store client exists.
	fleet.SetClientLogger(log)
	// The heap floor starts at none and takes each committed config's
	// limits.heap_floor (the first commit is inside New).
	floor := heapfloor.Start(0)
	defer floor.Stop()
	srv, err := server.New(cfg, server.Options{Logger: log, HeapFloor: floor})
	if err != nil {
		return cliFail(stderr, withHint(fmt.Errorf("failed to start: %w", err), startHints(err, *file)...))
	}
	log.Info("pqedge started", "version", version, "config", *file)
	// Reloads run beside the signal loop: one blocked on a slow ACME order
	// must not hold up a SIGTERM, which cancels it (Shutdown does).
	reloads, stopReloads := context.WithCancel(context.Background())
	defer stopReloads()
	var reloading inflight
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			reloading.Go(func() { reload(reloads, srv, *file, log, level) })
			continue
		}
		stopReloads()
		deadline := srv.ShutdownTimeout()
		log.Info("shutting down", "signal", sig.String(), "deadline", deadline.String())
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- srv.Shutdown(ctx) }()
		if err := waitShutdown(srv, sigs, done, log); err != nil {
			log.Warn("shutdown incomplete", "err", err)
		}
		// A reload the shutdown cancelled says how it ended before the
		// process does (an operator reading the log must not wonder
		// whether a half-applied config was running).
		waitReloads(ctx, &reloading, log)
		log.Info("stopped")
		return 0
	}
	return 0
}

// waitShutdown waits for Shutdown's result. A second SIGTERM or SIGINT
// (an impatient operator, a second Ctrl-C) ends the withdraw grace at once;
// SIGHUP is ignored, since nothing reloads while shutting down.
func waitShutdown(srv *server.Server, sigs <-chan os.Signal, done <-chan error, log *slog.Logger) error {
	for {
		select {
		case err := <-done:
			return err
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				log.Info("second signal: no more withdraw grace", "signal", sig.String())
				srv.EndGrace()
			}
		}
	}
}

// inflight counts goroutines started with Go until they return.
type inflight struct {
	n  atomic.Int32
	wg sync.WaitGroup
}

// Go runs f in a goroutine of its own, counted until it returns.
func (r *inflight) Go(f func()) {
	r.n.Add(1)
	r.wg.Go(func() {
		defer r.n.Add(-1)
		f()
	})
}

// waitReloads waits for the reloads in flight, cancelled by then, until
// ctx (the shutdown deadline) ends, and says so when one is still running
// then. With none in flight it returns at once, whatever ctx.
func waitReloads(ctx context.Context, reloading *inflight, log *slog.Logger) {
	if reloading.n.Load() == 0 {
		return
	}
	done := make(chan struct{})
	go func() {
		reloading.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	// A cancelled reload ends within moments: give it those even when the
	// shutdown used its whole deadline.
	grace := time.NewTimer(reloadEndGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		log.Warn("a cancelled reload had not ended by the shutdown deadline", "waited_after", reloadEndGrace.String())
	}
}

// reloadEndGrace is how long waitReloads waits past the shutdown deadline
// for a cancelled reload to end: its ACME order and socket binds return
// promptly once cancelled, so only a stuck one takes longer.
const reloadEndGrace = time.Second

// reload loads the file again and swaps it in; any problem is logged and the
// running config stays.
func reload(ctx context.Context, srv *server.Server, file string, log *slog.Logger, level *slog.LevelVar) {
	cfg, err := srv.ReloadFile(ctx, file)
	var ps config.Problems
	switch {
	case errors.As(err, &ps):
		for _, p := range ps {
			log.Error("reload refused: invalid config; still serving the previous one", "problem", p.String())
		}
	case err != nil:
		// A file the config names (a certificate, a key) that cannot be
		// served fails the reload further in, without a line; the check a
		// start makes says which key names it, at FILE:LINE.
		if ps := fileProblems(file); len(ps) > 0 {
			for _, p := range ps {
				log.Error("reload refused: the config names files pqedge cannot serve; still serving the previous one", "problem", p.String())
			}
			return
		}
		log.Error("reload failed; still serving the previous config", "err", err)
	default:
		level.Set(logLevel(cfg.Log.Level))
		// A reloaded config gets the warnings a start would print.
		_, warnings := splitWarnings(config.CheckFiles(cfg, time.Now()))
		for _, w := range append(cfg.Warnings, warnings...) {
			log.Warn("config warning", "problem", w.String())
		}
	}
}

// fileProblems is what CheckFiles finds wrong, warnings aside, with the
// files file names; nil when it does not load.
func fileProblems(file string) config.Problems {
	cfg, err := config.Load(file)
	if err != nil {
		return nil
	}
	problems, _ := splitWarnings(config.CheckFiles(cfg, time.Now()))
	return problems
}

// splitWarnings separates CheckFiles' warnings from its problems.
func splitWarnings(ps config.Problems) (problems, warnings config.Problems) {
	for _, p := range ps {
		if p.Warning {
			warnings = append(warnings, p)
		} else {
			problems = append(problems, p)
		}
	}
	return problems, warnings
}

// startHints says what to change when the server could not start: the
// usual causes by the error they give, then where to look.
func startHints(err error, file string) []string {
	var hints []string
	msg := err.Error()
	switch {
	case errors.Is(err, syscall.EADDRINUSE) || strings.Contains(msg, "address already in use"):
		hints = append(hints, "another process already listens on that address: stop it, or change the address in "+file)
	case errors.Is(err, syscall.EADDRNOTAVAIL) || strings.Contains(msg, "cannot assign requested address"):
		hints = append(hints, "that address is not on this machine: listen on one of its addresses, or 0.0.0.0")
	case strings.Contains(msg, "anycast device") && errors.Is(err, os.ErrPermission):
		// Checked before the generic permission case: its hint is about
		// ports and data_dir, which send an anycast operator the wrong way.
		hints = append(hints, "[anycast] needs CAP_NET_ADMIN: run pqedge as root, or give its service AmbientCapabilities=CAP_NET_ADMIN (docs/OPERATIONS.md, \"Capabilities\" under \"Anycast with BIRD\")")
	case strings.Contains(msg, "/dev/net/tun"):
		hints = append(hints, "[anycast] needs /dev/net/tun: pass it into the container (--device /dev/net/tun, or devices: [\"/dev/net/tun\"] in compose)")
	case errors.Is(err, syscall.EACCES) || errors.Is(err, os.ErrPermission):
		hints = append(hints, "ports below 1024 need root or CAP_NET_BIND_SERVICE (docs/OPERATIONS.md has a systemd unit), and data_dir must be writable")
	case strings.Contains(msg, "fleet"):
		hints = append(hints, "`pqedge fleet check -config "+file+"` reads the fleet's store and key files without starting; docs/FLEET.md")
	case strings.Contains(msg, "ACME") || strings.Contains(msg, "acme"):
		hints = append(hints, "docs/ACME.md: what the CA needs to reach, and how to test with a staging directory")
	}
	return append(hints, "`pqedge config check "+file+"` checks the config and every file it names without starting")
}

func newLogger(w io.Writer, lc config.Log, level *slog.LevelVar) *slog.Logger {
	level.Set(logLevel(lc.Level))
	opts := &slog.HandlerOptions{Level: level}
	if lc.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func logLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
