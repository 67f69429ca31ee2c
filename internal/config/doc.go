// Package config loads and validates pqedge's TOML configuration.
//
// It turns a file into a Config and a list of Problems, each with the file,
// the line and the key it is about, so `pqedge config check` and a SIGHUP
// reload can tell an operator exactly what to change. It does not open
// sockets, read certificates or build TLS settings: the server does that from
// a valid Config.
//
// # Errors
//
// Syntax errors, unknown keys and wrong types come from the TOML decoder
// (github.com/pelletier/go-toml/v2, strict mode) with their position. Semantic
// checks (addresses, group names, references between tables) find the line of
// the key they complain about through an index of key positions built from
// the same document.
package config
