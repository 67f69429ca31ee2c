package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary documents through decoding and validation. The
// loader must never panic, and every problem it reports must say where it
// is: a line, or, for something the file lacks altogether (such as "no
// listener configured"), the key that is missing. Each problem is one line,
// so `pqedge config check` prints one FILE:LINE per problem.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*.toml")
	seeds = append(seeds, "../../config.example.toml")
	for _, path := range seeds {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	const file = "fuzz.toml"
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(file, data)
		if err == nil {
			if cfg == nil {
				t.Fatal("Parse returned neither a config nor an error")
			}
			return
		}
		ps, ok := err.(Problems)
		if !ok {
			t.Fatalf("Parse error is %T, want Problems: %v", err, err)
		}
		if len(ps) == 0 {
			t.Fatal("Parse returned an empty Problems")
		}
		for _, p := range ps {
			if p.File != file {
				t.Errorf("problem %q names file %q, want %q", p, p.File, file)
			}
			if p.Line <= 0 && p.Key == "" {
				t.Errorf("problem %q has neither a line nor a key", p)
			}
			if strings.ContainsAny(p.String(), "\r\n") {
				t.Errorf("problem %q spans several lines", p)
			}
		}
	})
}
