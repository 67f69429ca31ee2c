package main

import (
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets scripts and process tests run the real pqedge main: the
// test binary acts as pqedge when invoked under that name.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"pqedge": main,
	})
}

// TestScripts runs the CLI scenarios in testdata/script/*.txtar.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("GOTOOLCHAIN", os.Getenv("GOTOOLCHAIN"))
			return nil
		},
	})
}
