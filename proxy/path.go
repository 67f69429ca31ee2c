package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode"
)

// Errors of NormalizePath; each is answered with 400 by CheckRequest.
var (
	// ErrPathSyntax: the path does not start with "/", has a malformed
	// percent-escape, a control character or an encoded NUL.
	ErrPathSyntax = errors.New("malformed path")
	// ErrPathEscapesRoot: a ".." segment climbs above "/".
	ErrPathEscapesRoot = errors.New("path escapes the root")
	// ErrPathHiddenDots: a dot segment is hidden from routing, behind an
	// encoded slash ("..%2F"), further layers of encoding ("%252e%252e"),
	// overlong UTF-8 ("%C0%AE"), a path parameter ("..;", "..%3B") or
	// whitespace ("..%20"), so an upstream that decodes further, treats
	// ";" as Tomcat does or trims names would climb out of the route; or
	// the path is encoded too many times over to tell.
	ErrPathHiddenDots = errors.New("path hides a dot segment")
)

// NormalizedPath is a request path after NormalizePath.
type NormalizedPath struct {
	// Escaped is the path to forward: in the normal form of RFC 3986
	// Section 6.2.2 (percent-encoded unreserved characters decoded, other
	// escapes in upper-case hex, characters a path cannot carry encoded)
	// with empty segments merged ("//" read as "/", as nginx's
	// merge_slashes does) and dot segments removed (Section 5.2.4). "%2F"
	// and "%5C" stay encoded; a raw backslash is encoded as "%5C".
	Escaped string
	// Decoded is Escaped with every escape decoded, as net/url keeps it in
	// URL.Path: what routes match.
	Decoded string
	// EncodedSlash reports "%2F" or "%5C" (or a raw backslash) in the
	// path: an upstream that decodes them sees more segments than the
	// router did, so only routes that allow it take such a path.
	EncodedSlash bool
}

// NormalizePath normalises the escaped path of a request target (the part
// before "?"); the empty path is "/". Errors wrap ErrPathSyntax,
// ErrPathEscapesRoot or ErrPathHiddenDots and quote the path.
//
// It is the router's first step, so that "/app/../secret",
// "/app/%2e%2e/secret", "/app/./../secret" and "//secret" all route as
// "/secret" and reach the upstream as "/secret", never as a path the
// upstream would resolve differently from the router. Empty segments are
// merged before dot segments are removed, as nginx does ("/a//../b" is
// "/b"): an RFC 3986 path may have empty segments, but upstreams that
// merge them (nginx, and file servers, for which "//admin" names
// "/admin") would otherwise serve "//admin/x" under a route for "/admin/"
// that the router never matched.
func NormalizePath(escaped string) (NormalizedPath, error) {
	if isNormalPath(escaped) {
		// Nothing to decode, encode, merge or remove: the path is its own
		// normal form, and normalizing it would only copy it.
		return NormalizedPath{Escaped: escaped, Decoded: escaped}, nil
	}
	return normalizePath(escaped, true)
}

// ErrPathEmptySegments: a route that keeps empty segments
// (RouteOptions.KeepEmptySegments) was matched by a path whose dot
// segments resolve otherwise once its empty segments are merged
// ("/a//../b": "/a/b" kept, "/b" merged), so the path the upstream gets
// is not the one the router matched.
var ErrPathEmptySegments = errors.New("path resolves differently with its empty segments kept")

// NormalizePathKeepingSlashes is NormalizePath with empty segments kept
// ("/a//b" stays "/a//b"), for routes that opt out of merging
// (RouteOptions.KeepEmptySegments): dot segments are removed as RFC 3986
// Section 5.2.4 does, an empty segment being one like any other. Its
// result merged must be what NormalizePath returns, which is what the
// route was matched by; otherwise the error wraps ErrPathEmptySegments.
func NormalizePathKeepingSlashes(escaped string) (NormalizedPath, error) {
	merged, err := NormalizePath(escaped)
	if err != nil {
		return NormalizedPath{}, err
	}
	if !strings.Contains(escaped, "//") {
		return merged, nil
	}
	kept, err := normalizePath(escaped, false)
	if err != nil {
		return NormalizedPath{}, err
	}
	if again, err := NormalizePath(kept.Escaped); err != nil || again.Escaped != merged.Escaped {
		return NormalizedPath{}, fmt.Errorf("%w: %q is %q kept and %q merged", ErrPathEmptySegments, escaped, kept.Escaped, merged.Escaped)
	}
	return kept, nil
}

// isNormalPath reports whether NormalizePath would return escaped as it
// is: it starts with "/", holds only characters a path carries unencoded
// (no "%" or backslash, nothing to encode), no empty segment but a last
// one, and no segment starts with "." (so there is no dot segment, hidden
// or not). Most request paths are like this; the fuzzer checks that
// normalizePath agrees.
func isNormalPath(escaped string) bool {
	if escaped == "" || escaped[0] != '/' {
		return false
	}
	for i := 1; i < len(escaped); i++ {
		c := escaped[i]
		if (c == '.' || c == '/') && escaped[i-1] == '/' || c != '/' && !isPathChar(c) {
			return false
		}
	}
	return true
}

// normalizePath is NormalizePath for every path, the slow way; merge false
// keeps empty segments (NormalizePathKeepingSlashes).
func normalizePath(escaped string, merge bool) (NormalizedPath, error) {
	if escaped == "" {
		escaped = "/"
	}
	if escaped[0] != '/' {
		return NormalizedPath{}, fmt.Errorf("%w %q: it must start with /", ErrPathSyntax, escaped)
	}
	var out NormalizedPath
	segs := make([]string, 0, strings.Count(escaped, "/"))
	trailingSlash := false
	for rest := escaped[1:]; ; {
		raw, tail, more := strings.Cut(rest, "/")
		seg, err := normalizeSegment(raw)
		if err != nil {
			return NormalizedPath{}, fmt.Errorf("%w %q: %v", ErrPathSyntax, escaped, err)
		}
		// RFC 3986 Section 5.2.4: "." is dropped and ".." drops the
		// segment before it; either, as the last segment, leaves the path
		// ending in "/".
		switch {
		case seg == "" && merge:
			// "//" is "/"; a last empty segment is the trailing slash.
			if !more {
				trailingSlash = true
			}
		case seg == ".":
			trailingSlash = !more
		case seg == "..":
			if len(segs) == 0 {
				return NormalizedPath{}, fmt.Errorf("%w: %q", ErrPathEscapesRoot, escaped)
			}
			segs = segs[:len(segs)-1]
			trailingSlash = !more
		default:
			if isDotSegment(strings.SplitN(seg, ";", 2)[0]) {
				// Tomcat and other servlet containers strip ";params"
				// before resolving dots: "/app/..;/secret" is "/secret".
				return NormalizedPath{}, fmt.Errorf("%w: %q has a dot segment with parameters", ErrPathHiddenDots, escaped)
			}
			segs = append(segs, seg)
			trailingSlash = false
		}
		if !more {
			break
		}
		rest = tail
	}
	out.Escaped = "/" + strings.Join(segs, "/")
	if trailingSlash && len(segs) > 0 {
		out.Escaped += "/"
	}
	// Escapes are upper-case and a raw backslash is encoded by now; a
	// slash in a segment that ".." removed does not count.
	out.EncodedSlash = strings.Contains(out.Escaped, "%2F") || strings.Contains(out.Escaped, "%5C")
	decoded, err := url.PathUnescape(out.Escaped)
	if err != nil {
		// Unreachable: every escape in Escaped was checked above.
		return NormalizedPath{}, fmt.Errorf("%w %q: %v", ErrPathSyntax, escaped, err)
	}
	out.Decoded = decoded
	if why := hidesDots(decoded); why != "" {
		return NormalizedPath{}, fmt.Errorf("%w: %q %s", ErrPathHiddenDots, escaped, why)
	}
	return out, nil
}

// normalizeSegment puts one path segment in normal form.
func normalizeSegment(raw string) (string, error) {
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '%':
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return "", fmt.Errorf("bad percent-escape at byte %d", i+1)
			}
			v := unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
			switch {
			case v == 0:
				// A NUL truncates the path in C upstreams.
				return "", errors.New("encoded NUL")
			case isUnreserved(v):
				b.WriteByte(v) // RFC 3986 Section 6.2.2.2
			default:
				writeEscape(&b, v) // upper-case hex, Section 6.2.2.1
			}
		case c < 0x20 || c == 0x7f:
			return "", fmt.Errorf("control character 0x%02x", c)
		case c == '\\':
			// Windows upstreams and some frameworks read it as "/": it
			// is forwarded, and counted, as the encoded slash "%5C".
			writeEscape(&b, c)
		case isPathChar(c):
			b.WriteByte(c)
		default:
			// Bytes a path cannot carry raw (space, '"', '#', non-ASCII
			// UTF-8...) are forwarded encoded, as Go's client would.
			writeEscape(&b, c)
		}
	}
	return b.String(), nil
}

// maxDecodeLayers is how many times hidesDots decodes a path again after
// the first decoding. A path that still holds an escape after as many
// layers is refused: no client encodes a path that deep, and an upstream
// that decodes until nothing is left would meet dots behind the layers
// not checked.
const maxDecodeLayers = 4

// hidesDots reports why the decoded path hides a dot segment, or "" when
// it hides none. It reads each segment as lenient upstreams do (with "\"
// as a separator too, see readsAsDotSegment) in the decoded path, in the
// path decoded again and again (for upstreams that decode twice, or
// until nothing is left; at most maxDecodeLayers more times), and in each
// of those with overlong UTF-8 read as ASCII (for decoders that accept
// "%C0%AE" as ".") and with compatibility forms of ".", "/" and "\" read
// as those (compatFolder). The normalised path itself has no "." or ".."
// segment, so any found here were hidden behind an encoding.
func hidesDots(decoded string) string {
	check := func(p string) bool {
		for _, seg := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
			if readsAsDotSegment(seg) {
				return true
			}
		}
		return false
	}
	layer := decoded
	for i := 0; ; i++ {
		if check(layer) || check(foldOverlong(layer)) || check(compatFolder.Replace(layer)) {
			return fmt.Sprintf("decodes to %q", layer)
		}
		if !strings.Contains(layer, "%") {
			return ""
		}
		next := unescapeLoose(layer)
		if next == layer {
			return ""
		}
		if i == maxDecodeLayers {
			return fmt.Sprintf("is percent-encoded more than %d times", maxDecodeLayers+1)
		}
		layer = next
	}
}

// readsAsDotSegment reports whether an upstream may read the decoded
// segment seg as "." or "..": C upstreams end it at a NUL, servlet
// containers and other frameworks drop ";params" (after decoding, in
// some), and Windows and frameworks that trim names drop whitespace and
// control characters around it ("..%20", "%09.."). Whitespace is any
// Unicode space too (unicode.IsSpace: no-break, ideographic, em space,
// NEL...): NFKC makes most of them ' ', and trims that take them all (Go's
// strings.TrimSpace, Python's str.strip, Java's String.strip) read
// "..%E3%80%80" as "..".
func readsAsDotSegment(seg string) bool {
	if i := strings.IndexByte(seg, 0); i >= 0 {
		seg = seg[:i]
	}
	if i := strings.IndexByte(seg, ';'); i >= 0 {
		seg = seg[:i]
	}
	seg = strings.TrimFunc(seg, func(r rune) bool { return r <= ' ' || r == 0x7f || unicode.IsSpace(r) })
	return isDotSegment(seg)
}

// compatFolder replaces the characters whose Unicode compatibility
// decomposition (NFKC, UnicodeData.txt) is made of ".", "/" or "\" with
// those: FULLWIDTH FULL STOP, SMALL FULL STOP, ONE DOT LEADER, TWO DOT
// LEADER, HORIZONTAL ELLIPSIS, FULLWIDTH SOLIDUS, FULLWIDTH REVERSE
// SOLIDUS and SMALL REVERSE SOLIDUS. An upstream that normalises names
// to NFKC (identifier and file-name normalisation), or converts them to
// a Windows ANSI code page with best-fit mapping, reads "%EF%BC%8E%EF%BC%8E"
// (two fullwidth stops) or "%E2%80%A5" (a two dot leader) as "..", and
// "..%EF%BC%8F" as "../".
var compatFolder = strings.NewReplacer(
	"\uFF0E", ".", "\uFE52", ".", "\u2024", ".", "\u2025", "..", "\u2026", "...",
	"\uFF0F", "/", "\uFF3C", "\\", "\uFE68", "\\",
)

// foldOverlong replaces overlong UTF-8 encodings of ASCII characters,
// two to six bytes long (never valid UTF-8, RFC 3629 Section 3), with the
// character itself, as lenient decoders do. Such decoders often take the
// bytes after the lead without checking that they are continuation bytes
// ("%C0%2E" read as "."), so neither does this: valid UTF-8 never folds,
// since its leads E0 and F0 need the payload the fold refuses, and C0,
// C1, F8 and FC never lead a valid sequence.
func foldOverlong(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		if c, n, ok := overlongASCII(s[i:]); ok {
			if b == nil {
				b = append(make([]byte, 0, len(s)), s[:i]...)
			}
			b = append(b, c)
			i += n - 1
			continue
		}
		if b != nil {
			b = append(b, s[i])
		}
	}
	if b == nil {
		return s
	}
	return string(b)
}

// overlongASCII decodes an overlong encoding of an ASCII character at the
// start of s: the character and the bytes it took, or ok false.
func overlongASCII(s string) (c byte, n int, ok bool) {
	switch s[0] {
	case 0xC0, 0xC1:
		n = 2
	case 0xE0:
		n = 3
	case 0xF0:
		n = 4
	case 0xF8:
		n = 5
	case 0xFC:
		n = 6
	default:
		return 0, 0, false
	}
	if len(s) < n {
		return 0, 0, false
	}
	v := uint32(s[0] & (0x7f >> n)) // the lead's payload bits
	for i := 1; i < n; i++ {
		v = v<<6 | uint32(s[i]&0x3f)
	}
	if v >= 0x80 {
		return 0, 0, false
	}
	return byte(v), n, true
}

// unescapeLoose decodes the valid escapes of s and keeps the rest as is,
// as a lenient upstream decoding a second time would.
func unescapeLoose(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isDotSegment(s string) bool { return s == "." || s == ".." }

// isUnreserved: RFC 3986 Section 2.3.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// isPathChar: pchar of RFC 3986 Section 3.3 without pct-encoded, which
// the caller handles.
func isPathChar(c byte) bool {
	return pathChars[c]
}

// pathChars is isPathChar's table: the unreserved characters and
// "!$&'()*+,;=:@".
var pathChars = func() (t [256]bool) {
	for c := range 256 {
		t[c] = isUnreserved(byte(c)) || strings.IndexByte("!$&'()*+,;=:@", byte(c)) >= 0
	}
	return t
}()

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

func writeEscape(b *strings.Builder, c byte) {
	const hex = "0123456789ABCDEF"
	b.WriteByte('%')
	b.WriteByte(hex[c>>4])
	b.WriteByte(hex[c&15])
}

// requestPath returns the escaped path of r's target as the client sent
// it. net/url's EscapedPath re-encodes URL.Path when the raw form is not
// one it would produce, which turns "%2F" into "/"; the request line (or
// HTTP/2 :path) in RequestURI keeps what the client wrote.
func requestPath(r *http.Request) string {
	uri := r.RequestURI
	if uri == "" {
		return r.URL.EscapedPath() // a request built in-process
	}
	if !strings.HasPrefix(uri, "/") {
		// absolute-form (RFC 9112 Section 3.2.2): skip scheme://authority.
		_, rest, ok := strings.Cut(uri, "://")
		if !ok {
			return uri // authority-form or "*": not a path; refused
		}
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			return "/"
		}
		uri = rest[i:]
	}
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	return uri
}
