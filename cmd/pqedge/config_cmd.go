package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pqedge/pqedge/internal/config"
)

const configUsage = `usage: pqedge config check FILE...

commands:
  check FILE...   validate each config and the files it names

Run 'pqedge config check -h' for its flags.
`

const configCheckAbout = `Validates each FILE: its syntax, every key and value, the references
between tables, and every file it names: certificate and key files exist,
parse, belong together, are valid now and cover the site's server_names;
pq_root and acme.ca_roots hold PEM certificates; [fleet]'s key file is a
0600 fleet key, its password and CA files are readable.

Exit status 0 when every FILE is valid, otherwise 1, with one line per
problem on stderr: FILE:LINE: KEY: what is wrong (what to do). Lines with
"warning:" are likely mistakes that do not make the config invalid.
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
	fs := newFlagSet("config check", "config check [-files=false] FILE...", configCheckAbout, stdout)
	checkFiles := fs.Bool("files", true, "check the certificate, key and root files the config names;\n-files=false checks the config alone, on a machine that does not hold them")
	files, err := fs.parse(args[1:])
	if err != nil {
		return cliFail(stderr, err)
	}
	if len(files) == 0 {
		return cliFail(stderr, &cliError{err: errors.New("no config file given"), hints: []string{"pqedge config check FILE..., e.g. pqedge config check config.example.toml"}, usage: true})
	}
	code := 0
	for _, file := range files {
		problems, warnings, err := checkConfig(file, *checkFiles, time.Now())
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", file, err)
			code = 1
			continue
		}
		for _, p := range append(problems, warnings...) {
			fmt.Fprintln(stderr, p.String())
		}
		switch {
		case len(problems) > 0:
			code = 1
		case len(warnings) > 0:
			fmt.Fprintf(stdout, "%s: ok, %d warning(s)\n", file, len(warnings))
		default:
			fmt.Fprintf(stdout, "%s: ok\n", file)
		}
	}
	return code
}

// checkConfig loads file and, with withFiles, checks the files it names.
// err is set only when file cannot be read.
func checkConfig(file string, withFiles bool, now time.Time) (problems, warnings config.Problems, err error) {
	cfg, err := config.Load(file)
	if err != nil {
		if errors.As(err, &problems) {
			return problems, nil, nil
		}
		return nil, nil, err
	}
	warnings = cfg.Warnings
	if withFiles {
		for _, p := range config.CheckFiles(cfg, now) {
			if p.Warning {
				warnings = append(warnings, p)
			} else {
				problems = append(problems, p)
			}
		}
	}
	return problems, warnings, nil
}
