package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Problem is one thing wrong with a config file.
type Problem struct {
	File string
	Line int    // 0 when the problem has no single line
	Key  string // dotted key path, e.g. "site.0.tls.groups"; may be empty
	Msg  string
	Hint string
	// Warning marks a likely mistake that does not make the config
	// invalid: it is served as written, and the warning says what will
	// surprise.
	Warning bool
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Warning {
		b.WriteString("warning: ")
	}
	if p.Key != "" {
		fmt.Fprintf(&b, "%s: ", displayKey(p.Key))
	}
	b.WriteString(p.Msg)
	if p.Hint != "" {
		fmt.Fprintf(&b, " (%s)", p.Hint)
	}
	return b.String()
}

// displayKey turns "site.0.tls.groups" into "site[0].tls.groups".
func displayKey(path string) string {
	parts := strings.Split(path, ".")
	var b strings.Builder
	for i, p := range parts {
		if p != "" && p[0] >= '0' && p[0] <= '9' && i > 0 {
			fmt.Fprintf(&b, "[%s]", p)
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

// Problems is the error Load returns for an invalid config: one line each.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Load reads, decodes and validates the config at path. An invalid config
// gives a Problems error; an unreadable file a plain error.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates a config whose text is data; file names it in
// problems and anchors relative paths.
func Parse(file string, data []byte) (*Config, error) {
	cfg := &Config{File: file}
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return nil, decodeProblems(file, err)
	}
	v := validator{cfg: cfg, pos: indexPositions(data), dir: filepath.Dir(file)}
	v.validate()
	if len(v.problems) > 0 {
		return nil, v.problems
	}
	cfg.Warnings, cfg.pos = v.warnings, v.pos
	cfg.applyDefaults()
	cfg.resolvePaths(filepath.Dir(file))
	return cfg, nil
}

// decodeProblems turns the TOML decoder's errors into Problems.
func decodeProblems(file string, err error) Problems {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var ps Problems
		for _, e := range strict.Errors {
			line, _ := e.Position()
			hint := "check the spelling against config.example.toml"
			if k := suggestKey(e.Key()); k != "" {
				hint = "did you mean " + k + "?"
			}
			ps = append(ps, Problem{File: file, Line: line, Key: strings.Join(e.Key(), "."),
				Msg: "unknown key", Hint: hint})
		}
		return ps
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		p := Problem{File: file, Line: line, Key: strings.Join(de.Key(), "."), Msg: strings.TrimPrefix(de.Error(), "toml: ")}
		if msg, hint, ok := typeProblem(de.Error(), de.Key()); ok {
			p.Msg, p.Hint = msg, hint
		}
		return Problems{p}
	}
	return Problems{{File: file, Msg: err.Error()}}
}

// resolvePaths makes relative file paths relative to the config's directory,
// so pqedge behaves the same whatever directory it is started from.
func (c *Config) resolvePaths(dir string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		if a, err := filepath.Abs(filepath.Join(dir, p)); err == nil {
			return a
		}
		return filepath.Join(dir, p)
	}
	c.DataDir = abs(c.DataDir)
	if f := c.Fleet; f != nil {
		f.PasswordFile = abs(f.PasswordFile)
		f.CAFile = abs(f.CAFile)
		f.EncryptionKeyFile = abs(f.EncryptionKeyFile)
	}
	for i := range c.Pool {
		p := &c.Pool[i]
		p.TLSCA, p.TLSClientCert, p.TLSClientKey = abs(p.TLSCA), abs(p.TLSClientCert), abs(p.TLSClientKey)
	}
	for i := range c.Site {
		c.Site[i].PQRoot = abs(c.Site[i].PQRoot)
		c.Site[i].ACME.CARoots = abs(c.Site[i].ACME.CARoots)
		for j := range c.Site[i].Cert {
			c.Site[i].Cert[j].Cert = abs(c.Site[i].Cert[j].Cert)
			c.Site[i].Cert[j].Key = abs(c.Site[i].Cert[j].Key)
		}
	}
}

// DisplayKey spells a dotted key path the way problems do:
// "cert.1.key" is "cert[1].key".
func DisplayKey(path string) string { return displayKey(path) }
