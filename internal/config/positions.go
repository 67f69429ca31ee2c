package config

import (
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// positions maps a key path such as "site.0.tls.groups" to the line where the
// key (or its table header) is written. Arrays of tables get their index as a
// path element, so problems in the second [[site]] point at that site.
type positions struct {
	lines map[string]int
}

// indexPositions walks the document's expressions. It is only called on a
// document the decoder already accepted, so parse errors cannot occur; if one
// does, the index is simply incomplete and problems fall back to line 0.
func indexPositions(doc []byte) positions {
	pos := positions{lines: map[string]int{}}
	arrays := map[string]int{} // array-of-tables path -> number of elements seen
	resolve := func(parts []string) string {
		path := ""
		for _, p := range parts {
			if path != "" {
				path += "."
			}
			path += p
			if n, ok := arrays[path]; ok {
				path += "." + strconv.Itoa(n-1)
			}
		}
		return path
	}
	var p unstable.Parser
	p.Reset(doc)
	current := ""
	for p.NextExpression() {
		expr := p.Expression()
		line := lineOf(&p, expr)
		switch expr.Kind {
		case unstable.Table:
			current = resolve(keyParts(expr.Key()))
			pos.set(current, line)
		case unstable.ArrayTable:
			parts := keyParts(expr.Key())
			parent := resolve(parts[:len(parts)-1])
			base := parts[len(parts)-1]
			if parent != "" {
				base = parent + "." + base
			}
			arrays[base]++
			current = base + "." + strconv.Itoa(arrays[base]-1)
			pos.set(base, line)
			pos.set(current, line)
		case unstable.KeyValue:
			key := strings.Join(keyParts(expr.Key()), ".")
			if current != "" {
				key = current + "." + key
			}
			pos.set(key, line)
		}
	}
	return pos
}

func keyParts(it unstable.Iterator) []string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

func (p positions) set(path string, line int) {
	if _, ok := p.lines[path]; !ok && line > 0 {
		p.lines[path] = line
	}
}

// line returns the line of path, or of its nearest ancestor that has one.
func (p positions) line(path string) int {
	for path != "" {
		if l, ok := p.lines[path]; ok {
			return l
		}
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// lineOf returns the line of an expression: that of its first key node,
// which carries the position even where the expression's own range is empty.
func lineOf(p *unstable.Parser, expr *unstable.Node) int {
	it := expr.Key()
	if it.Next() && it.Node().Raw.Length > 0 {
		return p.Shape(it.Node().Raw).Start.Line
	}
	if expr.Raw.Length > 0 {
		return p.Shape(expr.Raw).Start.Line
	}
	return 0
}
