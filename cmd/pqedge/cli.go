package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strings"
)

// CLI errors are printed as "pqedge: error: ..." followed by "hint: ..."
// lines that name the flag or key to change. Every subcommand reports
// through cliFail.
//
// Help is not an error: `-h`, `--help` and `pqedge help ...` print to
// stdout and exit 0, so `pqedge certs issue -h | less` works. A command
// line that is wrong prints its problem and a hint to stderr and exits 2.

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

// cliFail prints err with its hints and returns the exit code: 0 for a
// help request (already printed), 2 for a usage error, 1 otherwise.
func cliFail(stderr io.Writer, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
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

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help" || arg == "help"
}

// cmdFlags is the command line of one subcommand: its flags and its help.
type cmdFlags struct {
	*flag.FlagSet
	usage  string // what follows "usage: pqedge " in the help
	about  string // what the command does, a paragraph or more
	dash   string // "-" or "--": how the help spells flags
	stdout io.Writer
}

// newFlagSet makes the flag set of a subcommand; name is its whole path
// after "pqedge" ("certs issue", "bench matrix"), which hints quote. usage
// is the synopsis ("certs issue --ca DIR ..."), about says what the command
// does. Flag usages name their value in backquotes (flag.UnquoteUsage).
func newFlagSet(name, usage, about string, stdout io.Writer) *cmdFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// Errors are reported by cliFail with a hint, help by printHelp on
	// stdout; package flag prints nothing itself.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	dash := "-"
	if strings.Contains(usage, "--") {
		dash = "--"
	}
	return &cmdFlags{FlagSet: fs, usage: usage, about: about, dash: dash, stdout: stdout}
}

// parse parses flags that may come before or after positional arguments
// (`trust DIR --out X`), which package flag alone does not allow. On -h it
// prints the help to stdout and returns flag.ErrHelp, which cliFail turns
// into exit code 0.
func (fs *cmdFlags) parse(args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.printHelp(fs.stdout)
				return nil, err
			}
			return nil, &cliError{err: err, hints: []string{"see `pqedge " + fs.Name() + " --help`"}, usage: true}
		}
		if fs.NArg() == 0 {
			if err := fs.checkFinite(); err != nil {
				return nil, err
			}
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// checkFinite refuses NaN and ±Inf in every number flag given:
// strconv.ParseFloat, which package flag uses, accepts them, and no rate,
// multiple or share of a command means anything at either (an infinite
// -rate or a NaN -flood would pass a "must be positive" check, or fail
// it, without saying why).
func (fs *cmdFlags) checkFinite() error {
	var bad *flag.Flag
	fs.Visit(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if !ok || bad != nil {
			return
		}
		if v, ok := g.Get().(float64); ok && (math.IsNaN(v) || math.IsInf(v, 0)) {
			bad = f
		}
	})
	if bad == nil {
		return nil
	}
	return &cliError{err: fmt.Errorf("invalid value %q for flag %s%s: want a finite number", bad.Value.String(), fs.dash, bad.Name),
		hints: []string{"see `pqedge " + fs.Name() + " --help`"}, usage: true}
}

// printHelp writes the usage line, the description and every flag with
// its default.
func (fs *cmdFlags) printHelp(w io.Writer) {
	fmt.Fprintf(w, "usage: pqedge %s\n\n%s", fs.usage, fs.about)
	if !strings.HasSuffix(fs.about, "\n") {
		fmt.Fprintln(w)
	}
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if first {
			fmt.Fprint(w, "\nflags:\n")
			first = false
		}
		value, usage := flag.UnquoteUsage(f)
		if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); isBool {
			value = ""
		}
		line := "  " + fs.dash + f.Name
		if value != "" {
			line += " " + value
		}
		fmt.Fprintf(w, "%s\n      %s", line, strings.ReplaceAll(usage, "\n", "\n      "))
		if d := f.DefValue; d != "" && d != "0" && d != "false" && d != "0s" && !strings.Contains(usage, "(default") {
			fmt.Fprintf(w, " (default %s)", d)
		}
		fmt.Fprintln(w)
	})
}
