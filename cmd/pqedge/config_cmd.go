package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/pqedge/pqedge/internal/config"
)

const configUsage = `usage: pqedge config check FILE...

Validates each FILE. Exit status 0 when all are valid; otherwise 1, with one
line per problem on stderr: FILE:LINE: KEY: what is wrong (what to do).
`

func runConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(stderr, configUsage)
		return 2
	}
	fs := flag.NewFlagSet("pqedge config check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, configUsage) }
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	code := 0
	for _, file := range fs.Args() {
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
