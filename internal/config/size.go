package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Size is a byte count written as a string: a number with an optional unit,
// "65536", "512B", "64KiB", "1MiB", "1GiB" (powers of 1024) or "64KB",
// "1MB", "1GB" (powers of 1000). Like Duration it is kept as text while
// decoding and checked by the validator, which knows the key's line.
type Size string

// sizeUnits are the suffixes ParseSize knows, longest first so "KiB" is not
// read as "B".
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// maxSize keeps sizes far from int64 overflow; no limit pqedge has needs
// more than 1 TiB.
const maxSize = 1 << 40

// ParseSize parses a Size's text into bytes.
func ParseSize(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > maxSize/mult {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return n * mult, nil
}

// Value returns the size in bytes. Call it only on an effective config
// (from Parse), where every size is set and valid.
func (z Size) Value() int64 {
	n, _ := ParseSize(string(z))
	return n
}

// FormatSize writes n bytes as a Size, in the largest binary unit that
// divides it: 65536 is "64KiB".
func FormatSize(n int64) Size {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n > 0 && n%u.mult == 0 {
			return Size(strconv.FormatInt(n/u.mult, 10) + u.suffix)
		}
	}
	return Size(strconv.FormatInt(n, 10) + "B")
}
