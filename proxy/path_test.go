package proxy

import (
	"bufio"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		in          string
		escaped     string // "" when an error is wanted
		decoded     string
		slash       bool
		err         error
		errContains string
	}{
		{in: "", escaped: "/", decoded: "/"},
		{in: "/", escaped: "/", decoded: "/"},
		{in: "/app/a/b", escaped: "/app/a/b", decoded: "/app/a/b"},
		// RFC 3986 Section 5.2.4 and its examples.
		{in: "/app/../secret", escaped: "/secret", decoded: "/secret"},
		{in: "/a/b/c/./../../g", escaped: "/a/g", decoded: "/a/g"},
		{in: "/mid/content=5/../6", escaped: "/mid/6", decoded: "/mid/6"},
		{in: "/app/x/..", escaped: "/app/", decoded: "/app/"},
		{in: "/app/x/.", escaped: "/app/x/", decoded: "/app/x/"},
		{in: "/./app/./x/.", escaped: "/app/x/", decoded: "/app/x/"},
		// Empty segments are merged first, as nginx's merge_slashes
		// does: "//admin/x" is routed and forwarded as "/admin/x".
		{in: "/a//../b", escaped: "/b", decoded: "/b"},
		{in: "//admin/x", escaped: "/admin/x", decoded: "/admin/x"},
		{in: "/admin/.//x", escaped: "/admin/x", decoded: "/admin/x"},
		{in: "/./admin", escaped: "/admin", decoded: "/admin"},
		{in: "/admin///x//", escaped: "/admin/x/", decoded: "/admin/x/"},
		{in: "//", escaped: "/", decoded: "/"},
		{in: "/.//", escaped: "/", decoded: "/"},
		{in: "/%61dmin//x", escaped: "/admin/x", decoded: "/admin/x"},
		{in: "/app/..", escaped: "/", decoded: "/"},
		// Section 6.2.2: unreserved escapes decoded, others upper-cased.
		{in: "/app/%2e%2e/secret", escaped: "/secret", decoded: "/secret"},
		{in: "/app/.%2E/secret", escaped: "/secret", decoded: "/secret"},
		{in: "/%7euser/%41%62c", escaped: "/~user/Abc", decoded: "/~user/Abc"},
		{in: "/caf%c3%a9", escaped: "/caf%C3%A9", decoded: "/café"},
		{in: "/a%3fb%23c", escaped: "/a%3Fb%23c", decoded: "/a?b#c"},
		{in: "/a b\"<>", escaped: "/a%20b%22%3C%3E", decoded: "/a b\"<>"},
		{in: "/a+b/c=d;e:f@g", escaped: "/a+b/c=d;e:f@g", decoded: "/a+b/c=d;e:f@g"},
		// Not hidden dots: longer dot runs, dots inside a name, valid
		// UTF-8 with the leads E0 and F0, a literal "%" after decoding.
		{in: "/app/.../x", escaped: "/app/.../x", decoded: "/app/.../x"},
		{in: "/app/a..%20b;..", escaped: "/app/a..%20b;..", decoded: "/app/a.. b;.."},
		{in: "/%e0%a4%85/%f0%9f%98%80", escaped: "/%E0%A4%85/%F0%9F%98%80", decoded: "/\u0905/\U0001F600"},
		{in: "/app/100%2525", escaped: "/app/100%2525", decoded: "/app/100%25"},
		// Encoded slashes: kept encoded and flagged.
		{in: "/app/a%2fb", escaped: "/app/a%2Fb", decoded: "/app/a/b", slash: true},
		{in: "/app/a%5Cb", escaped: "/app/a%5Cb", decoded: "/app/a\\b", slash: true},
		{in: "/app/a\\b", escaped: "/app/a%5Cb", decoded: "/app/a\\b", slash: true},
		{in: "/%2F%2Fadmin/x", escaped: "/%2F%2Fadmin/x", decoded: "///admin/x", slash: true},
		{in: "//%2f/admin", escaped: "/%2F/admin", decoded: "///admin", slash: true},
		// Refused.
		{in: "app/x", err: ErrPathSyntax, errContains: "must start with /"},
		{in: "*", err: ErrPathSyntax},
		{in: "/app/%zz", err: ErrPathSyntax, errContains: "bad percent-escape"},
		{in: "/app/%4", err: ErrPathSyntax},
		{in: "/app/%00/x", err: ErrPathSyntax, errContains: "encoded NUL"},
		{in: "/app/\x01", err: ErrPathSyntax, errContains: "control character"},
		{in: "/../etc/passwd", err: ErrPathEscapesRoot},
		{in: "/app/../../etc/passwd", err: ErrPathEscapesRoot},
		{in: "/%2e%2e/x", err: ErrPathEscapesRoot},
		{in: "//..//admin", err: ErrPathEscapesRoot},
		{in: "/a//..//../..", err: ErrPathEscapesRoot},
		{in: "/app/..%2fsecret", err: ErrPathHiddenDots},
		{in: "/app/..%5Csecret", err: ErrPathHiddenDots},
		{in: "/app/..\\secret", err: ErrPathHiddenDots},
		{in: "/app/%252e%252e/secret", err: ErrPathHiddenDots},
		{in: "/app/%c0%ae%c0%ae/secret", err: ErrPathHiddenDots},
		{in: "/app/%e0%80%ae%e0%80%ae/secret", err: ErrPathHiddenDots},
		{in: "/app/..;/secret", err: ErrPathHiddenDots, errContains: "parameters"},
		{in: "/app/.;x/secret", err: ErrPathHiddenDots},
		{in: "/app/%2e%2e;/secret", err: ErrPathHiddenDots},
		// Dots hidden from lenient readings of the decoded path: deeper
		// encodings, overlong UTF-8 of every length and without
		// continuation bits, ";params" and whitespace an upstream drops.
		{in: "/app/%25252e%25252e/secret", err: ErrPathHiddenDots},
		{in: "/app/%252525252525252e/x", err: ErrPathHiddenDots, errContains: "percent-encoded more than"},
		{in: "/app/%c0%2e%c0%2e/secret", err: ErrPathHiddenDots},
		{in: "/app/..%c1%9csecret", err: ErrPathHiddenDots},
		{in: "/app/%f0%80%80%ae%f0%80%80%ae/secret", err: ErrPathHiddenDots},
		{in: "/app/%f8%80%80%80%ae%f8%80%80%80%ae/secret", err: ErrPathHiddenDots},
		{in: "/app/%fc%80%80%80%80%ae./secret", err: ErrPathHiddenDots},
		{in: "/app/..%3b/secret", err: ErrPathHiddenDots},
		{in: "/app/%2e%2e%3bx/secret", err: ErrPathHiddenDots},
		{in: "/app/..%20/secret", err: ErrPathHiddenDots},
		{in: "/app/%09../secret", err: ErrPathHiddenDots},
		{in: "/app/..%0d/secret", err: ErrPathHiddenDots},
		{in: "/app/..%2500/secret", err: ErrPathHiddenDots},
		{in: "/app/.%20/secret", err: ErrPathHiddenDots},
		// Compatibility forms that NFKC, or a Windows best-fit
		// conversion, turns into dots and slashes.
		{in: "/app/%EF%BC%8E%EF%BC%8E/secret", err: ErrPathHiddenDots},
		{in: "/app/%ef%b9%92%e2%80%a4/secret", err: ErrPathHiddenDots},
		{in: "/app/%E2%80%A5/secret", err: ErrPathHiddenDots},
		{in: "/app/..%EF%BC%8Fsecret", err: ErrPathHiddenDots},
		{in: "/app/x%EF%BC%BC..%EF%B9%A8secret", err: ErrPathHiddenDots},
		{in: "/app/\uFF0E\uFF0E/secret", err: ErrPathHiddenDots},
		{in: "/app/%25EF%25BC%258E%25EF%25BC%258E/secret", err: ErrPathHiddenDots},
		// Unicode whitespace around dots: NFKC makes the no-break and
		// ideographic spaces ' ', and trims that take any Unicode space
		// (Go's strings.TrimSpace, Python's str.strip, Java's strip)
		// drop them as "..%20" is dropped.
		{in: "/app/..%E3%80%80/secret", err: ErrPathHiddenDots},
		{in: "/app/..%C2%A0/secret", err: ErrPathHiddenDots},
		{in: "/app/%E2%80%83../secret", err: ErrPathHiddenDots},
		{in: "/app/%EF%BC%8E%EF%BC%8E%E3%80%80/secret", err: ErrPathHiddenDots},
		{in: "/app/..%C2%85/secret", err: ErrPathHiddenDots},
		// ...but not where they make no dot segment.
		{in: "/app/%E2%80%A6/x", escaped: "/app/%E2%80%A6/x", decoded: "/app/\u2026/x"},
		{in: "/app/a%EF%BC%8Eb", escaped: "/app/a%EF%BC%8Eb", decoded: "/app/a\uFF0Eb"},
		{in: "/app/..%E3%80%80x/y", escaped: "/app/..%E3%80%80x/y", decoded: "/app/..\u3000x/y"},
		{in: "/app/%E6%97%A5%E6%9C%AC%E8%AA%9E%E3%80%80%E3%83%9A%E3%83%BC%E3%82%B8/", escaped: "/app/%E6%97%A5%E6%9C%AC%E8%AA%9E%E3%80%80%E3%83%9A%E3%83%BC%E3%82%B8/", decoded: "/app/日本語\u3000ページ/"},
		{in: "/app/%EF%BC%B6%EF%BC%91%EF%BC%8E%EF%BC%92/%EF%BC%A1%EF%BC%8F%EF%BC%A2", escaped: "/app/%EF%BC%B6%EF%BC%91%EF%BC%8E%EF%BC%92/%EF%BC%A1%EF%BC%8F%EF%BC%A2", decoded: "/app/Ｖ１．２/Ａ／Ｂ"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizePath(tt.in)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.errContains) {
					t.Fatalf("NormalizePath(%q) = %+v, %v; want an error wrapping %q containing %q", tt.in, got, err, tt.err, tt.errContains)
				}
				return
			}
			if err != nil {
				t.Fatalf("NormalizePath(%q): %v", tt.in, err)
			}
			want := NormalizedPath{Escaped: tt.escaped, Decoded: tt.decoded, EncodedSlash: tt.slash}
			if got != want {
				t.Errorf("NormalizePath(%q) = %+v, want %+v", tt.in, got, want)
			}
		})
	}
}

// TestNormalizePathKeepingSlashes: a route that keeps empty segments gets
// them, dot segments resolved as RFC 3986 has them, unless that resolves
// to another path than the merged one its route was matched by.
func TestNormalizePathKeepingSlashes(t *testing.T) {
	tests := []struct {
		in, escaped string // escaped "" when an error is wanted
		err         error
	}{
		{in: "/a/b", escaped: "/a/b"},
		{in: "//admin/x", escaped: "//admin/x"},
		{in: "/bucket//key", escaped: "/bucket//key"},
		{in: "/admin/.//x", escaped: "/admin//x"},
		{in: "/a//b/../c", escaped: "/a//c"},
		{in: "/a///", escaped: "/a///"},
		{in: "/%61//%2e/b", escaped: "/a//b"},
		// Merged, "/a//../b" is "/b"; kept, "/a/b": the route matched
		// "/b" would forward "/a/b".
		{in: "/a//../b", err: ErrPathEmptySegments},
		{in: "/a/b//../../c", err: ErrPathEmptySegments},
		// What NormalizePath refuses stays refused.
		{in: "//..//admin", err: ErrPathEscapesRoot},
		{in: "/a//..%2f/b", err: ErrPathHiddenDots},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizePathKeepingSlashes(tt.in)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("NormalizePathKeepingSlashes(%q) = %+v, %v; want an error wrapping %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got.Escaped != tt.escaped {
				t.Fatalf("NormalizePathKeepingSlashes(%q) = %+v, %v; want %q", tt.in, got, err, tt.escaped)
			}
		})
	}
}

// TestNormalizePathCorpus runs every path of testdata/paths.txt through
// the invariants FuzzNormalizePath checks.
func TestNormalizePathCorpus(t *testing.T) {
	for _, p := range readPaths(t) {
		checkNormalized(t, p)
	}
}

func readPaths(t testing.TB) []string {
	f, err := os.Open("testdata/paths.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var paths []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			paths = append(paths, line)
		}
	}
	return paths
}

func FuzzNormalizePath(f *testing.F) {
	for _, p := range readPaths(f) {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		checkNormalized(t, p)
	})
}

// checkNormalized checks what every result of NormalizePath promises: an
// error of a known kind, or a path that starts with "/", has no dot
// segment, is its own normal form, decodes to Decoded, and survives
// net/url unchanged (so exactly it is forwarded).
func checkNormalized(t *testing.T, in string) {
	t.Helper()
	got, err := NormalizePath(in)
	// The fast path for paths already normal must agree with the full
	// algorithm, error or not.
	if slow, serr := normalizePath(in, true); slow != got || (serr == nil) != (err == nil) || serr != nil && serr.Error() != err.Error() {
		t.Fatalf("NormalizePath(%q) = %+v, %v; the full algorithm says %+v, %v", in, got, err, slow, serr)
	}
	if err != nil {
		if !errors.Is(err, ErrPathSyntax) && !errors.Is(err, ErrPathEscapesRoot) && !errors.Is(err, ErrPathHiddenDots) {
			t.Fatalf("NormalizePath(%q): error of no known kind: %v", in, err)
		}
		return
	}
	if !strings.HasPrefix(got.Escaped, "/") {
		t.Fatalf("NormalizePath(%q).Escaped = %q does not start with /", in, got.Escaped)
	}
	for _, seg := range strings.Split(got.Escaped, "/") {
		if seg == "." || seg == ".." {
			t.Fatalf("NormalizePath(%q).Escaped = %q keeps a dot segment", in, got.Escaped)
		}
	}
	if strings.Contains(got.Escaped, "//") {
		t.Fatalf("NormalizePath(%q).Escaped = %q keeps an empty segment", in, got.Escaped)
	}
	// A route that keeps empty segments is matched by the merged path:
	// what it forwards merges to that path, or is refused.
	if kept, err := NormalizePathKeepingSlashes(in); err == nil {
		if merged, err := NormalizePath(kept.Escaped); err != nil || merged.Escaped != got.Escaped {
			t.Fatalf("NormalizePathKeepingSlashes(%q) = %q, which merges to %q (%v), not %q", in, kept.Escaped, merged.Escaped, err, got.Escaped)
		}
		if d, err := url.PathUnescape(kept.Escaped); err != nil || d != kept.Decoded {
			t.Fatalf("NormalizePathKeepingSlashes(%q): Decoded %q, but Escaped %q decodes to %q", in, kept.Decoded, kept.Escaped, d)
		}
	} else if !errors.Is(err, ErrPathEmptySegments) {
		t.Fatalf("NormalizePathKeepingSlashes(%q) refuses what NormalizePath takes: %v", in, err)
	}
	again, err := NormalizePath(got.Escaped)
	if err != nil || again != got {
		t.Fatalf("NormalizePath is not idempotent on %q: %+v then %+v, %v", in, got, again, err)
	}
	if d, err := url.PathUnescape(got.Escaped); err != nil || d != got.Decoded {
		t.Fatalf("NormalizePath(%q): Decoded %q, but Escaped %q decodes to %q (%v)", in, got.Decoded, got.Escaped, d, err)
	}
	u, err := url.Parse("http://h" + got.Escaped)
	if err != nil || u.EscapedPath() != got.Escaped || u.Path != got.Decoded {
		t.Fatalf("net/url does not keep %q: %v", got.Escaped, err)
	}
	for i := 0; i < len(got.Escaped); i++ {
		if got.Escaped[i] != '%' {
			continue
		}
		esc := got.Escaped[i+1 : i+3]
		if esc != strings.ToUpper(esc) {
			t.Fatalf("NormalizePath(%q) = %q: escape %%%s is not upper-case", in, got.Escaped, esc)
		}
		if isUnreserved(unhex(esc[0])<<4 | unhex(esc[1])) {
			t.Fatalf("NormalizePath(%q) = %q: unreserved character left encoded as %%%s", in, got.Escaped, esc)
		}
	}
}
