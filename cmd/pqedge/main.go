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
)

// version is stamped by the Makefile (-ldflags "-X main.version=...").
var version = "dev"

const usage = `pqedge: a post-quantum TLS edge proxy

usage:
  pqedge run -config FILE          serve the config (SIGHUP reloads, SIGTERM drains)
  pqedge config check FILE...      validate configs; one FILE:LINE line per problem
  pqedge certs <command>           private post-quantum PKI (init, issue, inspect, trust)
  pqedge probe HOST:PORT           what a TLS server supports: groups, HRR, certificates
  pqedge bench <command>           measure post-quantum handshake costs
  pqedge version                   print the version

Run 'pqedge COMMAND -h' for a command's flags.
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
		"version": runVersion,
	}
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs the command named by args[0]; it is main without os.Exit,
// so tests drive the real command line.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "pqedge: error: unknown command %q\nhint: commands are run, config, certs, probe, bench and version; see `pqedge -h`\n", args[0])
		return 2
	}
	return cmd(args[1:], stdout, stderr)
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprint(stderr, "usage: pqedge version\n")
		return 2
	}
	goVersion := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
	}
	fmt.Fprintf(stdout, "pqedge %s (%s)\n", version, goVersion)
	return 0
}
