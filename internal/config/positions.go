package config

import (
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// positions maps a key path such as "site.0.tls.groups" to the line where the
// key (or its table header) is written. Arrays of tables get their index as a
// path element, so problems in the second [[site]] point at that site; so do
// arrays of inline tables ("listener = [{...}, {...}]"), and the keys of
// inline tables have their whole path ("site.0.tls.policy" for `tls = {
// policy = ... }` under [[site]]).
type positions struct {
	lines map[string]int
	// keys maps where a key-value's key starts (line and column, both
	// 1-based, columns in bytes) to its whole path: the decoder names a
	// key inside an inline table without the inline table's own key
	// (go-toml v2.4), and keyAt gives it back.
	keys map[[2]int]string
	// values maps where a value starts (line and column, as keys) to
	// the path of the key it is the value of; an array's elements all
	// map to the array's key. The decoder points a wrong type inside an
	// inline table at the value and names only the inline table's key
	// (go-toml v2.4: "timeouts" for `timeouts = { idle = 5 }`), and
	// valueAt gives the whole path back.
	values map[[2]int]string
	// whole holds the starts in values that are a key's whole value, not
	// an element of its array: a wrong type there is the value's.
	whole map[[2]int]bool
	// nested lists, in document order, the arrays and inline tables
	// that are elements of an array: go-toml (v2.4) reports a wrong type
	// there at line 1, column 1 and names the key without indexes, so
	// nestedFor finds the element instead.
	nested *[]nestedElem
}

// nestedElem is an array or inline table that is an element of the array
// at path ("listener.1.proxy_protocol_in").
type nestedElem struct {
	path string
	kind unstable.Kind
	line int // of its first scalar, else of the array's key
}

// indexPositions walks the document's expressions. It is only called on a
// document the decoder already accepted, so parse errors cannot occur; if one
// does, the index is simply incomplete and problems fall back to line 0.
func indexPositions(doc []byte) positions {
	pos := positions{lines: map[string]int{}, keys: map[[2]int]string{}, values: map[[2]int]string{}, whole: map[[2]int]bool{}, nested: new([]nestedElem)}
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
			pos.keyValue(&p, expr, current)
		}
	}
	return pos
}

// keyValue indexes the key-value kv of the table at path prefix, and those
// of the inline tables in its value, however deep.
func (p positions) keyValue(parser *unstable.Parser, kv *unstable.Node, prefix string) {
	path := prefix
	for _, part := range keyParts(kv.Key()) {
		if path != "" {
			path += "."
		}
		path += part
	}
	line := lineOf(parser, kv)
	p.set(path, line)
	var last unstable.Range // the key's last part
	for it, first := kv.Key(), true; it.Next(); first = false {
		if r := it.Node().Raw; r.Length > 0 {
			if first {
				start := parser.Shape(r).Start
				p.keys[[2]int{start.Line, start.Column}] = path
			}
			last = r
		}
	}
	v := kv.Value()
	p.noteValue(parser, v, path, true)
	if v != nil && v.Raw.Length == 0 && last.Length > 0 {
		// Arrays and inline tables carry no range of their own: the
		// value starts at the first byte after the key's "=" that is
		// not a space or tab (TOML 1.0: whitespace around it).
		data := parser.Data()
		i := int(last.Offset + last.Length)
		for i < len(data) && (data[i] == ' ' || data[i] == '\t') {
			i++
		}
		if i < len(data) && data[i] == '=' {
			for i++; i < len(data) && (data[i] == ' ' || data[i] == '\t'); i++ {
			}
			if i < len(data) {
				start := parser.Shape(unstable.Range{Offset: uint32(i), Length: 1}).Start
				p.values[[2]int{start.Line, start.Column}] = path
				p.whole[[2]int{start.Line, start.Column}] = true
			}
		}
	}
	p.value(parser, kv.Value(), path, line)
}

// noteValue records where v, the value (whole) or an element of the
// array at path, starts.
func (p positions) noteValue(parser *unstable.Parser, v *unstable.Node, path string, whole bool) {
	if v != nil && v.Raw.Length > 0 {
		start := parser.Shape(v.Raw).Start
		p.values[[2]int{start.Line, start.Column}] = path
		if whole {
			p.whole[[2]int{start.Line, start.Column}] = true
		}
	}
}

// value indexes what a value holds at path: the key-values of an inline
// table, and the elements of an array by index.
func (p positions) value(parser *unstable.Parser, v *unstable.Node, path string, line int) {
	if v == nil {
		return
	}
	switch v.Kind {
	case unstable.InlineTable:
		for it := v.Children(); it.Next(); {
			if n := it.Node(); n.Kind == unstable.KeyValue {
				p.keyValue(parser, n, path)
			}
		}
	case unstable.Array:
		if isIndex(path[strings.LastIndexByte(path, '.')+1:]) {
			// An array in an array: no key of a config lives in one,
			// and indexing its elements, 10,000 levels deep at most,
			// would cost the square of the depth in paths.
			return
		}
		i := 0
		for it := v.Children(); it.Next(); i++ {
			elem := path + "." + strconv.Itoa(i)
			n := it.Node()
			p.noteValue(parser, n, path, false)
			l := line
			if n.Raw.Length > 0 {
				l = parser.Shape(n.Raw).Start.Line
			}
			if n.Kind == unstable.Array || n.Kind == unstable.InlineTable {
				if first := firstScalar(n); first != nil {
					l = parser.Shape(first.Raw).Start.Line
				}
				*p.nested = append(*p.nested, nestedElem{path: path, kind: n.Kind, line: l})
			}
			p.set(elem, l)
			p.value(parser, n, elem, l)
		}
	}
}

// isIndex reports whether a path element is an array index.
func isIndex(part string) bool {
	return part != "" && part[0] >= '0' && part[0] <= '9'
}

// firstScalar returns the first node under n, however deep, that has a
// range in the document (a key or a scalar value), or nil.
func firstScalar(n *unstable.Node) *unstable.Node {
	for it := n.Children(); it.Next(); {
		c := it.Node()
		if c.Raw.Length > 0 {
			return c
		}
		if c.Kind == unstable.KeyValue {
			if k := c.Key(); k.Next() && k.Node().Raw.Length > 0 {
				return k.Node()
			}
		}
		if f := firstScalar(c); f != nil {
			return f
		}
	}
	return nil
}

// nestedFor returns the first element, in document order, of kind
// (unstable.Array or unstable.InlineTable) inside an array whose key
// names start with key and end in field, the Go field the decoder
// names ("ProxyProtocolIn" for proxy_protocol_in: compared without case
// and underscores). The decoder stops at the first element it cannot
// decode, so the first such element in the document is the one.
func (p positions) nestedFor(kind unstable.Kind, key []string, field string) (nestedElem, bool) {
	for _, n := range *p.nested {
		names := keyNames(n.path)
		if n.kind != kind || len(names) < len(key) || !slices.Equal(names[:len(key)], key) ||
			!strings.EqualFold(strings.ReplaceAll(names[len(names)-1], "_", ""), field) {
			continue
		}
		return n, true
	}
	return nestedElem{}, false
}

// keyAt returns the whole path of the key written at line and column, ""
// when none starts there.
func (p positions) keyAt(line, column int) string {
	return p.keys[[2]int{line, column}]
}

// valueAt returns the whole path of the key whose value (or one of whose
// array's elements) starts at line and column, "" when none does.
func (p positions) valueAt(line, column int) string {
	return p.values[[2]int{line, column}]
}

// wholeValueAt reports whether a key's whole value, rather than an
// element of its array, starts at line and column.
func (p positions) wholeValueAt(line, column int) bool {
	return p.whole[[2]int{line, column}]
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

// pathOf returns the whole path of the key the decoder names as key at
// line and column: the path indexed where the key starts (an unknown
// key); else that of the key whose value starts there (a wrong type: the
// decoder points at the value); else the only key on that line whose path
// ends in key's last part; else key as the decoder wrote it.
func (p positions) pathOf(line, column int, key []string) string {
	if path := p.keyAt(line, column); path != "" {
		return path
	}
	if path := p.valueAt(line, column); path != "" {
		return path
	}
	if len(key) > 0 {
		last, found := "."+key[len(key)-1], ""
		for at, path := range p.keys {
			if at[0] != line || !strings.HasSuffix("."+path, last) {
				continue
			}
			if found != "" {
				found = ""
				break
			}
			found = path
		}
		if found != "" {
			return found
		}
	}
	return strings.Join(key, ".")
}
