package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/pqedge/pqedge/internal/config"
)

const configUsage = `usage: pqedge config check FILE...

commands:
  check FILE...   validate each config and the files it names

Run 'pqedge config check -h' for its flags.
`

const configCheckAbout = `Validates each FILE: its syntax, every key and value, the references
between tables, and every file it names (certificate and key files exist,
parse, belong together, are valid now and cover the site's server names;
pq_root and acme.ca_roots hold PEM certificates).

Exit status 0 when every FILE is valid, otherwise 1, with one line per
problem on stderr: FILE:LINE: KEY: what is wrong (what to do).
`

// runConfig is `pqedge config`; check is its only command.
func runConfig(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprint(stderr, configUsage)
		return 2
	case isHelp(args[0]):
		if len(args) > 1 {
			return runConfig(append([]string{args[1]}, "-h"), stdout, stderr)
		}
		fmt.Fprint(stdout, configUsage)
		return 0
	case args[0] != "check":
		return cliFail(stderr, &cliError{err: fmt.Errorf("unknown config command %q", args[0]),
			hints: []string{"the command is check: pqedge config check FILE..."}, usage: true})
	}
	fs := newFlagSet("config check", "config check FILE...", configCheckAbout, stdout)
	files, err := fs.parse(args[1:])
	if err != nil {
		return cliFail(stderr, err)
	}
	if len(files) == 0 {
		return cliFail(stderr, &cliError{err: errors.New("no config file given"), hints: []string{"pqedge config check FILE..., e.g. pqedge config check config.example.toml"}, usage: true})
	}
	code := 0
	for _, file := range files {
		if _, err := config.Load(file); err != nil {
			code = 1
			var ps config.Problems
			if errors.As(err, &ps) {
				for _, p := range ps {
					fmt.Fprintln(stderr, p.String())
				}
				continue
			}
			fmt.Fprintf(stderr, "%s: %v\n", file, err)
			continue
		}
		fmt.Fprintf(stdout, "%s: ok\n", file)
	}
	return code
}
