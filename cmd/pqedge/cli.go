package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// CLI errors are printed as "pqedge: error: ..." followed by "hint: ..."
// lines that name the flag or key to change. Every subcommand reports
// through cliFail.

// cliError is an error with the hint lines that tell the user what to change.
type cliError struct {
	err   error
	hints []string
	usage bool // a usage error: exit code 2
}

func (e *cliError) Error() string { return e.err.Error() }
func (e *cliError) Unwrap() error { return e.err }

func withHint(err error, hints ...string) error { return &cliError{err: err, hints: hints} }

func usageError(format string, a ...any) error {
	return &cliError{err: fmt.Errorf(format, a...), usage: true}
}

func cliFail(stderr io.Writer, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	fmt.Fprintf(stderr, "pqedge: error: %v\n", err)
	var ce *cliError
	if errors.As(err, &ce) {
		for _, h := range ce.hints {
			fmt.Fprintf(stderr, "hint: %s\n", h)
		}
		if ce.usage {
			return 2
		}
	}
	return 1
}

// parseFlags parses flags that may come before or after positional
// arguments (`trust DIR --out X`), which package flag alone does not allow.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &cliError{err: err, hints: []string{"see `pqedge " + fs.Name() + " --help`"}, usage: true}
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// newFlagSet makes the flag set of a subcommand; name is its whole path
// after "pqedge" ("certs issue", "bench matrix"), which the hints quote.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}
