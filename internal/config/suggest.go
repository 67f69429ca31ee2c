package config

import (
	"reflect"
	"strings"
)

// suggestKey returns the known key closest in spelling to the unknown one
// at path (the decoder's key path, e.g. ["site", "tls", "polcy"]), or ""
// when none is close: "did you mean" turns a typo's problem into its fix.
// The known keys are the toml tags of the Config field the path leads to.
func suggestKey(path []string) string {
	if len(path) == 0 {
		return ""
	}
	t := reflect.TypeOf(Config{})
	for _, name := range path[:len(path)-1] {
		f, ok := fieldByTag(t, name)
		if !ok {
			return ""
		}
		t = f.Type
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return ""
		}
	}
	typo := strings.ToLower(path[len(path)-1])
	// At most one edit in three letters (and at least one): "adress",
	// "polcy" and "idel" find their keys; an unrelated word finds none.
	best, bestDist := "", max(1, len(typo)/3)+1
	for i := range t.NumField() {
		tag := tagName(t.Field(i))
		if tag == "" {
			continue
		}
		if d := editDistance(typo, tag); d < bestDist {
			best, bestDist = tag, d
		}
	}
	return best
}

// fieldByTag finds the field of struct type t whose toml tag is name.
func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if tagName(t.Field(i)) == name {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// tagName is a field's TOML key, "" for fields TOML does not set.
func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// editDistance is the Damerau-Levenshtein distance (optimal string
// alignment) of a and b: insertions, deletions, substitutions and swaps
// of neighbours, the usual typos, cost one each.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
