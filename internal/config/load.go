package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
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

// sortByLine orders problems as the file does, so that an operator
// fixing them goes down the file once (validation visits sections, not
// lines); problems without a line (something the file lacks) come last,
// in the order found.
func (ps Problems) sortByLine() {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		switch {
		case a.Line <= 0 && b.Line <= 0:
			return 0
		case a.Line <= 0:
			return 1
		case b.Line <= 0:
			return -1
		}
		return cmp.Compare(a.Line, b.Line)
	})
}

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
	data, err := WithoutBOM(file, data)
	if err != nil {
		return nil, err
	}
	cfg := &Config{File: file}
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return nil, decodeProblems(file, data, err)
	}
	v := validator{cfg: cfg, pos: indexPositions(data), dir: filepath.Dir(file)}
	v.validate()
	v.problems.sortByLine()
	v.warnings.sortByLine()
	if len(v.problems) > 0 {
		return nil, v.problems
	}
	cfg.Warnings, cfg.pos = v.warnings, v.pos
	cfg.applyDefaults()
	cfg.resolvePaths(filepath.Dir(file))
	return cfg, nil
}

// utf8BOM is the UTF-8 encoding of U+FEFF, the byte order mark.
var utf8BOM = []byte{0xef, 0xbb, 0xbf}

// WithoutBOM returns data without a leading UTF-8 byte order mark, which
// Windows editors write (Notepad before Windows 10 1903, PowerShell 5's
// Out-File -Encoding utf8) and go-toml takes for a key's first character;
// TOML 1.0 files are UTF-8, and the mark says nothing more. A UTF-16 or
// UTF-32 byte order mark is a file in another encoding: refused, naming
// it, at FILE:1 (a Problems error). Parse calls it; so does anything else
// that reads a config file.
func WithoutBOM(file string, data []byte) ([]byte, error) {
	if bytes.HasPrefix(data, utf8BOM) {
		return data[len(utf8BOM):], nil
	}
	for _, enc := range []struct {
		name string
		bom  []byte
	}{
		// UTF-32LE first: its mark starts with UTF-16LE's.
		{"UTF-32", []byte{0xff, 0xfe, 0, 0}},
		{"UTF-32", []byte{0, 0, 0xfe, 0xff}},
		{"UTF-16", []byte{0xff, 0xfe}},
		{"UTF-16", []byte{0xfe, 0xff}},
	} {
		if bytes.HasPrefix(data, enc.bom) {
			return nil, Problems{{File: file, Line: 1, Msg: fmt.Sprintf("the file is %s (it starts with a %s byte order mark, % X); TOML files are UTF-8", enc.name, enc.name, enc.bom),
				Hint: "save it as UTF-8"}}
		}
	}
	return data, nil
}

// decodeProblems turns the TOML decoder's errors on data into Problems.
func decodeProblems(file string, data []byte, err error) Problems {
	pos := indexPositions(data)
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var ps Problems
		for _, e := range strict.Errors {
			line, column := e.Position()
			path := pos.pathOf(line, column, e.Key())
			hint := "check the spelling against config.example.toml"
			if k := suggestKey(keyNames(path)); k != "" {
				hint = "did you mean " + k + "?"
			}
			ps = append(ps, Problem{File: file, Line: line, Key: path, Msg: "unknown key", Hint: hint})
		}
		return ps
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, column := de.Position()
		path := pos.pathOf(line, column, de.Key())
		if n, ok := nestedElement(pos, de, line, column); ok {
			line, column, path = n.line, 0, n.path
		}
		p := Problem{File: file, Line: line, Key: path, Msg: strings.TrimPrefix(de.Error(), "toml: ")}
		// An element's wrong type: the document has an array there,
		// and the decoder does not point at the array itself (a list
		// where a string belongs: `address = ["a"]`).
		_, inArray := pos.lines[path+".0"]
		inArray = inArray && !pos.wholeValueAt(line, column)
		if msg, hint, ok := typeProblem(de.Error(), keyNames(path), inArray); ok {
			p.Msg, p.Hint = msg, hint
		}
		if lines := bytes.Split(data, []byte("\n")); line > 0 && line <= len(lines) && column > 0 &&
			bytes.HasPrefix(lines[line-1][min(column-1, len(lines[line-1])):], utf8BOM) {
			// The decoder names the mark's first byte, U+00EF.
			p.Msg, p.Hint = "a UTF-8 byte order mark (EF BB BF) inside the file", "remove it; files joined with cat keep each one's mark"
		}
		return Problems{p}
	}
	return Problems{{File: file, Msg: err.Error()}}
}

// nestedTypeRE matches go-toml's wrong-type message for an array or inline
// table, and names the struct field: "cannot decode TOML array into
// struct field config.Listener.ProxyProtocolIn of type string".
var nestedTypeRE = regexp.MustCompile(`cannot decode TOML (array|inline table) into struct field \S*?(\w+) of type`)

// nestedElement finds the array or inline table, an element of an array,
// that de is about when the decoder points at no value (line and column
// are 1:1 for such an element, go-toml v2.4).
func nestedElement(pos positions, de *toml.DecodeError, line, column int) (nestedElem, bool) {
	m := nestedTypeRE.FindStringSubmatch(de.Error())
	if m == nil || pos.valueAt(line, column) != "" {
		return nestedElem{}, false
	}
	kind := unstable.Array
	if m[1] == "inline table" {
		kind = unstable.InlineTable
	}
	return pos.nestedFor(kind, de.Key(), m[2])
}

// keyNames is the key names of a dotted path, without the indexes of
// array elements: "site.0.tls.polcy" gives [site tls polcy].
func keyNames(path string) []string {
	var names []string
	for _, part := range strings.Split(path, ".") {
		if part != "" && (part[0] < '0' || part[0] > '9') {
			names = append(names, part)
		}
	}
	return names
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
