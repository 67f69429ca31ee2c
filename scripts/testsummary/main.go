// Command testsummary runs a `go test -json` command, prints what plain
// `go test` would (each package's result, and the output of failing tests
// only), and ends with the list of skipped tests and their reasons, so a
// run on a machine without the real peers cannot look all green while the
// browser and OpenSSL tests did not run. It exits with the command's exit
// status.
//
//	go run ./scripts/testsummary [-trim PREFIX] go test -json [flags] PACKAGES
//
// -trim removes a prefix (the module path) from package names in the list.
//
// It is `make test`'s helper, not part of pqedge.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// maxLine bounds one line of go test's output held in memory; a longer
// line is printed in pieces, unparsed.
const maxLine = 1 << 20

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("testsummary", flag.ContinueOnError)
	fs.SetOutput(stderr)
	trim := fs.String("trim", "", "prefix removed from package names in the skip list (the module path and a slash)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: testsummary [-trim PREFIX] go test -json [flags] PACKAGES")
		return 2
	}
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	cmd.Stderr = stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintf(stderr, "testsummary: failed to run %s: %v\n", fs.Arg(0), err)
		return 2
	}
	// ^C reaches go test through the terminal's process group; this
	// process stays to print what ran before it stopped.
	signal.Ignore(os.Interrupt)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "testsummary: failed to run %s: %v\n", fs.Arg(0), err)
		return 2
	}
	s := newSummary(stdout)
	readLines(pipe, s.line)
	err = cmd.Wait()
	s.finish(*trim)
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode()
	case err != nil:
		fmt.Fprintf(stderr, "testsummary: %v\n", err)
		return 2
	}
	return 0
}

// readLines calls f with each line of r, without its newline, until r ends.
func readLines(r io.Reader, f func([]byte)) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if line[len(line)-1] == '\n' {
				line = line[:len(line)-1]
			}
			f(line)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}
