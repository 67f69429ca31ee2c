// Command pqedge is a post-quantum TLS edge proxy: it terminates TLS with
// hybrid ML-KEM key exchange, serves classical and ML-DSA certificate
// chains, proxies HTTP and TCP streams, and reports what every client
// negotiated.
//
// main only parses the command line and wires packages together; the work
// is done in internal/server, internal/config, pqtls, certs, proxy and bench.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
)

// version is stamped by the Makefile (-ldflags "-X main.version=...").
var version = "dev"

const usage = `pqedge: a post-quantum TLS edge proxy

usage: pqedge COMMAND [ARGUMENTS]

commands:
  run -config FILE       serve FILE (SIGHUP reloads it; SIGTERM or SIGINT drain and exit)
  config check FILE...   validate configs and every file they name; one FILE:LINE line per problem
  certs COMMAND          a private post-quantum PKI: init, issue, inspect, trust
  probe HOST:PORT        what a TLS server accepts: groups, HelloRetryRequest, certificates
  bench COMMAND          what handshakes and proxied traffic cost: handshake, matrix, proxy, overload
  fleet COMMAND          fleet mode: keygen (the encryption key), check (the shared store)
  health [-config FILE]  exit 0 if a running pqedge is ready (its /readyz), else 1
  version                print the version, the Go toolchain and the CA roots in use
  help [COMMAND]         this text, or a command's help (as pqedge COMMAND -h)

Try it: pqedge run -config config.example.toml, then open https://localhost:8443.
README.md and docs/ describe the configuration and how to operate pqedge.
`

// command runs a subcommand with its arguments and returns the exit code.
type command func(args []string, stdout, stderr io.Writer) int

func commands() map[string]command {
	return map[string]command{
		"run":     runServe,
		"config":  runConfig,
		"certs":   runCerts,
		"probe":   runProbe,
		"bench":   runBench,
		"fleet":   runFleet,
		"health":  runHealth,
		"version": runVersion,
	}
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs the command named by args[0]; it is main without os.Exit,
// so tests drive the real command line.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if isHelp(args[0]) {
		if len(args) == 1 {
			fmt.Fprint(stdout, usage)
			return 0
		}
		// pqedge help COMMAND [SUBCOMMAND] is the command's own -h.
		return dispatch(append(slices.Clone(args[1:]), "-h"), stdout, stderr)
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		return cliFail(stderr, &cliError{err: fmt.Errorf("unknown command %q", args[0]),
			hints: []string{"commands are run, config, certs, probe, bench, fleet, health and version; see `pqedge help`"}, usage: true})
	}
	return cmd(args[1:], stdout, stderr)
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "version", "Prints pqedge's version, the Go toolchain it was built with, and which CA\nroots verify public TLS servers such as an ACME directory: the system's, or\nMozilla's built into pqedge where the system has none (a scratch container).\n", stdout)
	pos, err := fs.parse(args)
	if err != nil {
		return cliFail(stderr, err)
	}
	if len(pos) > 0 {
		return cliFail(stderr, &cliError{err: fmt.Errorf("version takes no arguments, got %q", pos[0]), hints: []string{"run `pqedge version`"}, usage: true})
	}
	goVersion := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
	}
	fmt.Fprintf(stdout, "pqedge %s (%s)\nca roots: %s\n", version, goVersion, caRoots())
	return 0
}
