package acme

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mholt/acmez/v3/acme"
)

func TestTranslateEvent(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	boom := errors.New("boom")
	tests := []struct {
		name   string
		event  string
		data   map[string]any
		want   Event
		wantOK bool
	}{
		{name: "obtained", event: "cert_obtained", data: map[string]any{"identifier": "a.example", "renewal": false},
			want: Event{Kind: EventObtained, Names: []string{"a.example"}, Time: now}, wantOK: true},
		{name: "renewed", event: "cert_obtained", data: map[string]any{"identifier": "a.example", "renewal": true},
			want: Event{Kind: EventRenewed, Names: []string{"a.example"}, Renewal: true, Time: now}, wantOK: true},
		{name: "failed renewal", event: "cert_failed", data: map[string]any{"identifier": "a.example", "renewal": true, "error": boom},
			want: Event{Kind: EventFailed, Names: []string{"a.example"}, Renewal: true, Err: boom, Time: now}, wantOK: true},
		{name: "failed without error", event: "cert_failed", data: map[string]any{},
			want: Event{Kind: EventFailed, Time: now}, wantOK: true},
		{name: "other event", event: "tls_get_certificate", data: map[string]any{}},
		{name: "cert_obtaining is not reported", event: "cert_obtaining", data: map[string]any{"identifier": "a.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := translateEvent(tt.event, tt.data, now)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				return
			}
			if got.Kind != tt.want.Kind || !slices.Equal(got.Names, tt.want.Names) || got.Renewal != tt.want.Renewal || !got.Time.Equal(tt.want.Time) {
				t.Errorf("event = %+v, want %+v", got, tt.want)
			}
			if (got.Err != nil) != (got.Kind == EventFailed) {
				t.Errorf("Err = %v for kind %s", got.Err, got.Kind)
			}
			if tt.want.Err != nil && !errors.Is(got.Err, tt.want.Err) {
				t.Errorf("Err = %v, want %v", got.Err, tt.want.Err)
			}
			if shouldEmit(tt.event) != tt.wantOK {
				t.Errorf("shouldEmit(%q) disagrees with translateEvent", tt.event)
			}
		})
	}
}

func TestHints(t *testing.T) {
	tests := []struct {
		name     string
		ownRoots bool // acme.ca_roots is set
		err      error
		want     string // substring of the hint; "" for none
	}{
		{name: "deadline", err: fmt.Errorf("obtain: %w", context.DeadlineExceeded), want: "deadline"},
		{name: "refused", err: fmt.Errorf("x: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), want: "cannot reach"},
		{name: "dns", err: fmt.Errorf("x: %w", &net.DNSError{Err: "no such host", Name: "acme.example"}), want: "cannot reach"},
		// Without acme.ca_roots the system's (or the built-in) roots failed:
		// a public CA, so the hint is about those roots, and names
		// acme.ca_roots only for private CAs.
		{name: "untrusted public", err: fmt.Errorf("x: %w", x509.UnknownAuthorityError{}), want: "not trusted by the system's CA roots"},
		{name: "untrusted public mentions the private CA key", err: fmt.Errorf("x: %w", x509.UnknownAuthorityError{}), want: "for a private CA, set acme.ca_roots"},
		{name: "untrusted with ca_roots", ownRoots: true, err: fmt.Errorf("x: %w", x509.UnknownAuthorityError{}), want: "not trusted by the roots in acme.ca_roots"},
		{name: "unauthorized", err: fmt.Errorf("x: %w", acme.Problem{Type: acme.ProblemTypeUnauthorized}), want: "validate control of \"a.example\""},
		{name: "compound with connection subproblem", err: acme.Problem{Type: acme.ProblemTypeCompound,
			Subproblems: []acme.Subproblem{{Problem: acme.Problem{Type: acme.ProblemTypeConnection}}}}, want: "port 80"},
		{name: "contact", err: acme.Problem{Type: acme.ProblemTypeInvalidContact}, want: "acme.email"},
		{name: "rate limit", err: acme.Problem{Type: acme.ProblemTypeRateLimited}, want: "rate limit"},
		{name: "caa", err: acme.Problem{Type: acme.ProblemTypeCAA}, want: "CAA"},
		{name: "rejected", err: acme.Problem{Type: acme.ProblemTypeRejectedIdentifier}, want: "will not issue"},
		{name: "eab", err: acme.Problem{Type: acme.ProblemTypeExternalAccountRequired}, want: "EAB"},
		{name: "server internal", err: acme.Problem{Type: acme.ProblemTypeServerInternal}},
		{name: "plain", err: errors.New("something else")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := explain("https://acme.example/dir", "a.example", tt.ownRoots, tt.err)
			var e *Error
			// DeepEqual: acme.Problem holds a slice, so errors.Is cannot
			// compare it.
			if !errors.As(err, &e) || !reflect.DeepEqual(e.Err, tt.err) {
				t.Fatalf("explain did not wrap %v as *Error", tt.err)
			}
			if tt.want == "" && e.Hint != "" || !strings.Contains(e.Hint, tt.want) {
				t.Errorf("hint = %q, want it to contain %q", e.Hint, tt.want)
			}
			msg := err.Error()
			if !strings.Contains(msg, "https://acme.example/dir") || !strings.Contains(msg, `"a.example"`) {
				t.Errorf("message %q does not name the directory and the name", msg)
			}
		})
	}
}
