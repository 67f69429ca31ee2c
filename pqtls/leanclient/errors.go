package leanclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
)

// ErrorKind classifies a handshake failure so that a benchmark harness can
// count failures per kind.
type ErrorKind int

const (
	// KindDial: the TCP connection could not be made or broke (reset,
	// unexpected EOF).
	KindDial ErrorKind = iota + 1
	// KindTimeout: a read or write missed its deadline, or the context ended.
	KindTimeout
	// KindAlert: the server sent a TLS alert; Error.Alert holds its code.
	KindAlert
	// KindMalformed: the server sent bytes that do not parse, a message out
	// of order, or a value the protocol forbids.
	KindMalformed
	// KindVerify: the certificate chain, the CertificateVerify signature or
	// the server Finished did not verify.
	KindVerify
	// KindUnsupported: the server chose something this client does not
	// implement (TLS 1.2, an unknown cipher suite, a client certificate).
	KindUnsupported
	// KindNotTLS: the server answered with bytes that are not a TLS
	// record; Error.Err is a *NotTLSError naming what it speaks.
	KindNotTLS
)

func (k ErrorKind) String() string {
	switch k {
	case KindDial:
		return "dial"
	case KindTimeout:
		return "timeout"
	case KindAlert:
		return "alert"
	case KindMalformed:
		return "malformed"
	case KindVerify:
		return "verify"
	case KindUnsupported:
		return "unsupported"
	case KindNotTLS:
		return "not-tls"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is the error every leanclient function returns.
type Error struct {
	Kind ErrorKind
	// Alert is the alert description (RFC 8446 Section 6) when Kind is
	// KindAlert.
	Alert uint8
	// Op names the handshake step that failed ("read ServerHello").
	Op  string
	Err error
}

func (e *Error) Error() string {
	if e.Kind == KindAlert {
		return fmt.Sprintf("%s: server sent alert %s (%d)", e.Op, AlertName(e.Alert), e.Alert)
	}
	if e.Err == nil {
		return fmt.Sprintf("%s: %s error", e.Op, e.Kind)
	}
	return fmt.Sprintf("failed to %s: %v", e.Op, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of err, or 0 when err is not an *Error.
func KindOf(err error) ErrorKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

func malformed(op, format string, args ...any) *Error {
	return &Error{Kind: KindMalformed, Op: op, Err: fmt.Errorf(format, args...)}
}

func unsupported(op, format string, args ...any) *Error {
	return &Error{Kind: KindUnsupported, Op: op, Err: fmt.Errorf(format, args...)}
}

func verifyErr(op string, err error) *Error {
	return &Error{Kind: KindVerify, Op: op, Err: err}
}

// ioErr classifies a network error: a deadline or a cancelled context is a
// timeout, anything else a broken connection.
func ioErr(op string, err error) *Error {
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled) || (errors.As(err, &ne) && ne.Timeout()) {
		return &Error{Kind: KindTimeout, Op: op, Err: err}
	}
	return &Error{Kind: KindDial, Op: op, Err: err}
}

// AlertName returns the RFC 8446 Section 6 name of an alert description.
func AlertName(code uint8) string {
	switch code {
	case 0:
		return "close_notify"
	case 10:
		return "unexpected_message"
	case 20:
		return "bad_record_mac"
	case 22:
		return "record_overflow"
	case 40:
		return "handshake_failure"
	case 42:
		return "bad_certificate"
	case 43:
		return "unsupported_certificate"
	case 44:
		return "certificate_revoked"
	case 45:
		return "certificate_expired"
	case 46:
		return "certificate_unknown"
	case 47:
		return "illegal_parameter"
	case 48:
		return "unknown_ca"
	case 49:
		return "access_denied"
	case 50:
		return "decode_error"
	case 51:
		return "decrypt_error"
	case 70:
		return "protocol_version"
	case 71:
		return "insufficient_security"
	case 80:
		return "internal_error"
	case 86:
		return "inappropriate_fallback"
	case 90:
		return "user_canceled"
	case 109:
		return "missing_extension"
	case 110:
		return "unsupported_extension"
	case 112:
		return "unrecognized_name"
	case 116:
		return "certificate_required"
	case 120:
		return "no_application_protocol"
	}
	return fmt.Sprintf("alert(%d)", code)
}
