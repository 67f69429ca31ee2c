package config

import (
	"regexp"
	"strings"
)

// decodeTypeRE matches go-toml v2's message for a value of the wrong TOML
// type: "toml: cannot decode TOML integer into struct field
// config.Timeouts.Idle of type config.Duration". It names Go types, which
// mean nothing to an operator; typeProblem says what the key wants instead.
var decodeTypeRE = regexp.MustCompile(`cannot decode TOML (\w+(?: table)?) into struct field \S+ of type (\S+)`)

// expectedByGoType says, for each Go type a config field has, what an
// operator writes in TOML; key is the field's TOML name, for the examples.
var expectedByGoType = map[string]func(key string) (want, example string){
	"config.Duration": func(k string) (string, string) { return "a duration string with a unit", k + ` = "10s"` },
	"config.Size":     func(k string) (string, string) { return "a size string with a unit", k + ` = "64KiB"` },
	"string":          func(k string) (string, string) { return "a string", k + ` = "..."` },
	"bool":            func(k string) (string, string) { return "true or false", k + " = true" },
	"int":             func(k string) (string, string) { return "a whole number", k + " = 3" },
	"int64":           func(k string) (string, string) { return "a whole number", k + " = 3" },
	"[]string":        func(k string) (string, string) { return "a list of strings", k + ` = ["a", "b"]` },
}

// typeProblem rewrites a wrong-type decode message for the operator: what
// the key wants, what the file has, and an example. inArray says the file
// has an array at key, so the message is about one of its elements (the
// decoder names the element's Go type: "string" for a []string). ok is
// false for any other message, which is then shown as the decoder wrote
// it.
func typeProblem(msg string, key []string, inArray bool) (text, hint string, ok bool) {
	m := decodeTypeRE.FindStringSubmatch(msg)
	if m == nil || len(key) == 0 {
		return "", "", false
	}
	// Optional fields are pointers: "*bool" wants what "bool" does.
	got, goType, name := m[1], strings.TrimPrefix(m[2], "*"), key[len(key)-1]
	if _, list := expectedByGoType["[]"+goType]; inArray && list {
		goType, got = "[]"+goType, "list holding "+article(got)
	}
	var want, example string
	switch f, known := expectedByGoType[goType]; {
	case known:
		want, example = f(name)
	case strings.HasPrefix(goType, "[]config."):
		want, example = "an array of tables", "[["+strings.Join(key, ".")+"]]"
	case strings.HasPrefix(goType, "config."):
		want, example = "a table", "["+strings.Join(key, ".")+"]"
	default:
		return "", "", false
	}
	return "wrong type: expected " + want + ", not " + article(got), "write it as " + example, true
}

// article puts "a" or "an" before a TOML type name ("an integer", "a string").
func article(typ string) string {
	if typ != "" && strings.ContainsRune("aeiou", rune(typ[0])) {
		return "an " + typ
	}
	return "a " + typ
}
